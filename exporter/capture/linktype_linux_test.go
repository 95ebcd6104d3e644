//go:build linux && cgo

package capture

import "testing"

// TestCompileFilterCHDLC: a filter for a Cisco HDLC interface reads the
// EtherType where that header has it (offset 2), not at Ethernet's 12.
func TestCompileFilterCHDLC(t *testing.T) {
	prog, err := compileFilter("ip", linkTypeCHDLC)
	if err != nil {
		t.Skipf("no libpcap compiler: %v", err)
	}
	// ldh [k]: BPF_LD|BPF_H|BPF_ABS = 0x28.
	if len(prog) == 0 || prog[0].Op != 0x28 || prog[0].K != 2 {
		t.Errorf("first instruction %+v, want ldh [2]", prog)
	}
	eth, err := compileFilter("ip", linkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	if eth[0].K != 12 {
		t.Errorf("Ethernet: first instruction %+v, want ldh [12]", eth[0])
	}
}
