// Package setup prepares an Elasticsearch cluster for spanflow's flow
// documents: the composable index template for spanflow-flows-* (its mapping
// derived from internal/flow's field table, so the document and the mapping
// cannot drift apart), index settings, and the lifecycle — an ILM policy and a
// data stream where the cluster has both, daily indices pruned by
// `spanflow es prune` where it has not. The collector's Elasticsearch output
// and the `spanflow es` command both use it.
package setup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spanflow/spanflow/internal/flow"
)

// Names of what setup installs.
const (
	// IndexPattern matches every index (and the data stream) spanflow writes.
	IndexPattern = "spanflow-flows-*"
	// DailyPrefix starts daily index names: spanflow-flows-YYYY.MM.DD.
	DailyPrefix = "spanflow-flows-"
	// DailyLayout is the date part of a daily index name (Go layout).
	DailyLayout = "2006.01.02"
	// DataStream is the data stream written to when the cluster has ILM and
	// data streams.
	DataStream = "spanflow-flows-stream"
	// TemplateName is the composable index template.
	TemplateName = "spanflow-flows"
	// PolicyName is the ILM policy.
	PolicyName = "spanflow-flows"
)

// keywordIgnoreAbove bounds indexed keyword values; longer ones stay in
// _source but are not indexed, rather than rejecting the document.
const keywordIgnoreAbove = 1024

