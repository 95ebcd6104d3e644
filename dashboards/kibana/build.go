package kibana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/spanflow/spanflow/internal/flow"
)

// Versions written on the saved objects. Kibana migrates objects forward
// from the version they declare and refuses objects newer than itself:
// these are the versions Kibana 8.9 writes for the object shapes built here
// (Lens "formBased" datasource, partition charts with a metrics list), so the
// objects import into Kibana 8.9 and later.
const (
	coreMigrationVersion   = "8.8.0"
	lensMigrationVersion   = "8.9.0"
	dashMigrationVersion   = "8.9.0"
	dataViewMigrationVerso = "8.0.0"
)

// Object is one saved object as the import API takes it: one NDJSON line.
type Object struct {
	Type                 string         `json:"type"`
	ID                   string         `json:"id"`
	Attributes           map[string]any `json:"attributes"`
	References           []Reference    `json:"references"`
	CoreMigrationVersion string         `json:"coreMigrationVersion,omitempty"`
	TypeMigrationVersion string         `json:"typeMigrationVersion,omitempty"`
	Managed              bool           `json:"managed"`
}

// Reference points from a saved object to another.
type Reference struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// layerID is the one Lens layer of every panel.
const layerID = "layer1"

// LensID is the saved object id of a dashboard's panel.
func LensID(dashboard, panel string) string { return "spanflow-" + dashboard + "-" + panel }

// DashboardID is the saved object id of a dashboard.
func DashboardID(dashboard string) string { return "spanflow-" + dashboard }

// Build turns the dashboards into saved objects: the data view first, then
// each dashboard's Lens objects followed by the dashboard.
func Build(dashboards []Dashboard) ([]Object, error) {
	objs := []Object{dataView()}
	for _, d := range dashboards {
		var panels []any
		var refs []Reference
		x, y, rowH := 0, 0, 0
		for i, p := range d.Panels {
			lens, err := lensObject(d.Slug, p)
			if err != nil {
				return nil, fmt.Errorf("dashboard %s panel %s: %w", d.Slug, p.Slug, err)
			}
			objs = append(objs, lens)
			w, h := p.W, p.H
			if w == 0 {
				w = 24
			}
			if h == 0 {
				h = 15
			}
			if x+w > 48 {
				x, y, rowH = 0, y+rowH, 0
			}
			idx := fmt.Sprintf("%d", i+1)
			panels = append(panels, map[string]any{
				"type":             "lens",
				"gridData":         map[string]any{"x": x, "y": y, "w": w, "h": h, "i": idx},
				"panelIndex":       idx,
				"embeddableConfig": map[string]any{"enhancements": map[string]any{}},
				"panelRefName":     "panel_" + idx,
			})
			refs = append(refs, Reference{ID: lens.ID, Name: idx + ":panel_" + idx, Type: "lens"})
			x += w
			rowH = max(rowH, h)
		}
		panelsJSON, err := json.Marshal(panels)
		if err != nil {
			return nil, err
		}
		objs = append(objs, Object{
			Type: "dashboard", ID: DashboardID(d.Slug),
			Attributes: map[string]any{
				"title":       d.Title,
				"description": d.Description,
				"panelsJSON":  string(panelsJSON),
				"optionsJSON": `{"useMargins":true,"syncColors":false,"syncCursor":true,"syncTooltips":false,"hidePanelTitles":false}`,
				"timeRestore": true,
				"timeFrom":    "now-24h",
				"timeTo":      "now",
				"refreshInterval": map[string]any{
					"pause": false,
					"value": 60000,
				},
				"version": 1,
				"kibanaSavedObjectMeta": map[string]any{
					"searchSourceJSON": `{"query":{"query":"","language":"kuery"},"filter":[]}`,
				},
			},
			References:           refs,
			CoreMigrationVersion: coreMigrationVersion,
			TypeMigrationVersion: dashMigrationVersion,
		})
	}
	return objs, nil
}

// NDJSON writes objects one per line, as the export API does.
func NDJSON(objs []Object) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, o := range objs {
		if err := enc.Encode(o); err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", o.Type, o.ID, err)
		}
	}
	return b.Bytes(), nil
}

