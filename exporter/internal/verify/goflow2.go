// Package verify decodes what the exporter sends with independent decoders
// (goflow2's IPFIX decoder in process; tshark and nfdump as programs) and
// turns their output into synth.Flow values to compare with ground truth.
package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/flow"
)

// Message is what goflow2 says of one IPFIX message.
type Message struct {
	Length, Sequence, Domain, ExportTime uint32
	Templates, OptionsTemplates          int
	Records                              int // data records, flows and options
	Flows                                int
}

// Goflow2 decodes messages in order (one template cache, as a collector
// keeps for one exporter) and returns the flows and a summary per message.
// Options records are returned as maps of element id to value.
func Goflow2(msgs [][]byte) ([]synth.Flow, []Message, []map[uint16]uint64, error) {
	templates := netflow.CreateTemplateSystem()
	var flows []synth.Flow
	var infos []Message
	var options []map[uint16]uint64
	for i, m := range msgs {
		var v9 netflow.NFv9Packet
		var pkt netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), templates, &v9, &pkt); err != nil {
			return nil, nil, nil, fmt.Errorf("goflow2: message %d: %w", i, err)
		}
		if pkt.Version != 10 {
			return nil, nil, nil, fmt.Errorf("goflow2: message %d: version %d", i, pkt.Version)
		}
		info := Message{Length: uint32(pkt.Length), Sequence: pkt.SequenceNumber, Domain: pkt.ObservationDomainId, ExportTime: pkt.ExportTime}
		for _, fs := range pkt.FlowSets {
			switch s := fs.(type) {
			case netflow.TemplateFlowSet:
				info.Templates += len(s.Records)
			case netflow.IPFIXOptionsTemplateFlowSet:
				info.OptionsTemplates += len(s.Records)
			case netflow.DataFlowSet:
				for _, r := range s.Records {
					f, err := toFlow(r.Values)
					if err != nil {
						return nil, nil, nil, fmt.Errorf("goflow2: message %d: %w", i, err)
					}
					flows = append(flows, f)
					info.Records++
					info.Flows++
				}
			case netflow.OptionsDataFlowSet:
				for _, r := range s.Records {
					o := map[uint16]uint64{}
					for _, v := range append(r.ScopesValues, r.OptionsValues...) {
						o[v.Type] = beUint(v.Value.([]byte))
					}
					options = append(options, o)
					info.Records++
				}
			case netflow.RawFlowSet:
				return nil, nil, nil, fmt.Errorf("goflow2: message %d: set %d without template", i, s.Id)
			default:
				return nil, nil, nil, fmt.Errorf("goflow2: message %d: unexpected set %T", i, fs)
			}
		}
		infos = append(infos, info)
	}
	return flows, infos, options, nil
}

func beUint(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func toFlow(values []netflow.DataField) (synth.Flow, error) {
	var f synth.Flow
	for _, v := range values {
		b, ok := v.Value.([]byte)
		if !ok {
			return f, fmt.Errorf("field %d: value %T", v.Type, v.Value)
		}
		n := beUint(b)
		if v.PenProvided {
			if v.Pen != flow.EnterpriseNumber {
				return f, fmt.Errorf("field %d: enterprise %d", v.Type, v.Pen)
			}
			switch v.Type &^ 0x8000 {
			case flow.IETCPRTTClientMicroseconds:
				f.RTTClientUs = int64(n)
			case flow.IETCPRTTServerMicroseconds:
				f.RTTServerUs = int64(n)
			case flow.IETCPRetransmittedPackets:
				f.Retrans = uint32(n)
			case flow.IETCPZeroWindowEvents:
				f.ZeroWindows = uint32(n)
			default:
				return f, fmt.Errorf("unknown enterprise field %d", v.Type&^0x8000)
			}
			continue
		}
		switch v.Type {
		case 8, 12, 27, 28:
			a, ok := netip.AddrFromSlice(b)
			if !ok {
				return f, fmt.Errorf("field %d: address of %d bytes", v.Type, len(b))
			}
			if v.Type == 8 || v.Type == 27 {
				f.Src = a
			} else {
				f.Dst = a
			}
		case 239:
			f.Initiator = uint8(n)
		case 7:
			f.SrcPort = uint16(n)
		case 11:
			f.DstPort = uint16(n)
		case 4:
			f.Proto = uint8(n)
		case 5:
			f.TOS = uint8(n)
		case 6:
			f.TCPFlags = uint16(n)
		case 32, 139:
			f.ICMPType, f.ICMPCode = uint8(n>>8), uint8(n)
		case 1:
			f.Bytes = n
		case 2:
			f.Packets = n
		case 152:
			f.StartMs = int64(n)
		case 153:
			f.EndMs = int64(n)
		case 136:
			f.EndReason = uint8(n)
		case 58:
			f.VLAN = uint16(n)
		case 245:
			f.InnerVLAN = uint16(n)
		case 56:
			copy(f.SrcMAC[:], b)
		case 80:
			copy(f.DstMAC[:], b)
		case 10:
			f.InIf = uint32(n)
		case 14:
		case 351:
			f.Segment = n
		case 138:
			f.Session = n
		default:
			return f, fmt.Errorf("unexpected field %d", v.Type)
		}
	}
	return f, nil
}

// CheckSequence verifies RFC 7011 sequence numbers: each message's is the
// count of data records sent before it in the domain.
func CheckSequence(infos []Message) error {
	if len(infos) == 0 {
		return nil
	}
	next := infos[0].Sequence
	for i, m := range infos {
		if m.Sequence != next {
			return fmt.Errorf("message %d: sequence %d, want %d", i, m.Sequence, next)
		}
		next += uint32(m.Records)
	}
	return nil
}

// Header reads the length field of a message header.
func Header(msg []byte) (version, length uint16) {
	if len(msg) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(msg), binary.BigEndian.Uint16(msg[2:])
}
