// Package groundtruth generates a known set of flow records for the tests of
// the dashboards and reports, reads their field values straight from the
// records (not from the encoded documents), and indexes them into a test
// index on a real Elasticsearch with internal/flow's encoder.
package groundtruth

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/esconn"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/testutil"
)

// Start is the beginning of the generated data: six hours from here.
var Start = time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)

// Span is how long the generated data lasts.
const Span = 6 * time.Hour

// Line is one exporter interface.
type Line struct {
	Observer netip.Addr
	IfIndex  uint32
	Name     string // empty: the exporter gives no name
}

// Lines are the exporters' interfaces the records pass through.
var Lines = func() []Line {
	var ls []Line
	obs := []string{"10.255.0.1", "10.255.0.2", "fd00:255::3"}
	for i, o := range obs {
		for j := uint32(1); j <= 3; j++ {
			name := fmt.Sprintf("vmnic%d", j-1)
			if i == 1 && j == 3 {
				name = "" // an interface without a name
			}
			ls = append(ls, Line{Observer: netip.MustParseAddr(o), IfIndex: j, Name: name})
		}
	}
	return ls
}()

type vm struct {
	name, uuid, host, cluster, project, network string
	addr                                        netip.Addr
}

func vms() []vm {
	var out []vm
	projects := []string{"payments", "cards", "ledger"}
	for i := range 12 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i / 4), byte(10 + i)})
		if i%5 == 4 {
			b := netip.MustParseAddr("fd00:1::").As16()
			b[15] = byte(i)
			a = netip.AddrFrom16(b)
		}
		out = append(out, vm{
			name: fmt.Sprintf("vm-%02d", i), uuid: fmt.Sprintf("4210%04x-0000-0000-0000-%012x", i, i),
			host: fmt.Sprintf("esx-%d", i%4), cluster: fmt.Sprintf("cl-%d", i%2),
			project: projects[i%3], network: "pg-" + projects[i%3], addr: a,
		})
	}
	return out
}

func external(rng *rand.Rand) netip.Addr {
	if rng.IntN(4) == 0 {
		b := netip.MustParseAddr("2001:db8::").As16()
		b[15] = byte(1 + rng.IntN(10))
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + rng.IntN(20))})
}

