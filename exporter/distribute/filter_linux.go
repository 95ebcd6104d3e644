package distribute

import (
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/spanflow/spanflow/exporter/capture"
)

// compile turns a tcpdump filter into a BPF program run in user space,
// compiled by libpcap as the live capture's filter is.
func compile(expr string) (*bpf.VM, error) {
	raw, err := capture.CompileFilter(expr)
	if err != nil {
		return nil, err
	}
	insns := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		insns[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		return nil, fmt.Errorf("filter %q: cannot run it in user space: %w", expr, err)
	}
	return vm, nil
}