func dataView() Object {
	return Object{
		Type: "index-pattern", ID: DataViewID,
		Attributes: map[string]any{
			"title":         DataViewTitle,
			"name":          "spanflow flows",
			"timeFieldName": "@timestamp",
			"allowNoIndex":  true,
			"fields":        "[]",
			"fieldAttrs":    "{}",
			// The packets URL a probe's identity gives (docs/retrospection.md)
			// shows as a link.
			"fieldFormatMap": `{"network.bytes":{"id":"bytes"},` +
				`"netflow.spanflow_packets_url":{"id":"url","params":{"type":"a","labelTemplate":"packets (pcap)"}}}`,
			"runtimeFieldMap": "{}",
			"sourceFilters":   "[]",
			"typeMeta":        "{}",
		},
		References:           []Reference{},
		CoreMigrationVersion: coreMigrationVersion,
		TypeMigrationVersion: dataViewMigrationVerso,
	}
}

// customRank parses "sum(field)" or "count()".
var customRank = regexp.MustCompile(`^(sum|count)\(([^)]*)\)$`)

func lensObject(dashboard string, p Panel) (Object, error) {
	columns := map[string]any{}
	var order []string
	byID := map[string]Column{}
	for _, c := range p.Columns {
		if _, dup := byID[c.ID]; dup {
			return Object{}, fmt.Errorf("column %s defined twice", c.ID)
		}
		byID[c.ID] = c
	}
	for _, c := range p.Columns {
		cols, err := lensColumns(c, byID)
		if err != nil {
			return Object{}, fmt.Errorf("column %s: %w", c.ID, err)
		}
		// A formula's helper columns (idX0, idX1) follow it.
		for _, id := range []string{c.ID, c.ID + "X0", c.ID + "X1"} {
			if col, ok := cols[id]; ok {
				columns[id] = col
				order = append(order, id)
			}
		}
	}
	vis, err := visualization(p, byID)
	if err != nil {
		return Object{}, err
	}
	state := map[string]any{
		"datasourceStates": map[string]any{
			"formBased": map[string]any{"layers": map[string]any{layerID: map[string]any{
				"columnOrder": order, "columns": columns, "incompleteColumns": map[string]any{}, "sampling": 1,
			}}},
			"textBased": map[string]any{"layers": map[string]any{}},
		},
		"visualization":      vis,
		"query":              map[string]any{"language": "kuery", "query": p.KQL},
		"filters":            []any{},
		"internalReferences": []any{},
		"adHocDataViews":     map[string]any{},
	}
	return Object{
		Type: "lens", ID: LensID(dashboard, p.Slug),
		Attributes: map[string]any{
			"title":             p.Title,
			"description":       p.Description,
			"visualizationType": p.Vis,
			"state":             state,
		},
		References:           []Reference{{ID: DataViewID, Name: "indexpattern-datasource-layer-" + layerID, Type: "index-pattern"}},
		CoreMigrationVersion: coreMigrationVersion,
		TypeMigrationVersion: lensMigrationVersion,
	}, nil
}

func format(id string) map[string]any {
	switch id {
	case "":
		return nil
	case "number":
		return map[string]any{"id": "number", "params": map[string]any{"decimals": 0}}
	default:
		return map[string]any{"id": id, "params": map[string]any{"decimals": 1}}
	}
}

func metricColumn(op, field, label string) map[string]any {
	col := map[string]any{
		"label": label, "dataType": "number", "operationType": op, "isBucketed": false, "scale": "ratio",
		"params": map[string]any{"emptyAsNull": true}, "customLabel": true,
	}
	if op == opCount {
		col["sourceField"] = "___records___"
	} else {
		col["sourceField"] = field
	}
	return col
}