// Records generates n records over [Start, Start+Span): east-west between
// VMs of three projects, north-south to external peers, a few flows unknown
// to vCenter, TCP with measured RTT/retransmissions/zero windows, UDP and
// ICMP, IPv4 and IPv6, through the interfaces of three exporters.
func Records(n int, seed uint64) []flow.Record {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	machines := vms()
	recs := make([]flow.Record, n)
	for i := range recs {
		r := &recs[i]
		end := Start.Add(time.Duration(rng.Int64N(int64(Span/time.Millisecond))) * time.Millisecond)
		r.End = end
		r.Start = end.Add(-time.Duration(rng.IntN(120_000)) * time.Millisecond)
		r.Received = end.Add(time.Duration(1+rng.IntN(5)) * time.Second)

		// Exporter and its interfaces.
		e := rng.IntN(3)
		in := 1 + rng.IntN(3)
		out := 1 + (in+rng.IntN(2))%3
		lin, lout := Lines[e*3+in-1], Lines[e*3+out-1]
		r.ObserverIP = lin.Observer
		r.InIf, r.InIfName = lin.IfIndex, lin.Name
		r.OutIf, r.OutIfName = lout.IfIndex, lout.Name
		r.Kind = flow.KindIPFIX
		if e == 1 {
			r.Kind = flow.KindNetFlowV9
		}
		r.ObservationDomain = uint32(1 + rng.IntN(2))
		if e == 2 {
			r.ObservationDomain = 7
		}

		// Ends.
		src, dst := machines[rng.IntN(len(machines))], machines[rng.IntN(len(machines))]
		switch k := rng.IntN(20); {
		case k < 12: // east-west
			for dst.name == src.name || dst.addr.Is4() != src.addr.Is4() {
				dst = machines[rng.IntN(len(machines))]
			}
			r.SrcAddr, r.DstAddr = src.addr, dst.addr
			r.Src.VSphere, r.Dst.VSphere = src.vsphere(), dst.vsphere()
			r.Locality, r.Direction = "internal", "east-west"
		case k < 16: // inbound
			ext := external(rng)
			for dst.addr.Is4() != ext.Is4() {
				dst = machines[rng.IntN(len(machines))]
			}
			r.SrcAddr, r.DstAddr = ext, dst.addr
			r.Dst.VSphere = dst.vsphere()
			r.Locality, r.Direction = "external", "north-south"
		case k < 19: // outbound
			ext := external(rng)
			for src.addr.Is4() != ext.Is4() {
				src = machines[rng.IntN(len(machines))]
			}
			r.SrcAddr, r.DstAddr = src.addr, ext
			r.Src.VSphere = src.vsphere()
			r.Locality, r.Direction = "external", "north-south"
		default: // not known to vCenter nor to the networks file
			r.SrcAddr = netip.AddrFrom4([4]byte{172, 16, 0, byte(1 + rng.IntN(5))})
			r.DstAddr = netip.AddrFrom4([4]byte{172, 16, 1, byte(1 + rng.IntN(5))})
			r.Direction = "unknown"
		}

		// Transport.
		switch k := rng.IntN(20); {
		case k < 14:
			r.Proto = 6
			r.SrcPort = uint16(32768 + rng.IntN(28000))
			r.DstPort = []uint16{443, 80, 5432, 22, 3306}[rng.IntN(5)]
			r.TCPFlags = 0x1b
			r.TCP = flow.TCPPerf{
				RTTServer:       time.Duration(50+rng.IntN(40_000)) * time.Microsecond,
				RTTClient:       time.Duration(20+rng.IntN(9_000)) * time.Microsecond,
				Retransmissions: uint32(rng.IntN(4) * rng.IntN(8)),
				ZeroWindows:     uint32(rng.IntN(2) * rng.IntN(4)),
			}
			if rng.IntN(10) == 0 { // a flow seen without its handshake
				r.TCP.RTTServer, r.TCP.RTTClient = 0, 0
			}
		case k < 19:
			r.Proto = 17
			r.SrcPort = uint16(32768 + rng.IntN(28000))
			r.DstPort = []uint16{53, 123, 514}[rng.IntN(3)]
		default:
			if r.SrcAddr.Is4() {
				r.Proto, r.ICMPType = 1, 8
			} else {
				r.Proto, r.ICMPType = 58, 128
			}
		}
		// Byte counts spread over four orders of magnitude make ties rare.
		r.Bytes = uint64(64 + rng.Int64N(1<<uint(10+rng.IntN(14))))
		r.Packets = 1 + r.Bytes/uint64(200+rng.IntN(1200))
		r.EndReason = uint8(1 + rng.IntN(3))
	}
	return recs
}

// ExporterStats generates the collector's exporter statistics documents
// (event.kind metric) for the exporters and observation domains Records
// uses, one per domain every 5 minutes over [Start, Start+Span): records and
// datagrams, sequence losses in a few intervals, template counts that
// change over time.
func ExporterStats(seed uint64) []flow.Record {
	rng := rand.New(rand.NewPCG(seed, seed^0x51afd7ed558ccd))
	type domain struct {
		observer netip.Addr
		kind     flow.Kind
		id       uint32
	}
	var ds []domain
	for e, kind := range []flow.Kind{flow.KindIPFIX, flow.KindNetFlowV9, flow.KindIPFIX} {
		ids := []uint32{1, 2}
		if e == 2 {
			ids = []uint32{7}
		}
		for _, id := range ids {
			ds = append(ds, domain{Lines[e*3].Observer, kind, id})
		}
	}
	const every = 5 * time.Minute
	var recs []flow.Record
	for at := Start.Add(every); !at.After(Start.Add(Span)); at = at.Add(every) {
		for i, d := range ds {
			st := &flow.ExporterStats{Interval: every, Templates: uint64(1 + i%3 + rng.IntN(3))}
			st.Datagrams = uint64(100 + rng.IntN(900))
			st.Records = st.Datagrams * uint64(1+rng.IntN(30))
			if rng.IntN(6) == 0 {
				st.SequenceLosses = uint64(1 + rng.Int64N(1<<uint(rng.IntN(12))))
			}
			if rng.IntN(20) == 0 {
				st.DecodeErrors = uint64(1 + rng.IntN(5))
			}
			recs = append(recs, flow.Record{Kind: d.kind, ObserverIP: d.observer, ObservationDomain: d.id,
				Received: at.Add(time.Duration(rng.IntN(1000)) * time.Millisecond), Exporter: st})
		}
	}
	return recs
}

