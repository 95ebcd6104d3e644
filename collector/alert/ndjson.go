package alert

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/spanflow/spanflow/internal/flow"
)

// ReadFlows reads flow documents as the NDJSON output writes them (nested
// ECS objects, one per line) back into records, in batches, for `spanflow
// rules test --ndjson`; a batch holds at most batch records of one
// second of event time. Only what the rollups and detectors read is kept.
// Documents that are not flows (interface counters, exporter statistics)
// are skipped; a line that is not JSON is an error naming its line.
func ReadFlows(r io.Reader, batch int, fn func([]flow.Record) error) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var recs []flow.Record
	n, line := 0, 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			return n, fmt.Errorf("line %d: %w", line, err)
		}
		flat := map[string]any{}
		flatten("", doc, flat)
		if k, _ := flat["event.kind"].(string); k != "" && k != "event" {
			continue
		}
		rec, err := docRecord(flat)
		if err != nil {
			return n, fmt.Errorf("line %d: %w", line, err)
		}
		// A batch stays within one second of event time: the rollup engine
		// in event time publishes one snapshot per Write, so a batch
		// spanning seconds would hide the seconds inside it from the rules.
		if len(recs) > 0 && !eventTime(&rec).Truncate(time.Second).Equal(eventTime(&recs[0]).Truncate(time.Second)) {
			if err := fn(recs); err != nil {
				return n, err
			}
			recs = recs[:0]
		}
		recs = append(recs, rec)
		n++
		if len(recs) >= batch {
			if err := fn(recs); err != nil {
				return n, err
			}
			recs = recs[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	if len(recs) > 0 {
		return n, fn(recs)
	}
	return n, nil
}

func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(k, sub, out)
			continue
		}
		out[k] = v
	}
}

// kinds are the records' protocols by their flow.protocol names.
var kinds = map[string]flow.Kind{"netflow_v5": flow.KindNetFlowV5, "netflow_v9": flow.KindNetFlowV9,
	"ipfix": flow.KindIPFIX, "sflow": flow.KindSFlow}

func docRecord(d map[string]any) (flow.Record, error) {
	var r flow.Record
	var err error
	str := func(k string) string { s, _ := d[k].(string); return s }
	num := func(k string) uint64 {
		switch v := d[k].(type) {
		case float64:
			return uint64(v)
		case string:
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
		return 0
	}
	tm := func(k string) time.Time {
		t, e := time.Parse(time.RFC3339Nano, str(k))
		if e != nil && str(k) != "" && err == nil {
			err = fmt.Errorf("%s: %w", k, e)
		}
		return t
	}
	addr := func(k string) netip.Addr {
		a, e := netip.ParseAddr(str(k))
		if e != nil && str(k) != "" && err == nil {
			err = fmt.Errorf("%s: %w", k, e)
		}
		return a
	}
	r.Received, r.Start, r.End = tm("event.created"), tm("event.start"), tm("event.end")
	if r.End.IsZero() {
		r.End = tm("@timestamp")
	}
	if r.Start.IsZero() {
		r.Start = r.End
	}
	r.ObserverIP = addr("observer.ip")
	r.SrcAddr, r.DstAddr = addr("source.ip"), addr("destination.ip")
	r.SrcPort, r.DstPort = uint16(num("source.port")), uint16(num("destination.port"))
	r.Proto = uint8(num("network.iana_number"))
	r.Bytes, r.Packets = num("network.bytes"), num("network.packets")
	r.TCPFlags = uint16(num("netflow.tcp_control_bits"))
	// What the rollups read to tell the server port (rollup.serverPortOf):
	// the protocol (an sFlow sample is one packet), the sampling, whether
	// the flags were sent, and the exporter's biflowDirection.
	r.Kind = kinds[str("flow.protocol")]
	r.SamplingRate = uint32(num("netflow.sampling_interval"))
	if _, ok := d["netflow.tcp_control_bits"]; !ok && r.Proto == 6 {
		r.NoTCPFlags = true
	}
	if _, ok := d["netflow.biflow_direction"]; ok {
		r.Extra = []flow.Extra{{Name: "biflow_direction", Num: num("netflow.biflow_direction")}}
	}
	r.InIf, r.OutIf = uint32(num("observer.ingress.interface.id")), uint32(num("observer.egress.interface.id"))
	r.InIfName, r.OutIfName = str("observer.ingress.interface.name"), str("observer.egress.interface.name")
	r.TCP.RTTClient = time.Duration(num("spanflow.tcp.rtt_client_us")) * time.Microsecond
	r.TCP.RTTServer = time.Duration(num("spanflow.tcp.rtt_server_us")) * time.Microsecond
	r.TCP.Retransmissions = uint32(num("spanflow.tcp.retransmissions"))
	r.TCP.ZeroWindows = uint32(num("spanflow.tcp.zero_windows"))
	r.Locality, r.Direction = str("flow.locality"), str("flow.direction")
	for _, side := range []struct {
		p string
		e *flow.Endpoint
	}{{"source", &r.Src}, {"destination", &r.Dst}} {
		if vm, proj := str(side.p+".vsphere.vm.name"), str(side.p+".vsphere.project"); vm != "" || proj != "" {
			side.e.VSphere = &flow.VSphere{VMName: vm, Project: proj, HostName: str(side.p + ".vsphere.host.name")}
		}
		if name, proj := str(side.p+".network.name"), str(side.p+".network.project"); name != "" || proj != "" {
			side.e.Network = &flow.NetworkInfo{Name: name, Project: proj}
		}
	}
	return r, err
}