// lensColumns returns the Lens column(s) for c: one, or for a formula the
// formula and its two helper columns.
func lensColumns(c Column, byID map[string]Column) (map[string]any, error) {
	if c.Label == "" {
		return nil, fmt.Errorf("no label")
	}
	switch c.Op {
	case opDateHistogram:
		return map[string]any{c.ID: map[string]any{
			"label": c.Label, "dataType": "date", "operationType": opDateHistogram, "sourceField": c.Field,
			"isBucketed": true, "scale": "interval",
			"params": map[string]any{"interval": "auto", "includeEmptyRows": true, "dropPartials": false},
		}}, nil
	case opTerms:
		dt, err := lensDataType(c.Field)
		if err != nil {
			return nil, err
		}
		params := map[string]any{
			"size": c.Size, "orderDirection": "desc", "otherBucket": false, "missingBucket": false,
			"parentFormat": map[string]any{"id": "terms"},
			"include":      []any{}, "exclude": []any{}, "includeIsRegex": false, "excludeIsRegex": false,
		}
		if c.Size < 1 {
			return nil, fmt.Errorf("top values need a size")
		}
		if len(c.Secondary) > 0 {
			params["secondaryFields"] = c.Secondary
			params["parentFormat"] = map[string]any{"id": "multi_terms"}
			dt = "string"
		}
		switch m := customRank.FindStringSubmatch(c.OrderBy); {
		case c.OrderBy == "":
			params["orderBy"] = map[string]any{"type": "alphabetical", "fallback": false}
			params["orderDirection"] = "asc"
		case m != nil:
			params["orderBy"] = map[string]any{"type": "custom"}
			label := "Count of records"
			if m[1] == opSum {
				label = "Sum of " + m[2]
			}
			params["orderAgg"] = metricColumn(m[1], m[2], label)
		default:
			if o, ok := byID[c.OrderBy]; !ok || o.Op == opTerms || o.Op == opDateHistogram || o.Op == opFilters || o.Op == opFormula {
				return nil, fmt.Errorf("top values ranked by %q, which is not a metric column", c.OrderBy)
			}
			params["orderBy"] = map[string]any{"type": "column", "columnId": c.OrderBy}
		}
		return map[string]any{c.ID: map[string]any{
			"label": c.Label, "customLabel": true, "dataType": dt, "operationType": opTerms, "sourceField": c.Field,
			"isBucketed": true, "scale": "ordinal", "params": params,
		}}, nil
	case opFilters:
		var fs []any
		for _, f := range c.Filters {
			fs = append(fs, map[string]any{"label": f.Label, "input": map[string]any{"query": f.KQL, "language": "kuery"}})
		}
		return map[string]any{c.ID: map[string]any{
			"label": c.Label, "customLabel": true, "dataType": "string", "operationType": opFilters,
			"isBucketed": true, "scale": "ordinal", "params": map[string]any{"filters": fs},
		}}, nil
	case opCount, opSum, opMax, opAverage, opUniqueCount, opPercentile:
		if c.Op != opCount && c.Field == "" {
			return nil, fmt.Errorf("%s needs a field", c.Op)
		}
		col := metricColumn(c.Op, c.Field, c.Label)
		params := col["params"].(map[string]any)
		if c.Op == opPercentile {
			if c.Percentile <= 0 || c.Percentile >= 100 {
				return nil, fmt.Errorf("percentile %d", c.Percentile)
			}
			params["percentile"] = c.Percentile
		}
		if c.Op == opMax {
			if dt, _ := lensDataType(c.Field); dt == "date" {
				col["dataType"] = "date"
			}
		}
		if f := format(c.Format); f != nil {
			params["format"] = f
		}
		if c.TimeScale != "" {
			col["timeScale"] = c.TimeScale
		}
		return map[string]any{c.ID: col}, nil
	case opFormula:
		if c.Field == "" || c.Multiplier == 0 {
			return nil, fmt.Errorf("a formula here is sum(field) * multiplier")
		}
		text := fmt.Sprintf("sum(%s) * %d", c.Field, c.Multiplier)
		sum := metricColumn(opSum, c.Field, "Part of "+c.Label)
		sum["params"] = map[string]any{"emptyAsNull": false}
		math := map[string]any{
			"label": "Part of " + c.Label, "customLabel": true, "dataType": "number", "operationType": "math",
			"isBucketed": false, "scale": "ratio", "references": []string{c.ID + "X0"},
			"params": map[string]any{"tinymathAst": map[string]any{
				"type": "function", "name": "multiply", "args": []any{c.ID + "X0", c.Multiplier},
				"location": map[string]any{"min": 0, "max": len(text)}, "text": text,
			}},
		}
		formula := map[string]any{
			"label": c.Label, "customLabel": true, "dataType": "number", "operationType": opFormula,
			"isBucketed": false, "scale": "ratio", "references": []string{c.ID + "X1"},
			"params": map[string]any{"formula": text, "isFormulaBroken": false},
		}
		if f := format(c.Format); f != nil {
			formula["params"].(map[string]any)["format"] = f
		}
		if c.TimeScale != "" {
			formula["timeScale"] = c.TimeScale
		}
		return map[string]any{c.ID: formula, c.ID + "X0": sum, c.ID + "X1": math}, nil
	}
	return nil, fmt.Errorf("unknown operation %q", c.Op)
}

