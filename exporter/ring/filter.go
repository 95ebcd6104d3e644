package ring

import (
	"errors"
	"fmt"

	"github.com/spanflow/spanflow/exporter/capture"
)

// Filter is a tcpdump filter run on stored or captured frames, compiled
// (by libpcap) once per link type met.
type Filter struct {
	expr string
	vms  map[uint32]capture.Program
	// Err is the first link type the expression does not compile for;
	// frames of that type do not match.
	Err error
}

// NewFilter compiles expr, checked for Ethernet frames.
func NewFilter(expr string) (*Filter, error) {
	f := &Filter{expr: expr, vms: map[uint32]capture.Program{}}
	if f.vm(1) == nil {
		return nil, errors.Unwrap(f.Err) // without "link type 1"
	}
	return f, nil
}

func (f *Filter) vm(link uint32) capture.Program {
	if vm, ok := f.vms[link]; ok {
		return vm
	}
	var vm capture.Program
	raw, err := capture.CompileFilterFor(f.expr, link)
	if err == nil {
		if vm, err = capture.NewProgram(raw); err != nil {
			err = fmt.Errorf("filter %q: libpcap's program cannot run in user space: %w", f.expr, err)
		}
	}
	if err != nil && f.Err == nil {
		f.Err = fmt.Errorf("link type %d: %w", link, err)
	}
	f.vms[link] = vm
	return vm
}

// Match says whether a frame passes the filter. wire is its length on the
// wire, which `len` (greater, less) reads as libpcap does: a frame kept
// short (snap length, headers only) is still as long as it was.
func (f *Filter) Match(link uint32, data []byte, wire int) bool {
	vm := f.vm(link)
	if vm == nil {
		return false
	}
	return vm.Run(data, uint32(max(wire, len(data)))) > 0
}
