package kibana

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite spanflow.ndjson from spec.go")

// TestObjectsFile keeps the committed (and embedded) spanflow.ndjson equal
// to what spec.go builds.
func TestObjectsFile(t *testing.T) {
	objs, err := Build(Dashboards())
	if err != nil {
		t.Fatal(err)
	}
	want, err := NDJSON(objs)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(File, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(Objects(), want) {
		t.Fatalf("%s differs from what spec.go builds: run go test ./dashboards/kibana -run TestObjectsFile -update", File)
	}
}

// savedObject is the shape of one line of an export file, read without
// using this package's types so that the check is independent of them.
type savedObject struct {
	Type                 string          `json:"type"`
	ID                   string          `json:"id"`
	Attributes           json.RawMessage `json:"attributes"`
	References           []Reference     `json:"references"`
	CoreMigrationVersion string          `json:"coreMigrationVersion"`
	TypeMigrationVersion string          `json:"typeMigrationVersion"`
}

// parseFile reads the embedded NDJSON as the import API does: one JSON
// object per non-empty line.
func parseFile(t *testing.T) []savedObject {
	t.Helper()
	var objs []savedObject
	sc := bufio.NewScanner(bytes.NewReader(Objects()))
	sc.Buffer(nil, 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var o savedObject
		if err := dec.Decode(&o); err != nil {
			// Allow the fields the struct leaves out (managed).
			var loose map[string]json.RawMessage
			if err2 := json.Unmarshal(line, &loose); err2 != nil {
				t.Fatalf("line %d is not a JSON object: %v", n, err2)
			}
			for k := range loose {
				switch k {
				case "type", "id", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion", "managed":
				default:
					t.Errorf("line %d: unexpected top-level field %q", n, k)
				}
			}
			if err := json.Unmarshal(line, &o); err != nil {
				t.Fatalf("line %d: %v", n, err)
			}
		}
		objs = append(objs, o)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return objs
}

var semver = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// lensAttrs is the part of a Lens object the checks read.
type lensAttrs struct {
	Title             string `json:"title"`
	VisualizationType string `json:"visualizationType"`
	State             struct {
		DatasourceStates struct {
			FormBased struct {
				Layers map[string]lensLayer `json:"layers"`
			} `json:"formBased"`
		} `json:"datasourceStates"`
		Visualization json.RawMessage `json:"visualization"`
		Query         struct {
			Language string `json:"language"`
			Query    string `json:"query"`
		} `json:"query"`
		Filters []json.RawMessage `json:"filters"`
	} `json:"state"`
}

type lensLayer struct {
	ColumnOrder []string              `json:"columnOrder"`
	Columns     map[string]lensColumn `json:"columns"`
}

type lensColumn struct {
	Label         string   `json:"label"`
	DataType      string   `json:"dataType"`
	OperationType string   `json:"operationType"`
	SourceField   string   `json:"sourceField"`
	IsBucketed    bool     `json:"isBucketed"`
	References    []string `json:"references"`
	TimeScale     string   `json:"timeScale"`
	Params        struct {
		Size            int      `json:"size"`
		SecondaryFields []string `json:"secondaryFields"`
		OrderBy         struct {
			Type     string `json:"type"`
			ColumnID string `json:"columnId"`
		} `json:"orderBy"`
		OrderDirection string      `json:"orderDirection"`
		OrderAgg       *lensColumn `json:"orderAgg"`
		Percentile     float64     `json:"percentile"`
		Interval       string      `json:"interval"`
		Formula        string      `json:"formula"`
		TinymathAst    *struct {
			Name string `json:"name"`
			Args []any  `json:"args"`
		} `json:"tinymathAst"`
		Filters []struct {
			Label string `json:"label"`
			Input struct {
				Query    string `json:"query"`
				Language string `json:"language"`
			} `json:"input"`
		} `json:"filters"`
	} `json:"params"`
}

type dashboardAttrs struct {
	Title      string `json:"title"`
	PanelsJSON string `json:"panelsJSON"`
	Options    string `json:"optionsJSON"`
	Meta       struct {
		SearchSourceJSON string `json:"searchSourceJSON"`
	} `json:"kibanaSavedObjectMeta"`
}

type dashboardPanel struct {
	Type         string `json:"type"`
	PanelIndex   string `json:"panelIndex"`
	PanelRefName string `json:"panelRefName"`
	GridData     struct {
		X, Y, W, H int
		I          string `json:"i"`
	} `json:"gridData"`
}

// aggregatable are the field types panels may bucket or measure.
var aggregatable = map[string]bool{"keyword": true, "ip": true, "long": true, "date": true}

// templateTypes reads the field types from the index template's mapping
// that the Elasticsearch output installs.
func templateTypes(t *testing.T) map[string]string {
	t.Helper()
	m, err := setup.Mapping()
	if err != nil {
		t.Fatalf("index template mapping: %v", err)
	}
	out := map[string]string{}
	var walk func(prefix string, props map[string]any)
	walk = func(prefix string, props map[string]any) {
		for name, v := range props {
			p := v.(map[string]any)
			if sub, ok := p["properties"].(map[string]any); ok {
				walk(prefix+name+".", sub)
				continue
			}
			if typ, ok := p["type"].(string); ok {
				out[prefix+name] = typ
			}
		}
	}
	walk("", m["properties"].(map[string]any))
	return out
}

// fieldsOfColumn lists the document fields a column reads.
func fieldsOfColumn(c lensColumn) []string {
	var fs []string
	if c.SourceField != "" && c.SourceField != "___records___" {
		fs = append(fs, c.SourceField)
	}
	fs = append(fs, c.Params.SecondaryFields...)
	if c.Params.OrderAgg != nil {
		fs = append(fs, fieldsOfColumn(*c.Params.OrderAgg)...)
	}
	for _, f := range c.Params.Filters {
		fs = append(fs, kqlFields(f.Input.Query)...)
	}
	return fs
}

var kqlField = regexp.MustCompile(`([A-Za-z@][A-Za-z0-9_.@]*)\s*:`)

func kqlFields(q string) []string {
	var fs []string
	for _, m := range kqlField.FindAllStringSubmatch(q, -1) {
		fs = append(fs, m[1])
	}
	return fs
}

// TestObjectsStructure checks the file as Kibana's import reads it: known
// types, unique ids, references that resolve inside the file, Lens layers
// that reference the data view, dashboards whose panels reference their Lens
// objects, and every field a panel reads present in both the field table
// and the index template with an aggregatable type.
func TestObjectsStructure(t *testing.T) {
	objs := parseFile(t)
	tableTypes := map[string]string{}
	for _, f := range flow.Fields() {
		tableTypes[f.Name] = f.Type
	}
	tmplTypes := templateTypes(t)

	ids := map[[2]string]savedObject{}
	counts := map[string]int{}
	for _, o := range objs {
		key := [2]string{o.Type, o.ID}
		if _, dup := ids[key]; dup {
			t.Errorf("%s %s appears twice", o.Type, o.ID)
		}
		ids[key] = o
		counts[o.Type]++
		switch o.Type {
		case "index-pattern", "lens", "dashboard":
		default:
			t.Errorf("%s: unexpected saved object type %q", o.ID, o.Type)
		}
		if o.ID == "" || !semver.MatchString(o.CoreMigrationVersion) || !semver.MatchString(o.TypeMigrationVersion) {
			t.Errorf("%s %q: id and migration versions must be set (core %q, type %q)", o.Type, o.ID, o.CoreMigrationVersion, o.TypeMigrationVersion)
		}
		if o.References == nil {
			t.Errorf("%s %s: references must be a list (possibly empty)", o.Type, o.ID)
		}
	}
	if counts["index-pattern"] != 1 || counts["dashboard"] != 6 || counts["lens"] < 30 {
		t.Errorf("object counts %v: want 1 data view, 6 dashboards, the Lens panels", counts)
	}
	for _, o := range objs {
		names := map[string]bool{}
		for _, r := range o.References {
			if names[r.Name] {
				t.Errorf("%s %s: reference name %s used twice", o.Type, o.ID, r.Name)
			}
			names[r.Name] = true
			if _, ok := ids[[2]string{r.Type, r.ID}]; !ok {
				t.Errorf("%s %s: reference %s to %s %s, which is not in the file", o.Type, o.ID, r.Name, r.Type, r.ID)
			}
		}
	}

	// The data view.
	var dv struct {
		Title, TimeFieldName string
		Fields               string `json:"fields"`
	}
	if err := json.Unmarshal(ids[[2]string{"index-pattern", DataViewID}].Attributes, &dv); err != nil {
		t.Fatal(err)
	}
	if dv.Title != "spanflow-flows-*" || dv.TimeFieldName != "@timestamp" {
		t.Errorf("data view: title %q time field %q", dv.Title, dv.TimeFieldName)
	}
	if tableTypes["@timestamp"] != "date" {
		t.Errorf("@timestamp is %q in the field table", tableTypes["@timestamp"])
	}

	usedBy := map[string]int{} // lens id -> dashboards using it
	for _, o := range objs {
		switch o.Type {
		case "lens":
			checkLens(t, o, tableTypes, tmplTypes)
		case "dashboard":
			var a dashboardAttrs
			if err := json.Unmarshal(o.Attributes, &a); err != nil {
				t.Fatalf("dashboard %s: %v", o.ID, err)
			}
			var panels []dashboardPanel
			if err := json.Unmarshal([]byte(a.PanelsJSON), &panels); err != nil {
				t.Fatalf("dashboard %s: panelsJSON: %v", o.ID, err)
			}
			for _, s := range []string{a.Options, a.Meta.SearchSourceJSON} {
				if !json.Valid([]byte(s)) {
					t.Errorf("dashboard %s: %q is not JSON", o.ID, s)
				}
			}
			refs := map[string]Reference{}
			for _, r := range o.References {
				refs[r.Name] = r
			}
			seen := map[string]bool{}
			for _, p := range panels {
				if seen[p.PanelIndex] || p.PanelIndex == "" || p.GridData.I != p.PanelIndex {
					t.Errorf("dashboard %s: panel index %q missing, repeated or unequal to gridData.i", o.ID, p.PanelIndex)
				}
				seen[p.PanelIndex] = true
				// Kibana resolves a panel's saved object through the
				// reference named "<panelIndex>:<panelRefName>".
				r, ok := refs[p.PanelIndex+":"+p.PanelRefName]
				if !ok || r.Type != p.Type || p.Type != "lens" {
					t.Errorf("dashboard %s panel %s: no %s reference named %s:%s", o.ID, p.PanelIndex, p.Type, p.PanelIndex, p.PanelRefName)
					continue
				}
				usedBy[r.ID]++
				if p.GridData.X < 0 || p.GridData.W <= 0 || p.GridData.X+p.GridData.W > 48 || p.GridData.H <= 0 {
					t.Errorf("dashboard %s panel %s: grid %+v outside the 48-column grid", o.ID, p.PanelIndex, p.GridData)
				}
			}
			if len(o.References) != len(panels) {
				t.Errorf("dashboard %s: %d references for %d panels", o.ID, len(o.References), len(panels))
			}
		}
	}
	for _, o := range objs {
		if o.Type == "lens" && usedBy[o.ID] != 1 {
			t.Errorf("lens %s is on %d dashboards, want 1", o.ID, usedBy[o.ID])
		}
	}
}

func checkLens(t *testing.T, o savedObject, tableTypes, tmplTypes map[string]string) {
	t.Helper()
	var a lensAttrs
	if err := json.Unmarshal(o.Attributes, &a); err != nil {
		t.Fatalf("lens %s: %v", o.ID, err)
	}
	switch a.VisualizationType {
	case "lnsXY", "lnsDatatable", "lnsPie", "lnsHeatmap", "lnsMetric":
	default:
		t.Errorf("lens %s: visualization type %q", o.ID, a.VisualizationType)
	}
	if a.Title == "" || a.State.Query.Language != "kuery" || a.State.Filters == nil {
		t.Errorf("lens %s: title, kuery query and filters list are required", o.ID)
	}
	layers := a.State.DatasourceStates.FormBased.Layers
	if len(layers) == 0 {
		t.Errorf("lens %s: no formBased layer", o.ID)
	}
	refNames := map[string]Reference{}
	for _, r := range o.References {
		refNames[r.Name] = r
	}
	fields := kqlFields(a.State.Query.Query)
	for id, layer := range layers {
		r, ok := refNames["indexpattern-datasource-layer-"+id]
		if !ok || r.Type != "index-pattern" || r.ID != DataViewID {
			t.Errorf("lens %s: layer %s has no reference to the data view", o.ID, id)
		}
		if len(layer.ColumnOrder) != len(layer.Columns) {
			t.Errorf("lens %s: columnOrder has %d ids for %d columns", o.ID, len(layer.ColumnOrder), len(layer.Columns))
		}
		for _, cid := range layer.ColumnOrder {
			c, ok := layer.Columns[cid]
			if !ok {
				t.Errorf("lens %s: columnOrder names %s, which is not a column", o.ID, cid)
				continue
			}
			for _, ref := range c.References {
				if _, ok := layer.Columns[ref]; !ok {
					t.Errorf("lens %s column %s: references missing column %s", o.ID, cid, ref)
				}
			}
			if c.Params.OrderBy.Type == "column" {
				if oc, ok := layer.Columns[c.Params.OrderBy.ColumnID]; !ok || oc.IsBucketed {
					t.Errorf("lens %s column %s: ranked by %q, not a metric column", o.ID, cid, c.Params.OrderBy.ColumnID)
				}
			}
			fields = append(fields, fieldsOfColumn(c)...)
		}
		// Every accessor the visualization names is a column of the layer.
		var vis map[string]any
		if err := json.Unmarshal(a.State.Visualization, &vis); err != nil {
			t.Fatalf("lens %s: visualization: %v", o.ID, err)
		}
		for _, acc := range accessors(vis) {
			if _, ok := layer.Columns[acc]; !ok {
				t.Errorf("lens %s: visualization uses column %s, which the layer does not have", o.ID, acc)
			}
		}
	}
	for _, f := range fields {
		typ, ok := tableTypes[f]
		if !ok {
			t.Errorf("lens %s uses %s, which is not in the field table (docs/fields.md)", o.ID, f)
			continue
		}
		if !aggregatable[typ] {
			t.Errorf("lens %s uses %s of type %s, which is not aggregatable", o.ID, f, typ)
		}
		if tmplTypes[f] != typ {
			t.Errorf("lens %s uses %s: field table says %s, index template maps %q", o.ID, f, typ, tmplTypes[f])
		}
	}
}

// accessors collects the column ids a Lens visualization state names.
func accessors(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			switch {
			case k == "columnId" || strings.HasSuffix(k, "Accessor"):
				if s, ok := val.(string); ok {
					out = append(out, s)
				}
			case k == "accessors" || k == "primaryGroups" || k == "metrics":
				if l, ok := val.([]any); ok {
					for _, e := range l {
						if s, ok := e.(string); ok {
							out = append(out, s)
						}
					}
				}
			default:
				out = append(out, accessors(val)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, accessors(e)...)
		}
	}
	return out
}

// TestSpecNames keeps ids stable and readable.
func TestSpecNames(t *testing.T) {
	slug := regexp.MustCompile(`^[a-z0-9-]+$`)
	for _, d := range Dashboards() {
		for _, p := range d.Panels {
			if !slug.MatchString(d.Slug) || !slug.MatchString(p.Slug) || p.Description == "" {
				t.Errorf("%s/%s: slugs must be [a-z0-9-] and the panel described", d.Slug, p.Slug)
			}
		}
	}
	_ = testutil.InCI
}