func visualization(p Panel, byID map[string]Column) (map[string]any, error) {
	need := func(ids ...string) error {
		for _, id := range ids {
			if _, ok := byID[id]; !ok {
				return fmt.Errorf("visualization uses column %q, which the panel does not define", id)
			}
		}
		return nil
	}
	switch p.Vis {
	case "lnsXY":
		if err := need(append([]string{p.X}, p.Y...)...); err != nil {
			return nil, err
		}
		layer := map[string]any{
			"layerId": layerID, "layerType": "data", "seriesType": p.SeriesType, "xAccessor": p.X,
			"accessors": p.Y, "palette": map[string]any{"type": "palette", "name": "default"},
		}
		if p.Split != "" {
			if err := need(p.Split); err != nil {
				return nil, err
			}
			layer["splitAccessor"] = p.Split
		}
		if p.SeriesType == "" {
			return nil, fmt.Errorf("XY panel without series type")
		}
		return map[string]any{
			"legend":              map[string]any{"isVisible": true, "position": "right"},
			"valueLabels":         "hide",
			"fittingFunction":     "None",
			"preferredSeriesType": p.SeriesType,
			"layers":              []any{layer},
		}, nil
	case "lnsDatatable":
		var cols []any
		for _, c := range p.Columns {
			cols = append(cols, map[string]any{"columnId": c.ID, "isTransposed": false})
		}
		return map[string]any{"layerId": layerID, "layerType": "data", "columns": cols}, nil
	case "lnsPie":
		if err := need(append(p.Groups, p.Metrics...)...); err != nil {
			return nil, err
		}
		return map[string]any{"shape": "donut", "layers": []any{map[string]any{
			"layerId": layerID, "layerType": "data", "primaryGroups": p.Groups, "metrics": p.Metrics,
			"numberDisplay": "percent", "categoryDisplay": "default", "legendDisplay": "default", "nestedLegend": false,
		}}}, nil
	case "lnsHeatmap":
		if len(p.Y) != 1 {
			return nil, fmt.Errorf("heatmap needs one y column")
		}
		if err := need(p.X, p.Y[0], p.Value); err != nil {
			return nil, err
		}
		return map[string]any{
			"shape": "heatmap", "layerId": layerID, "layerType": "data",
			"xAccessor": p.X, "yAccessor": p.Y[0], "valueAccessor": p.Value,
			"legend": map[string]any{"isVisible": true, "position": "right", "type": "heatmap_legend"},
			"gridConfig": map[string]any{"type": "heatmap_grid", "isCellLabelVisible": false,
				"isYAxisLabelVisible": true, "isXAxisLabelVisible": true, "isYAxisTitleVisible": true, "isXAxisTitleVisible": true},
		}, nil
	case "lnsMetric":
		if len(p.Metrics) != 1 {
			return nil, fmt.Errorf("metric needs one metric column")
		}
		return map[string]any{"layerId": layerID, "layerType": "data", "metricAccessor": p.Metrics[0]}, nil
	}
	return nil, fmt.Errorf("unknown visualization %q", p.Vis)
}

// lensDataType is the Lens data type of a document field, from the field
// table; only aggregatable types are accepted.
func lensDataType(field string) (string, error) {
	for _, f := range flow.Fields() {
		if f.Name != field {
			continue
		}
		switch f.Type {
		case "ip":
			return "ip", nil
		case "keyword":
			return "string", nil
		case "long":
			return "number", nil
		case "date":
			return "date", nil
		}
		return "", fmt.Errorf("field %s has type %s, which panels do not aggregate", field, f.Type)
	}
	return "", fmt.Errorf("field %s is not in the flow document (internal/flow)", field)
}
