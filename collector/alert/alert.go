// Package alert turns the collector's real-time view into alerts within
// seconds: threshold rules over the rollup snapshots (package rollup, one a
// second), built-in detectors over the flows themselves (new external
// peers, port scans, half-open TCP storms) and over the snapshots (traffic
// falling below its baseline), and delivery to Prometheus Alertmanager, a
// JSON webhook, syslog (RFC 5424) and the spanflow-alerts-* index.
//
//	pipeline ─▶ rollup.Engine ─▶ Snapshot ─▶ Evaluator (rules) ─┐
//	        └─▶ Detectors (flow.Sink) ─────────────────────────┴▶ Dispatcher (storm control) ─▶ sinks
package alert

import (
	"fmt"
	"hash/fnv"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Alert is one alert's state change: firing (EndsAt zero) or resolved.
type Alert struct {
	Rule        string            `json:"rule"`
	Severity    string            `json:"severity"`
	Scope       string            `json:"scope"`
	Key         string            `json:"key"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// StartsAt is when the condition began to hold (event time); EndsAt
	// when it stopped (zero while firing).
	StartsAt time.Time `json:"startsAt"`
	EndsAt   time.Time `json:"endsAt,omitzero"`
	// FiredAt is the event time at which it fired (StartsAt + for).
	FiredAt time.Time `json:"firedAt"`
	Value   float64   `json:"value"`
	// DiscoverURL opens the alert's flows in Kibana Discover.
	DiscoverURL string `json:"discoverURL,omitempty"`
}

// Firing reports whether the alert is firing (not resolved).
func (a *Alert) Firing() bool { return a.EndsAt.IsZero() }

// Status is "firing" or "resolved".
func (a *Alert) Status() string {
	if a.Firing() {
		return "firing"
	}
	return "resolved"
}

// Fingerprint identifies the alert across its state changes.
func (a *Alert) Fingerprint() string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s", a.Rule, a.Scope, a.Key)
	return fmt.Sprintf("%016x", h.Sum64())
}

func (a *Alert) String() string {
	return fmt.Sprintf("%s %s %s=%s value=%.4g", a.Status(), a.Rule, a.Scope, a.Key, a.Value)
}

// scopeLabels are the labels an alert gets from its row.
func scopeLabels(scope, key string, rowLabels map[string]string, lineName string) map[string]string {
	l := map[string]string{}
	for k, v := range rowLabels {
		l[k] = v
	}
	switch scope {
	case "line":
		if lineName == "" {
			lineName = key
		}
		l["line"] = lineName
	case "service":
		l["service"] = key
	default:
		l[scope] = key
	}
	return l
}

// The quoting replacers are built once: a Replacer is safe for concurrent
// use, and building one per call (about 15 per Discover link) was most of
// an alert's cost in a storm of new-peer alerts.
var (
	kueryQuoter = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	risonQuoter = strings.NewReplacer("!", "!!", "'", "!'")
)

// kuery quotes a value for a KQL query.
func kuery(v string) string {
	return `"` + kueryQuoter.Replace(v) + `"`
}

// Query is the KQL query for the flows of an alert's scope.
func Query(scope, key string, labels map[string]string) string {
	switch scope {
	case "line":
		exp, ifname, _ := strings.Cut(key, " ")
		q := fmt.Sprintf("observer.ingress.interface.name:%s or observer.egress.interface.name:%s", kuery(ifname), kuery(ifname))
		// A line whose interface has no name is keyed by its ifIndex
		// (rollups): its flows carry the index and no name.
		if _, err := strconv.ParseUint(ifname, 10, 32); err == nil {
			q += fmt.Sprintf(" or observer.ingress.interface.id:%s or observer.egress.interface.id:%s", ifname, ifname)
		}
		return fmt.Sprintf("observer.ip:%s and (%s)", kuery(exp), q)
	case "project":
		return fmt.Sprintf("source.vsphere.project:%s or destination.vsphere.project:%s or source.network.project:%s or destination.network.project:%s",
			kuery(key), kuery(key), kuery(key), kuery(key))
	case "vm":
		return fmt.Sprintf("source.vsphere.vm.name:%s or destination.vsphere.vm.name:%s", kuery(key), kuery(key))
	case "service":
		// The rollups count both directions under the server's port:
		// answers come from it. A protocol without ports is port 0.
		proto, port, _ := strings.Cut(key, "/")
		if port == "0" {
			return "network.transport:" + kuery(proto)
		}
		return fmt.Sprintf("network.transport:%s and (source.port:%s or destination.port:%s)", kuery(proto), port, port)
	case "exporter":
		return "observer.ip:" + kuery(key)
	case "source":
		return "source.ip:" + kuery(key)
	case "destination":
		return "destination.ip:" + kuery(key)
	case "peer":
		q := fmt.Sprintf("(source.ip:%s or destination.ip:%s)", kuery(labels["peer"]), kuery(labels["peer"]))
		if p := labels["project"]; p != "" {
			q += fmt.Sprintf(" and (source.vsphere.project:%s or destination.vsphere.project:%s or source.network.project:%s or destination.network.project:%s)",
				kuery(p), kuery(p), kuery(p), kuery(p))
		}
		return q
	}
	return ""
}

// rison quotes a string for Kibana's rison URL state.
func rison(s string) string {
	return "'" + risonQuoter.Replace(s) + "'"
}

// DiscoverURL links to Kibana Discover on the flows of the alert: its
// query, from a minute before the condition began to a minute after it
// ended (or now, while firing).
func DiscoverURL(kibana, dataView string, a *Alert) string {
	if kibana == "" {
		return ""
	}
	from := a.StartsAt.Add(-time.Minute).UTC().Format(time.RFC3339)
	to := "now"
	if !a.EndsAt.IsZero() {
		to = a.EndsAt.Add(time.Minute).UTC().Format(time.RFC3339)
	}
	g := fmt.Sprintf("(time:(from:%s,to:%s))", rison(from), rison(to))
	q := fmt.Sprintf("(query:(language:kuery,query:%s))", rison(Query(a.Scope, a.Key, a.Labels)))
	if dataView != "" {
		q = fmt.Sprintf("(dataSource:(dataViewId:%s,type:dataView),query:(language:kuery,query:%s))", rison(dataView), rison(Query(a.Scope, a.Key, a.Labels)))
	}
	return strings.TrimRight(kibana, "/") + "/app/discover#/?_g=" + queryEscape(g) + "&_a=" + queryEscape(q)
}

// queryEscape escapes a value of the link's query (in its fragment, which
// Kibana reads as a query string): url.PathEscape left & + = as they were,
// so a VM named "R&D" cut the query short and "a+b" became "a b".
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
