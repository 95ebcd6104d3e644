package ring

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/spanflow/spanflow/exporter/capture"
)

// Filter is a tcpdump filter run on stored or captured frames, compiled
// (by libpcap) once per link type met.
type Filter struct {
	expr string
	vms  map[uint32]*bpf.VM
	// Err is the first link type the expression does not compile for;
	// frames of that type do not match.
	Err error
}

// NewFilter compiles expr, checked for Ethernet frames.
func NewFilter(expr string) (*Filter, error) {
	f := &Filter{expr: expr, vms: map[uint32]*bpf.VM{}}
	if f.vm(1) == nil {
		return nil, errors.Unwrap(f.Err) // without "link type 1"
	}
	return f, nil
}

func (f *Filter) vm(link uint32) *bpf.VM {
	if vm, ok := f.vms[link]; ok {
		return vm
	}
	var vm *bpf.VM
	prog, err := capture.CompileFilterFor(f.expr, link)
	if err == nil {
		insns, ok := bpf.Disassemble(prog)
		if !ok {
			err = fmt.Errorf("filter %q: libpcap's program has instructions the BPF machine cannot run", f.expr)
		} else if vm, err = bpf.NewVM(insns); err != nil {
			err = fmt.Errorf("filter %q: %w", f.expr, err)
		}
	}
	if err != nil && f.Err == nil {
		f.Err = fmt.Errorf("link type %d: %w", link, err)
	}
	f.vms[link] = vm
	return vm
}

// Match says whether a frame passes the filter.
func (f *Filter) Match(link uint32, data []byte) bool {
	vm := f.vm(link)
	if vm == nil {
		return false
	}
	n, err := vm.Run(data)
	return err == nil && n > 0
}
