package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/yamlconf"
)

func TestClassicRules(t *testing.T) {
	f, err := LoadRules("testdata/classic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 3 {
		t.Fatalf("%d rules", len(f.Rules))
	}
	r := f.Rules[0]
	if r.Scope != "line" || *r.Above != 0.9 || *r.Clear != 0.8 || r.For != 5*time.Second || r.RateLimit != 20 {
		t.Errorf("line_saturated read as %+v", r)
	}
	if f.Rules[1].Scope != "project" || f.Rules[2].Scope != "vm" || f.Rules[2].Severity != "warning" {
		t.Errorf("scopes %q %q", f.Rules[1].Scope, f.Rules[2].Scope)
	}
	if c := f.Lines["10.1.0.3 vmnic0"].Capacity; c != 10e9 {
		t.Errorf("capacity %v", c)
	}
	if got := f.Projects(); strings.Join(got, ",") != "payments" {
		t.Errorf("projects %v", got)
	}
	if err := f.CheckProjects(map[string]bool{"payments": true}); err != nil {
		t.Error(err)
	}
}

// TestRuleErrors: every problem of a file comes back with its line.
func TestRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown key", "rules:\n  - name: a\n    value: bytes_per_second\n    above: 1\n    projekt: x\n",
			// The misspelt selector leaves the rule without a scope: both are said.
			[]string{`line 2: rule "a": scope "": say scope:`, "line 5: unknown key projekt"}},
		{"bad duration", "rules:\n  - name: a\n    value: bytes_per_second\n    project: p\n    above: 1\n    for: soon\n",
			[]string{`line 6: for: "soon" is not a duration (write 30s, 5m or 1h)`}},
		{"unknown value", "rules:\n  - name: ok\n    value: bytes_per_second\n    project: p\n    above: 1\n  - name: bad\n    value: bytes_per_minute\n    project: p\n    above: 1\n",
			[]string{`line 6: rule "bad": unknown value "bytes_per_minute"`}},
		{"unknown template field", "rules:\n  - name: a\n    value: bytes_per_second\n    project: p\n    above: 1\n    annotations: {summary: \"{{ .Bogus }}\"}\n",
			[]string{`line 2: rule "a": annotation summary: template: summary:1:3: executing "summary" at <.Bogus>: can't evaluate field Bogus`}},
		{"two thresholds, selector of another scope", "rules:\n  - name: a\n    value: rtt_p95_ms\n    scope: service\n    project: p\n    above: 1\n    below: 2\n",
			[]string{`line 2: rule "a": give exactly one of above and below`, `line 2: rule "a": a project selector does not apply to service rows`}},
		{"utilisation without lines", "rules:\n  - name: a\n    value: utilisation\n    above: 0.9\n",
			[]string{`line 2: rule "a": utilisation needs line capacities under lines:`}},
		{"bad capacity", "lines:\n  \"10.0.0.1 eth0\": {capacity: fast}\n",
			// Said once: not also as "no capacity".
			[]string{`line 2: capacity "fast": want a positive bandwidth`}},
		{"no capacity", "lines:\n  \"10.0.0.1 eth0\": {name: a}\n",
			[]string{`line 1: line "10.0.0.1 eth0": no capacity`}},
		{"threshold not a number", "rules:\n  - name: a\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    above: high\n    clear: 0.8\n",
			// Said once: not also as a clear above a threshold of 0.
			[]string{`line 5: above: "high" is not a number`}},
		{"clear on the wrong side", "rules:\n  - name: a\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    above: 1\n    clear: 2\n",
			[]string{`line 2: rule "a": clear 2 is above the threshold 1`}},
		{"no scope", "rules:\n  - name: a\n    value: bytes_per_second\n    above: 1\n",
			[]string{`line 2: rule "a": scope "": say scope:`}},
		// YAML's .nan and .inf: the rule never fired, or its alert never
		// resolved (v >= NaN is false), and the file was OK.
		{"not finite", "rules:\n  - name: a\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    below: 5\n    clear: .nan\n  - name: b\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    above: .inf\n",
			[]string{`line 2: rule "a": clear NaN: want a finite number`, `line 7: rule "b": above +Inf: want a finite number`}},
		{"detector not finite", "detectors:\n  drop: {enabled: true, clear: .nan}\n",
			[]string{"line 1: detectors: drop: clear NaN: want a finite number"}},
		{"detectors", "detectors:\n  drop: {enabled: true, ratio: 2}\n",
			[]string{"line 1: detectors: drop: ratio must be in (0, 1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tc.file))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			errs := yamlconf.Unjoin(err)
			if len(errs) != len(tc.want) {
				t.Fatalf("errors:\n%v\nwant %d", err, len(tc.want))
			}
			for i, e := range errs {
				var ye *yamlconf.Error
				if !errors.As(e, &ye) || ye.Line == 0 {
					t.Errorf("error %q has no line", e)
				}
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %q, want prefix %q", e, tc.want[i])
				}
			}
		})
	}
}

// TestUnknownProject: a rule naming a project the collector does not know
// is refused at its line.
func TestUnknownProject(t *testing.T) {
	f, err := ParseRules([]byte("rules:\n  - name: a\n    value: bytes_per_second\n    project: payments\n    above: 1\n  - name: b\n    value: bytes_per_second\n    project: paymnets\n    above: 1\n  - name: c\n    value: bytes_per_second\n    project: \"pay*\"\n    above: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = f.CheckProjects(map[string]bool{"payments": true})
	if err == nil || err.Error() != `line 6: rule "b": unknown project "paymnets" (not in the networks file or the vCenter inventory)` {
		t.Errorf("got %v", err)
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]float64{"10Gbit": 10e9, "25G": 25e9, "100Mbit/s": 100e6, "1e9": 1e9, "40Gbps": 40e9, "512kbit": 512e3} {
		if got, err := ParseBandwidth(in); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1G", "0"} {
		if _, err := ParseBandwidth(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestLabelNames: the rules file takes the label and annotation names that
// a real Alertmanager in classic mode (the only mode before 0.27) takes,
// and refuses the others at their rule's line. One such name made every
// post of the rule's alerts a 400, retried at each change and resend.
func TestLabelNames(t *testing.T) {
	am := &amInstance{t: t, bin: alertmanagerBin(t), addr: freeAddr(t), dir: t.TempDir(), args: []string{"--enable-feature=classic-mode"}}
	os.WriteFile(filepath.Join(am.dir, "am.yml"), []byte("route: {receiver: none}\nreceivers: [{name: none}]\n"), 0o644)
	am.start()
	t.Cleanup(am.stop)
	for _, name := range []string{"team", "_team_2", "Team", "owner-team", "team.name", "", "2team", "équipe", "a b"} {
		body, _ := json.Marshal([]map[string]any{{"labels": map[string]string{"alertname": "a", name: "v"},
			"annotations": map[string]string{name: "v"}, "startsAt": time.Now().UTC().Format(time.RFC3339)}})
		resp, err := http.Post(am.url()+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		taken := resp.StatusCode == http.StatusOK
		for _, kind := range []string{"labels", "annotations"} {
			file := fmt.Sprintf("rules:\n  - name: a\n    value: bytes_per_second\n    exporter: 10.0.0.1\n    above: 1\n    %s: {%q: v}\n", kind, name)
			_, err := ParseRules([]byte(file))
			if taken != (err == nil) {
				t.Errorf("%s name %q: Alertmanager answers %d, the rules file says %v", kind, name, resp.StatusCode, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), `line 2: rule "a": `) {
				t.Errorf("%s name %q: %v, want it at the rule's line", kind, name, err)
			}
		}
	}
}