func (v vm) vsphere() *flow.VSphere {
	return &flow.VSphere{VMName: v.name, VMUUID: v.uuid, HostName: v.host, ClusterName: v.cluster,
		DatacenterName: "dc1", NetworkName: v.network, Project: v.project}
}

// Value returns a record's value of a document field as Elasticsearch
// returns bucket keys: addresses in canonical form, numbers in decimal,
// dates in epoch milliseconds. It reads the record, not the encoded
// document, and knows the fields the dashboards and reports use.
func Value(r *flow.Record, field string) (string, bool) {
	str := func(s string) (string, bool) { return s, s != "" }
	num := func(v uint64, ok bool) (string, bool) { return strconv.FormatUint(v, 10), ok }
	vs := func(v *flow.VSphere, get func(*flow.VSphere) string) (string, bool) {
		if v == nil {
			return "", false
		}
		return str(get(v))
	}
	side, rest, _ := strings.Cut(field, ".")
	if side == "source" || side == "destination" {
		src := side == "source"
		addr, port, ep := r.DstAddr, r.DstPort, r.Dst
		if src {
			addr, port, ep = r.SrcAddr, r.SrcPort, r.Src
		}
		switch rest {
		case "ip":
			return addr.String(), addr.IsValid()
		case "port":
			return num(uint64(port), r.Proto == 6 || r.Proto == 17)
		case "vsphere.vm.name":
			return vs(ep.VSphere, func(v *flow.VSphere) string { return v.VMName })
		case "vsphere.host.name":
			return vs(ep.VSphere, func(v *flow.VSphere) string { return v.HostName })
		case "vsphere.cluster.name":
			return vs(ep.VSphere, func(v *flow.VSphere) string { return v.ClusterName })
		case "vsphere.project":
			return vs(ep.VSphere, func(v *flow.VSphere) string { return v.Project })
		}
		panic("groundtruth: no value for field " + field)
	}
	tcp := r.Proto == 6 && r.TCP != (flow.TCPPerf{})
	isFlow := r.Exporter == nil && r.Counters == nil
	if rest, ok := strings.CutPrefix(field, "spanflow.exporter."); ok {
		if r.Exporter == nil {
			return "", false
		}
		switch rest {
		case "sequence_losses":
			return num(r.Exporter.SequenceLosses, true)
		case "templates":
			return num(r.Exporter.Templates, true)
		case "records":
			return num(r.Exporter.Records, true)
		case "datagrams":
			return num(r.Exporter.Datagrams, true)
		case "decode_errors":
			return num(r.Exporter.DecodeErrors, true)
		}
		panic("groundtruth: no value for field " + field)
	}
	switch field {
	case "@timestamp":
		if r.End.IsZero() {
			return strconv.FormatInt(r.Received.UnixMilli(), 10), true
		}
		return strconv.FormatInt(r.End.UnixMilli(), 10), true
	case "event.kind":
		if isFlow {
			return "event", true
		}
		return "metric", true
	case "event.action":
		switch {
		case r.Exporter != nil:
			return "exporter_stats", true
		case r.Counters != nil:
			return "interface_counters", true
		}
		return "network_flow", true
	case "event.created":
		return strconv.FormatInt(r.Received.UnixMilli(), 10), true
	case "network.bytes":
		return num(r.Bytes, isFlow)
	case "network.packets":
		return num(r.Packets, isFlow)
	case "network.transport":
		if !r.SrcAddr.IsValid() {
			return "", false
		}
		return map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}[r.Proto], true
	case "network.type":
		if !r.SrcAddr.IsValid() {
			return "", false
		}
		if r.SrcAddr.Is4() {
			return "ipv4", true
		}
		return "ipv6", true
	case "flow.direction":
		return str(r.Direction)
	case "flow.protocol":
		return map[flow.Kind]string{flow.KindIPFIX: "ipfix", flow.KindNetFlowV9: "netflow_v9"}[r.Kind], true
	case "observer.ip":
		return r.ObserverIP.String(), true
	case "observer.ingress.interface.id":
		return num(uint64(r.InIf), r.InIf != 0)
	case "observer.egress.interface.id":
		return num(uint64(r.OutIf), r.OutIf != 0)
	case "observer.ingress.interface.name":
		return str(r.InIfName)
	case "observer.egress.interface.name":
		return str(r.OutIfName)
	case "netflow.observation_domain_id":
		return num(uint64(r.ObservationDomain), true)
	case "spanflow.tcp.rtt_client_us":
		return num(uint64(r.TCP.RTTClient/time.Microsecond), r.Proto == 6 && r.TCP.RTTClient > 0)
	case "spanflow.tcp.rtt_server_us":
		return num(uint64(r.TCP.RTTServer/time.Microsecond), r.Proto == 6 && r.TCP.RTTServer > 0)
	case "spanflow.tcp.retransmissions":
		return num(uint64(r.TCP.Retransmissions), tcp)
	case "spanflow.tcp.zero_windows":
		return num(uint64(r.TCP.ZeroWindows), tcp)
	}
	panic("groundtruth: no value for field " + field)
}

