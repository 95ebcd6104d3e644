// Package kibana holds spanflow's Kibana dashboards — a data view for
// spanflow-flows-* and Lens visualizations over the documented flow fields —
// and installs them through Kibana's saved objects import API.
//
// The dashboards are defined in spec.go; Build turns them into saved objects
// and spanflow.ndjson, the file committed beside this package and embedded in
// the binary, is its output (a test keeps the two equal: regenerate with
// `go test ./dashboards/kibana -run TestObjectsFile -update`).
package kibana

import (
	_ "embed"
)

// File is the name of the saved objects file.
const File = "spanflow.ndjson"

//go:embed spanflow.ndjson
var objects []byte

// Objects returns the saved objects NDJSON that `spanflow dashboards install`
// imports.
func Objects() []byte { return append([]byte(nil), objects...) }