// Mapping returns the index mapping for the flow document: an explicit
// property for every field of flow.Fields(), and dynamic templates for the
// netflow.* elements without an ECS home (numbers long, strings keyword).
// Numbers past a long's range are kept in _source, not indexed
// (ignore_malformed), rather than refusing the document.
// Anything else unknown is kept in _source but not indexed (dynamic: false),
// so no field is ever mapped as text and a document with a field this version
// does not know is still indexed.
func Mapping() (map[string]any, error) {
	root := map[string]any{}
	var dynamicObjects []string
	for _, f := range flow.Fields() {
		if f.Type == "dynamic" {
			obj, ok := strings.CutSuffix(f.Name, ".*")
			if !ok {
				return nil, fmt.Errorf("dynamic field %q must end in .*", f.Name)
			}
			dynamicObjects = append(dynamicObjects, obj)
			continue
		}
		prop, err := property(f.Type)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
		if err := insert(root, strings.Split(f.Name, "."), prop); err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	var templates []any
	for _, obj := range dynamicObjects {
		o, err := object(root, strings.Split(obj, "."))
		if err != nil {
			return nil, fmt.Errorf("dynamic object %s: %w", obj, err)
		}
		o["dynamic"] = true
		name := strings.ReplaceAll(obj, ".", "_")
		templates = append(templates,
			map[string]any{name + "_numbers": map[string]any{
				"path_match": obj + ".*", "match_mapping_type": "long",
				"mapping": map[string]any{"type": "long", "ignore_malformed": true}}},
			map[string]any{name + "_strings": map[string]any{
				"path_match": obj + ".*", "match_mapping_type": "string",
				"mapping": map[string]any{"type": "keyword", "ignore_above": keywordIgnoreAbove}}},
		)
	}
	return map[string]any{
		"dynamic": false,
		// A string that looks like a date or a number stays a keyword.
		"date_detection":    false,
		"numeric_detection": false,
		"dynamic_templates": templates,
		"properties":        root,
	}, nil
}

func property(typ string) (map[string]any, error) {
	switch typ {
	case "keyword":
		return map[string]any{"type": "keyword", "ignore_above": keywordIgnoreAbove}, nil
	case "long":
		// A counter past 2^63-1 (an exporter's bug: no flow carries 9.2 EB)
		// would make Elasticsearch refuse the whole document, to the
		// dead-letter file. Ignored, the value stays in _source and the
		// field is listed in _ignored; the flow is indexed and sums are not
		// thrown off. (unsigned_long would keep it searchable, but a field
		// that is long in the older indices and unsigned_long in the newer
		// cannot be sorted on across both.)
		return map[string]any{"type": typ, "ignore_malformed": true}, nil
	case "ip", "boolean", "double", "integer", "short", "byte", "float", "unsigned_long":
		return map[string]any{"type": typ}, nil
	case "date":
		// The encoder writes RFC 3339 with milliseconds, in UTC.
		return map[string]any{"type": "date", "format": "strict_date_optional_time||epoch_millis"}, nil
	}
	return nil, fmt.Errorf("no mapping for type %q", typ)
}

// object returns the properties map of the object at path, creating it.
func object(root map[string]any, path []string) (map[string]any, error) {
	props := root
	var o map[string]any
	for _, seg := range path {
		v, ok := props[seg]
		if !ok {
			v = map[string]any{"type": "object", "properties": map[string]any{}}
			props[seg] = v
		}
		o = v.(map[string]any)
		p, ok := o["properties"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is a leaf field, not an object", seg)
		}
		props = p
	}
	return o, nil
}

func insert(root map[string]any, path []string, prop map[string]any) error {
	props := root
	if len(path) > 1 {
		o, err := object(root, path[:len(path)-1])
		if err != nil {
			return err
		}
		props = o["properties"].(map[string]any)
	}
	leaf := path[len(path)-1]
	if _, dup := props[leaf]; dup {
		return fmt.Errorf("defined twice (or both a field and an object)")
	}
	props[leaf] = prop
	return nil
}

// IndexTemplate returns the body of PUT _index_template/spanflow-flows. With
// dataStream, indices matching the pattern are backing indices of a data
// stream managed by the ILM policy.
func IndexTemplate(c Configuration, dataStream bool) (map[string]any, error) {
	mapping, err := Mapping()
	if err != nil {
		return nil, err
	}
	settings := map[string]any{
		"number_of_shards":   c.Shards,
		"number_of_replicas": c.Replicas,
		"refresh_interval":   c.RefreshInterval,
	}
	if c.BestCompression {
		settings["codec"] = "best_compression"
	}
	// netflow.* elements are dynamic: beyond the field limit a new element
	// is kept in _source but not indexed, rather than refusing the flow.
	settings["mapping"] = map[string]any{"total_fields": map[string]any{"limit": 2000, "ignore_dynamic_beyond_limit": true}}
	if dataStream {
		settings["lifecycle"] = map[string]any{"name": PolicyName}
	}
	body := map[string]any{
		"index_patterns": []string{IndexPattern},
		"priority":       200,
		"template":       map[string]any{"settings": map[string]any{"index": settings}, "mappings": mapping},
		"_meta":          map[string]any{"managed_by": "spanflow", "fields_sha256": FieldsDigest()},
	}
	if dataStream {
		body["data_stream"] = map[string]any{}
	}
	return body, nil
}

// ILMPolicy returns the body of PUT _ilm/policy/spanflow-flows: roll over the
// data stream's write index by size or age, delete backing indices once they
// are older than the retention.
func ILMPolicy(c Configuration) map[string]any {
	return map[string]any{
		"policy": map[string]any{
			"_meta": map[string]any{"managed_by": "spanflow"},
			"phases": map[string]any{
				"hot": map[string]any{
					"min_age": "0ms",
					"actions": map[string]any{
						"rollover": map[string]any{
							"max_primary_shard_size": c.RolloverMaxPrimaryShardSize,
							"max_age":                c.RolloverMaxAge,
						},
					},
				},
				"delete": map[string]any{
					"min_age": fmt.Sprintf("%dd", c.RetentionDays),
					"actions": map[string]any{"delete": map[string]any{}},
				},
			},
		},
	}
}

// FieldsDigest identifies the field table a template was built from, so
// `es setup` can tell an up-to-date template from an older one.
func FieldsDigest() string {
	h := sha256.New()
	for _, f := range flow.Fields() {
		b, _ := json.Marshal([]string{f.Name, f.Type})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
