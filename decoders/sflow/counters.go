package sflow

import (
	"encoding/binary"
	"fmt"
	"math"

	gsflow "github.com/netsampler/goflow2/v2/decoders/sflow"

	"github.com/spanflow/spanflow/internal/flow"
)

// A counter structure is read field by field; each field is one of these.
const (
	cU32    = iota // unsigned int
	cU64           // unsigned hyper
	cFloat         // float (IEEE 754 single precision)
	cMAC           // mac: opaque[6], padded to 8 bytes
	cString        // string<>: length, bytes, padding
	cUUID          // opaque uuid[16]
)

type counterField struct {
	name string
	kind uint8
}

type counterStruct struct {
	name   string
	fields []counterField
}

func u32s(names ...string) []counterField {
	fs := make([]counterField, len(names))
	for i, n := range names {
		fs[i] = counterField{n, cU32}
	}
	return fs
}

func fields(groups ...[]counterField) []counterField {
	var fs []counterField
	for _, g := range groups {
		fs = append(fs, g...)
	}
	return fs
}

func one(name string, kind uint8) []counterField { return []counterField{{name, kind}} }

// counterStructs are the counter records spanflow reads besides the
// generic interface counters (format 1), by format (enterprise 0):
// SFLOW-STRUCTS5.txt, sflow_lag.txt and sflow_host.txt (hsflowd). Trailing
// fields a shorter (older) record lacks are left out.
var counterStructs = map[uint32]counterStruct{
	2: {"ethernet", u32s("alignment_errors", "fcs_errors", "single_collision_frames", "multiple_collision_frames",
		"sqe_test_errors", "deferred_transmissions", "late_collisions", "excessive_collisions",
		"internal_mac_transmit_errors", "carrier_sense_errors", "frame_too_longs", "internal_mac_receive_errors", "symbol_errors")},
	7: {"lag", fields(one("actor_system_id", cMAC), one("partner_oper_system_id", cMAC),
		u32s("attached_agg_id", "port_state", "lacpdus_rx", "marker_pdus_rx", "marker_response_pdus_rx", "unknown_rx",
			"illegal_rx", "lacpdus_tx", "marker_pdus_tx", "marker_response_pdus_tx"))},
	1001: {"processor", fields(u32s("cpu_5s_percent_x100", "cpu_1m_percent_x100", "cpu_5m_percent_x100"),
		one("total_memory", cU64), one("free_memory", cU64))},
	2000: {"host_descr", fields(one("hostname", cString), one("uuid", cUUID), u32s("machine_type", "os_name"), one("os_release", cString))},
	2002: {"host_parent", u32s("container_type", "container_index")},
	2003: {"host_cpu", fields(one("load_one", cFloat), one("load_five", cFloat), one("load_fifteen", cFloat),
		u32s("proc_run", "proc_total", "cpu_num", "cpu_speed_mhz", "uptime_s", "cpu_user_ms", "cpu_nice_ms", "cpu_system_ms",
			"cpu_idle_ms", "cpu_wio_ms", "cpu_intr_ms", "cpu_sintr_ms", "interrupts", "contexts", "cpu_steal_ms", "cpu_guest_ms", "cpu_guest_nice_ms"))},
	2004: {"host_memory", fields(one("mem_total", cU64), one("mem_free", cU64), one("mem_shared", cU64), one("mem_buffers", cU64),
		one("mem_cached", cU64), one("swap_total", cU64), one("swap_free", cU64), u32s("page_in", "page_out", "swap_in", "swap_out"))},
	2005: {"host_disk", fields(one("disk_total", cU64), one("disk_free", cU64), u32s("part_max_used_percent_x100", "reads"),
		one("bytes_read", cU64), u32s("read_time_ms", "writes"), one("bytes_written", cU64), u32s("write_time_ms"))},
	2006: {"host_net", fields(one("bytes_in", cU64), u32s("pkts_in", "errs_in", "drops_in"), one("bytes_out", cU64), u32s("pkts_out", "errs_out", "drops_out"))},
	2100: {"virt_node", fields(u32s("mhz", "cpus"), one("memory", cU64), one("memory_free", cU64), u32s("num_domains"))},
	2101: {"virt_cpu", u32s("state", "cpu_time_ms", "nr_virt_cpu")},
	2102: {"virt_memory", fields(one("memory", cU64), one("max_memory", cU64))},
	2103: {"virt_disk", fields(one("capacity", cU64), one("allocation", cU64), one("available", cU64), u32s("rd_req"),
		one("rd_bytes", cU64), u32s("wr_req"), one("wr_bytes", cU64), u32s("errs"))},
	2104: {"virt_net", fields(one("rx_bytes", cU64), u32s("rx_packets", "rx_errs", "rx_drop"), one("tx_bytes", cU64), u32s("tx_packets", "tx_errs", "tx_drop"))},
}

