package capture

import (
	"encoding/binary"
	"errors"

	"golang.org/x/net/bpf"
)

// Program is a classic BPF program (as libpcap compiles tcpdump filters)
// run in user space on each frame offered (distribution rules, packet
// ring queries). golang.org/x/net/bpf's VM
// checks the program (NewVM) but runs each instruction through an
// interface: this interpreter on the raw instructions takes about half
// its time (BenchmarkFilter), and a test holds it to the VM's results.
type Program []bpf.RawInstruction

// NewProgram checks raw as x/net/bpf does (jumps in range, ends in a
// return, scratch memory indexes) and returns it ready to run.
func NewProgram(raw []bpf.RawInstruction) (Program, error) {
	insns := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		insns[i] = r.Disassemble()
	}
	if _, err := bpf.NewVM(insns); err != nil {
		return nil, err
	}
	for _, r := range raw {
		switch r.Op & 0x07 {
		case 0x00, 0x01, 0x02, 0x03: // LD, LDX, ST, STX
			if (r.Op&0x07 >= 0x02 || r.Op&0xe0 == 0x60) && r.K >= 16 {
				return nil, errors.New("scratch memory index out of range")
			}
		}
	}
	return Program(raw), nil
}

// Run returns the number of bytes the program keeps: 0 rejects the frame.
// wire is the frame's length on the wire, which `len` (greater, less)
// reads, as in libpcap.
func (p Program) Run(pkt []byte, wire uint32) uint32 {
	var a, x uint32
	var mem [16]uint32
	n := uint32(len(pkt))
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		k := in.K
		switch in.Op & 0x07 {
		case 0x00, 0x01: // LD, LDX
			var v uint32
			switch in.Op & 0xe0 {
			case 0x00: // IMM
				v = k
			case 0x20, 0x40: // ABS, IND
				off := k
				if in.Op&0xe0 == 0x40 {
					off += x
					if off < x { // wrapped
						return 0
					}
				}
				switch in.Op & 0x18 {
				case 0x00:
					if off > n || n-off < 4 {
						return 0
					}
					v = binary.BigEndian.Uint32(pkt[off:])
				case 0x08:
					if off > n || n-off < 2 {
						return 0
					}
					v = uint32(binary.BigEndian.Uint16(pkt[off:]))
				case 0x10:
					if off >= n {
						return 0
					}
					v = uint32(pkt[off])
				default:
					return 0
				}
			case 0x60: // MEM
				v = mem[k&15]
			case 0x80: // LEN
				v = wire
			case 0xa0: // MSH: 4*(pkt[k]&0xf), LDX only
				if k >= n {
					return 0
				}
				v = 4 * uint32(pkt[k]&0x0f)
			default:
				return 0
			}
			if in.Op&0x07 == 0x00 {
				a = v
			} else {
				x = v
			}
		case 0x02: // ST
			mem[k&15] = a
		case 0x03: // STX
			mem[k&15] = x
		case 0x04: // ALU
			v := k
			if in.Op&0x08 != 0 {
				v = x
			}
			switch in.Op & 0xf0 {
			case 0x00:
				a += v
			case 0x10:
				a -= v
			case 0x20:
				a *= v
			case 0x30:
				if v == 0 {
					return 0
				}
				a /= v
			case 0x40:
				a |= v
			case 0x50:
				a &= v
			case 0x60:
				a <<= v
			case 0x70:
				a >>= v
			case 0x80:
				a = -a
			case 0x90:
				if v == 0 {
					return 0
				}
				a %= v
			case 0xa0:
				a ^= v
			default:
				return 0
			}
		case 0x05: // JMP
			if in.Op&0xf0 == 0x00 { // JA
				pc += int(k)
				continue
			}
			v := k
			if in.Op&0x08 != 0 {
				v = x
			}
			var ok bool
			switch in.Op & 0xf0 {
			case 0x10:
				ok = a == v
			case 0x20:
				ok = a > v
			case 0x30:
				ok = a >= v
			case 0x40:
				ok = a&v != 0
			default:
				return 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case 0x06: // RET
			switch in.Op & 0x18 {
			case 0x00:
				return k
			case 0x10:
				return a
			case 0x08:
				return x
			}
			return 0
		case 0x07: // MISC
			if in.Op&0xf8 == 0x80 {
				a = x // TXA
			} else {
				x = a // TAX
			}
		}
	}
	return 0
}
