package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// A settings struct is a Configuration whose fields carry their flag: the
// yaml tag is the flag name (and the file's key), help its usage, category
// its help section, env an environment variable, default the text shown
// when the zero value means "decided at run time". Inline groups
// (`yaml:",inline"`) are walked. settingsFlags makes the flags, with the
// struct's values as defaults; applySettings copies the flags given on the
// command line over a struct, so flags win over the file and the file over
// the defaults.

type setting struct {
	name  string
	field reflect.StructField
	value reflect.Value // addressable
}

// settingsOf lists the settings of *ptr, in field order.
func settingsOf(ptr any) []setting {
	var out []setting
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if opts == "inline" {
				walk(v.Field(i))
				continue
			}
			if name == "" {
				continue
			}
			out = append(out, setting{name: name, field: f, value: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(ptr).Elem())
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

// settingsFlags returns a flag per setting of *ptr, its value the default.
func settingsFlags(ptr any) []cli.Flag {
	var flags []cli.Flag
	for _, s := range settingsOf(ptr) {
		f, tag := s.field, s.field.Tag
		usage, category, def := tag.Get("help"), tag.Get("category"), tag.Get("default")
		var env []string
		if e := tag.Get("env"); e != "" {
			env = []string{e}
		}
		takesFile := tag.Get("file") == "true"
		v := s.value
		if v.Kind() == reflect.Pointer {
			// Unset unless given: the default is decided at run time.
			v = reflect.Zero(v.Type().Elem())
		}
		var flag cli.Flag
		switch {
		case v.Type() == durationType:
			flag = &cli.DurationFlag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: time.Duration(v.Int()), DefaultText: def}
		case v.Kind() == reflect.String:
			flag = &cli.StringFlag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: v.String(), DefaultText: def, TakesFile: takesFile}
		case v.Kind() == reflect.Bool:
			flag = &cli.BoolFlag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: v.Bool(), DefaultText: def}
		case v.Kind() == reflect.Int:
			flag = &cli.IntFlag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: int(v.Int()), DefaultText: def}
		case v.Kind() == reflect.Int64:
			flag = &cli.Int64Flag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: v.Int(), DefaultText: def}
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
			var val *cli.StringSlice
			if v.Len() > 0 {
				val = cli.NewStringSlice(v.Interface().([]string)...)
			}
			flag = &cli.StringSliceFlag{Name: s.name, Usage: usage, Category: category, EnvVars: env, Value: val, DefaultText: def, TakesFile: takesFile}
		default:
			panic(fmt.Sprintf("setting %s: no flag for type %s", s.name, f.Type))
		}
		flags = append(flags, flag)
	}
	return flags
}

// applySettings sets each setting of *ptr whose flag the command line (or
// its environment variable) gave.
func applySettings(c *cli.Context, ptr any) {
	for _, s := range settingsOf(ptr) {
		if !c.IsSet(s.name) {
			continue
		}
		v := s.value
		if v.Kind() == reflect.Pointer {
			v.Set(reflect.New(v.Type().Elem()))
			v = v.Elem()
		}
		switch {
		case v.Type() == durationType:
			v.SetInt(int64(c.Duration(s.name)))
		case v.Kind() == reflect.String:
			v.SetString(c.String(s.name))
		case v.Kind() == reflect.Bool:
			v.SetBool(c.Bool(s.name))
		case v.Kind() == reflect.Int:
			v.SetInt(int64(c.Int(s.name)))
		case v.Kind() == reflect.Int64:
			v.SetInt(c.Int64(s.name))
		case v.Kind() == reflect.Slice:
			v.Set(reflect.ValueOf(append([]string(nil), c.StringSlice(s.name)...)))
		}
	}
}