// maxCounterString bounds the strings kept from counter records
// (hostname<64>, os_release<32> in sflow_host.txt).
const maxCounterString = 256

// readCounters reads one counter structure; it returns nil when the record
// is unknown or too short for its first field.
func readCounters(format uint32, b []byte) *flow.CounterSet {
	st, ok := counterStructs[format]
	if !ok {
		return nil
	}
	cs := &flow.CounterSet{Structure: st.name, Values: make([]flow.CounterValue, 0, len(st.fields))}
	for _, f := range st.fields {
		v := flow.CounterValue{Name: f.name}
		switch f.kind {
		case cU32:
			if len(b) < 4 {
				return done(cs)
			}
			v.Num, b = uint64(binary.BigEndian.Uint32(b)), b[4:]
		case cU64:
			if len(b) < 8 {
				return done(cs)
			}
			v.Num, b = binary.BigEndian.Uint64(b), b[8:]
		case cFloat:
			if len(b) < 4 {
				return done(cs)
			}
			v.Kind, v.Float, b = flow.CounterFloat, float64(math.Float32frombits(binary.BigEndian.Uint32(b))), b[4:]
		case cMAC:
			if len(b) < 8 {
				return done(cs)
			}
			v.Kind, v.Str, b = flow.CounterStr, flow.MAC(b[:6]).String(), b[8:]
		case cUUID:
			if len(b) < 16 {
				return done(cs)
			}
			u := b[:16]
			v.Kind, v.Str, b = flow.CounterStr, fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), b[16:]
		case cString:
			if len(b) < 4 {
				return done(cs)
			}
			n := int(binary.BigEndian.Uint32(b))
			if n > len(b)-4 {
				return done(cs)
			}
			s := b[4 : 4+n]
			if len(s) > maxCounterString {
				s = s[:maxCounterString]
			}
			v.Kind, v.Str = flow.CounterStr, string(s)
			b = b[min(len(b), 4+(n+3)&^3):]
		}
		cs.Values = append(cs.Values, v)
	}
	return cs
}

func done(cs *flow.CounterSet) *flow.CounterSet {
	if len(cs.Values) == 0 {
		return nil
	}
	return cs
}

// ethernetCounters converts goflow2's decode of format 2 (it reads the
// record itself) into the same values readCounters would give.
func ethernetCounters(c gsflow.EthernetCounters) *flow.CounterSet {
	vals := []uint32{c.Dot3StatsAlignmentErrors, c.Dot3StatsFCSErrors, c.Dot3StatsSingleCollisionFrames,
		c.Dot3StatsMultipleCollisionFrames, c.Dot3StatsSQETestErrors, c.Dot3StatsDeferredTransmissions,
		c.Dot3StatsLateCollisions, c.Dot3StatsExcessiveCollisions, c.Dot3StatsInternalMacTransmitErrors,
		c.Dot3StatsCarrierSenseErrors, c.Dot3StatsFrameTooLongs, c.Dot3StatsInternalMacReceiveErrors, c.Dot3StatsSymbolErrors}
	st := counterStructs[2]
	cs := &flow.CounterSet{Structure: st.name, Values: make([]flow.CounterValue, len(vals))}
	for i, v := range vals {
		cs.Values[i] = flow.CounterValue{Name: st.fields[i].name, Num: uint64(v)}
	}
	return cs
}
