package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
)

// Datagrams writes msgs as UDP datagrams 127.0.0.1:50000 → 127.0.0.1:port in
// a pcap file, for decoders that read captures.
func Datagrams(path string, msgs [][]byte, port uint16, at time.Time) error {
	lo := netip.MustParseAddr("127.0.0.1")
	var pkts []synth.Packet
	for i, m := range msgs {
		ip := synth.IPv4(lo, lo, 17, 0, uint16(i), 0, false, synth.UDP(50000, port, m))
		pkts = append(pkts, synth.Packet{Time: at.UnixNano() + int64(i)*1000, Data: synth.Ethernet(synth.MAC(1), synth.MAC(2), nil, 0x0800, ip)})
	}
	return synth.WritePcapFile(path, pkts)
}

// TsharkResult is what tshark's cflow dissector made of a capture.
type TsharkResult struct {
	Flows    []synth.Flow
	Options  int      // options (statistics) records
	Problems []string // expert info and malformed frames
}

// Tshark decodes the datagrams of path (sent to port) with tshark's cflow
// dissector and returns every flow record it shows.
func Tshark(tshark, path string, port uint16) (*TsharkResult, error) {
	cmd := exec.Command(tshark, "-r", path, "-d", fmt.Sprintf("udp.port==%d,cflow", port), "-T", "json", "--no-duplicate-keys")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark %s: %w: %s", filepath.Base(path), err, stderr.String())
	}
	var frames []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &frames); err != nil {
		return nil, fmt.Errorf("tshark json: %w", err)
	}
	res := &TsharkResult{}
	for i, fr := range frames {
		for k, raw := range fr.Source.Layers {
			if strings.HasPrefix(k, "_ws.") {
				res.Problems = append(res.Problems, fmt.Sprintf("frame %d: %s: %s", i+1, k, raw))
			}
		}
		raw, ok := fr.Source.Layers["cflow"]
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("frame %d: no cflow layer", i+1))
			continue
		}
		var tree map[string]any
		if err := json.Unmarshal(raw, &tree); err != nil {
			return nil, err
		}
		if err := res.walk(tree, i+1); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (r *TsharkResult) walk(tree map[string]any, frame int) error {
	for k, v := range tree {
		if strings.HasPrefix(k, "_ws.") {
			r.Problems = append(r.Problems, fmt.Sprintf("frame %d: %s: %v", frame, k, v))
		}
		sub, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if strings.HasPrefix(k, "Flow ") {
			if _, ok := sub["cflow.octets"]; ok {
				f, err := tsharkFlow(sub)
				if err != nil {
					return fmt.Errorf("frame %d: %w", frame, err)
				}
				r.Flows = append(r.Flows, f)
			} else {
				r.Options++
			}
			continue
		}
		if err := r.walk(sub, frame); err != nil {
			return err
		}
	}
	return nil
}

func tsharkFlow(m map[string]any) (synth.Flow, error) {
	var f synth.Flow
	var errs []string
	str := func(k string) string {
		s, _ := m[k].(string)
		return s
	}
	num := func(k string) uint64 {
		s := str(k)
		if s == "" {
			errs = append(errs, "missing "+k)
			return 0
		}
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q", k, s))
		}
		return n
	}
	addr := func(k string) netip.Addr {
		a, err := netip.ParseAddr(str(k))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q", k, str(k)))
		}
		return a
	}
	mac := func(k string) (out [6]byte) {
		hw, err := parseMAC(str(k))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q", k, str(k)))
		}
		return hw
	}
	if _, ok := m["cflow.srcaddr"]; ok {
		f.Src, f.Dst = addr("cflow.srcaddr"), addr("cflow.dstaddr")
		tc := num("cflow.icmp_type_code_ipv4")
		f.ICMPType, f.ICMPCode = uint8(tc>>8), uint8(tc)
	} else {
		f.Src, f.Dst = addr("cflow.srcaddrv6"), addr("cflow.dstaddrv6")
		f.ICMPType, f.ICMPCode = uint8(num("cflow.icmp_ipv6_type")), uint8(num("cflow.icmp_ipv6_code"))
	}
	f.SrcPort, f.DstPort = uint16(num("cflow.srcport")), uint16(num("cflow.dstport"))
	f.Proto = uint8(num("cflow.protocol"))
	f.TOS = uint8(num("cflow.tos"))
	f.TCPFlags = uint16(num("cflow.tcpflags"))
	f.Bytes, f.Packets = num("cflow.octets"), num("cflow.packets")
	f.EndReason = uint8(num("cflow.flow_end_reason"))
	// The tunnel fields are all in the record (the full template) or none
	// (a record without any: the TCP and plain templates), but for
	// observationPointId, which a live capture's TCP and plain templates
	// keep.
	full := false
	for _, k := range []string{"cflow.vlanid", "cflow.dot1q_customer_vlan_id", "cflow.layer2_segment_id"} {
		full = full || str(k) != ""
	}
	if full {
		f.VLAN, f.InnerVLAN = uint16(num("cflow.vlanid")), uint16(num("cflow.dot1q_customer_vlan_id"))
		f.Segment = num("cflow.layer2_segment_id")
	}
	if full || str("cflow.observation_point_id") != "" {
		f.Session = num("cflow.observation_point_id")
	}
	f.SrcMAC, f.DstMAC = mac("cflow.srcmac"), mac("cflow.dstmac")
	f.InIf = uint32(num("cflow.inputint"))
	// Times sit in the subtree of cflow.timedelta.
	if td, ok := m["cflow.timedelta_tree"].(map[string]any); ok {
		for k, dst := range map[string]*int64{"cflow.abstimestart": &f.StartMs, "cflow.abstimeend": &f.EndMs} {
			s, _ := td[k].(string)
			t, err := time.Parse("Jan _2, 2006 15:04:05.000000000 MST", s)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q", k, s))
			}
			*dst = t.UnixMilli()
		}
	} else {
		errs = append(errs, "missing cflow.timedelta_tree")
	}
	// The four enterprise elements, in template order: in the full and
	// the TCP templates, not in the plain one (a flow neither tunnelled nor
	// TCP).
	ents, _ := m["cflow.enterprise_private_entry"].([]any)
	wantEnts := 4
	if !full && f.Proto != 6 {
		wantEnts = 0
	}
	if len(ents) != wantEnts {
		errs = append(errs, fmt.Sprintf("%d enterprise elements, want %d", len(ents), wantEnts))
	} else if wantEnts == 4 {
		var v [4]uint64
		for i, e := range ents {
			s, _ := e.(string)
			n, err := strconv.ParseUint(strings.ReplaceAll(s, ":", ""), 16, 64)
			if err != nil {
				errs = append(errs, fmt.Sprintf("enterprise element %q", s))
			}
			v[i] = n
		}
		f.RTTClientUs, f.RTTServerUs, f.Retrans, f.ZeroWindows = int64(v[0]), int64(v[1]), uint32(v[2]), uint32(v[3])
	}
	// biflowDirection, with the four: who opened the TCP connection.
	if wantEnts == 4 {
		f.Initiator = uint8(num("cflow.biflow_direction"))
	} else if str("cflow.biflow_direction") != "" {
		errs = append(errs, "biflowDirection in a record without the TCP elements")
	}
	if len(errs) > 0 {
		return f, fmt.Errorf("tshark flow: %s", strings.Join(errs, ", "))
	}
	return f, nil
}

func parseMAC(s string) ([6]byte, error) {
	var out [6]byte
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return out, fmt.Errorf("bad MAC %q", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return out, err
		}
		out[i] = byte(n)
	}
	return out, nil
}
