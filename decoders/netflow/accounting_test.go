package netflow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// recount is the state's bytes computed from what it holds, to check the
// running count kept as templates, names and held sets come and go.
func (s *State) recount() (bytes, held int) {
	for _, tpl := range s.templates {
		bytes += templateCost(tpl)
	}
	for k, p := range s.programs {
		if _, ok := s.templates[k]; !ok {
			return -2, -2 // a program without its template
		}
		if p != nil {
			bytes += programCost(p)
		}
	}
	bytes += invalidBytes * len(s.invalid)
	names, samplers := 0, 0
	for _, d := range s.domains {
		bytes += domainBytes
		for _, n := range d.ifNames {
			bytes += nameBytes + len(n)
		}
		bytes += samplerBytes * len(d.samplers)
		bytes += len(d.probe) + len(d.packetsURL)
		names += len(d.ifNames)
		samplers += len(d.samplers)
	}
	for _, p := range s.pending {
		held += pendingBytes + len(p.data)
	}
	if names != s.names || samplers != s.samplers {
		return -1, -1
	}
	return bytes + held, held
}

func message(version uint16, domain uint32, sets ...[]byte) []byte {
	hdr := 16
	if version == 9 {
		hdr = 20
	}
	b := make([]byte, hdr)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b, version)
	if version == 10 {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint32(b[12:], domain)
	} else {
		binary.BigEndian.PutUint16(b[2:], uint16(len(sets)))
		binary.BigEndian.PutUint32(b[16:], domain)
	}
	return b
}

func flowSet(id uint16, body ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
	return append(b, body...)
}

// FuzzAccounting decodes a datagram twice with small limits, then an
// expiry and a flush, and checks that the state's running count of bytes
// equals what it holds and stays within its limits, and that releasing it
// gives every byte back.
func FuzzAccounting(f *testing.F) {
	names := flowSet(300, 0, 0, 0, 3, 4, 'e', 't', 'h', '0', 0, 0, 0, 4, 0xff, 0, 3, 'l', 'o', 'n')
	f.Add(message(10, 1, flowSet(3, 1, 44, 0, 2, 0, 1, 0, 10, 0, 4, 0, 82, 0xff, 0xff), names))
	f.Add(message(10, 1, flowSet(300, 1, 2, 3, 4), flowSet(2, 1, 44, 0, 1, 0, 8, 0, 4), flowSet(2, 1, 45, 0, 1, 0, 8, 0, 0)))
	f.Add(message(10, 7, flowSet(2, 1, 0, 0, 2, 0, 8, 0, 4, 0, 12, 0, 4, 1, 1, 0, 1, 0, 210, 0, 1), flowSet(2, 1, 0, 0, 0)))
	f.Add(message(9, 1, flowSet(0, 1, 0, 0, 1, 0, 8, 0, 4), flowSet(1, 1, 1, 0, 4, 0, 4, 0, 10, 0, 4, 0, 34, 0, 4), flowSet(256, 10, 0, 0, 1)))
	// A spanflow probe's identity (options template 259: name, packets URL).
	f.Add(message(10, 1, flowSet(3, 1, 3, 0, 3, 0, 1, 0, 149, 0, 4, 1, 44, 0xff, 0xff, 0x80, 5, 0xff, 0xff, 0, 0, 0x7e, 0xd9),
		flowSet(259, 0, 0, 0, 1, 3, 'e', 's', 'x', 8, 'h', 't', 't', 'p', ':', '/', '/', 'x')))
	f.Fuzz(func(t *testing.T, p []byte) {
		shared := NewBudget(64 << 10)
		s := NewState(netip.MustParseAddr("192.0.2.1"), Limits{MaxTemplates: 8, MaxPending: 4, PendingTimeout: time.Second,
			MaxDomains: 3, MaxInterfaceNames: 4, MaxInterfaceNameBytes: 8, MaxBytes: 32 << 10}, shared)
		now := time.Unix(1e9, 0)
		check := func(when string) {
			t.Helper()
			bytes, held := s.recount()
			if bytes != s.bytes || held != s.held || s.bytes > 32<<10 || s.bytes != shared.Used() || len(s.domains) > 3 ||
				len(s.templates)+len(s.invalid) > 8 || s.names > 4 {
				t.Fatalf("%s: counted %d bytes (%d held), holds %d (%d held), shared %d; %+v", when, s.bytes, s.held, bytes, held, shared.Used(), s.Usage())
			}
			for _, d := range s.domains {
				for _, n := range d.ifNames {
					if len(n) > 8 {
						t.Fatalf("%s: interface name of %d bytes kept", when, len(n))
					}
				}
			}
		}
		for range 2 {
			s.Decode(p, now, nil)
			check("decode")
		}
		s.Expire(now.Add(2 * time.Second))
		check("expire")
		s.Decode(p, now, nil)
		s.Flush()
		check("flush")
		s.Release()
		if shared.Used() != 0 || shared.held.Load() != 0 {
			t.Fatalf("released state leaves %d bytes (%d held) in the shared budget", shared.Used(), shared.held.Load())
		}
	})
}