// Client returns a client for the test cluster at url.
func Client(t testing.TB, url string) *elasticsearch.Client {
	t.Helper()
	c := esconn.DefaultConfiguration()
	c.URLs = []string{url}
	client, err := esconn.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

var indexSeq atomic.Int64

// Index creates a fresh index with the flow mapping of the index template
// (setup.Mapping, derived from the field table), indexes the records encoded
// by flow.Encoder, refreshes it and deletes it when the test ends. Its name
// does not match spanflow-flows-*, so templates installed on a shared
// cluster by other tests do not apply to it.
func Index(t testing.TB, client *elasticsearch.Client, recs []flow.Record) string {
	t.Helper()
	name := fmt.Sprintf("spanflow-dashtest-%d-%d", time.Now().UnixNano(), indexSeq.Add(1))
	mapping, err := setup.Mapping()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
		"mappings": mapping,
	})
	do(t, client, http.MethodPut, "/"+name, "application/json", body)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, "/"+name, nil)
		if res, err := client.Perform(req); err == nil {
			res.Body.Close()
		}
	})
	var enc flow.Encoder
	var bulk []byte
	flush := func() {
		if len(bulk) == 0 {
			return
		}
		out := do(t, client, http.MethodPost, "/"+name+"/_bulk", "application/x-ndjson", bulk)
		var res struct {
			Errors bool `json:"errors"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.Errors {
			t.Fatalf("bulk into %s: errors in %.500s", name, out)
		}
		bulk = bulk[:0]
	}
	for i := range recs {
		bulk = append(bulk, `{"index":{}}`+"\n"...)
		bulk = enc.AppendDocument(bulk, &recs[i])
		bulk = append(bulk, '\n')
		if len(bulk) > 4<<20 {
			flush()
		}
	}
	flush()
	do(t, client, http.MethodPost, "/"+name+"/_refresh", "", nil)
	var count struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(do(t, client, http.MethodGet, "/"+name+"/_count", "", nil), &count); err != nil || count.Count != len(recs) {
		t.Fatalf("index %s holds %d documents, want %d (%v)", name, count.Count, len(recs), err)
	}
	return name
}

func do(t testing.TB, client *elasticsearch.Client, method, path, ctype string, body []byte) []byte {
	t.Helper()
	return testutil.ESRequest(t, client, method, path, ctype, body)
}
