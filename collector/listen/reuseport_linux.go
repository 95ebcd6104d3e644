//go:build linux

package listen

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// reusePortProgram is the classic BPF program that picks, for a datagram,
// the socket of the port's SO_REUSEPORT group by the exporter's source
// address alone: the kernel's own hash covers the source port too, and an
// exporter whose datagrams came from several ports (or that restarted on
// another) would split its templates from its data across processes. The
// program reads the network header through the SKF_NET_OFF ancillary
// offset (the packet itself starts at the UDP payload there), folds an
// IPv6 source into one word, mixes it and returns it modulo the group's
// sockets: the index of a socket in the order it joined the group. An
// index beyond the sockets the group has (a process is gone) makes the
// kernel fall back to its own hash.
func reusePortProgram(sockets int) ([]bpf.RawInstruction, error) {
	if sockets < 1 {
		return nil, fmt.Errorf("reuseport group of %d sockets", sockets)
	}
	const net = uint32(0xfff00000) // SKF_NET_OFF (-0x100000) as the unsigned offset cBPF takes
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: net, Size: 1},                    // A = first byte of the IP header
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},     // A = IP version
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 11}, // IPv4 → the load of its source
		bpf.LoadAbsolute{Off: net + 8, Size: 4},                // IPv6 source: XOR of its four words
		bpf.TAX{},
		bpf.LoadAbsolute{Off: net + 12, Size: 4},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.TAX{},
		bpf.LoadAbsolute{Off: net + 16, Size: 4},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.TAX{},
		bpf.LoadAbsolute{Off: net + 20, Size: 4},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.Jump{Skip: 1},
		bpf.LoadAbsolute{Off: net + 12, Size: 4},             // IPv4 source
		bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: 0x9e3779b1}, // mix, so that neighbouring addresses spread
		bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(sockets)},
		bpf.RetA{},
	}
	return bpf.Assemble(prog)
}

// attachReusePortProgram sets the program on the group of the bound
// socket fd; every member's attaching replaces the group's program with
// the same one.
func attachReusePortProgram(fd, sockets int) error {
	raw, err := reusePortProgram(sockets)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
}
