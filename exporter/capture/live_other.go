//go:build !linux

package capture

import (
	"fmt"
	"net"

	"golang.org/x/net/bpf"
)

// CheckInterface says whether the named interface exists (live capture
// itself needs Linux).
func CheckInterface(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return fmt.Errorf("interface %s: not on this host: %w", name, err)
	}
	return nil
}

// LiveStats are the kernel's counters of a live socket. Declared here too
// so that everything else builds on other systems; the live source itself
// exists only on Linux.
type LiveStats struct {
	Received  uint64 // frames the kernel passed to the ring (after the filter)
	Dropped   uint64 // frames the kernel dropped because the ring was full
	LinkDowns uint64 // times the interface went down (frames resume when it is up)
}

// CompileFilterFor needs libpcap's compiler, loaded on Linux only.
func CompileFilterFor(expr string, _ uint32) ([]bpf.RawInstruction, error) {
	return nil, fmt.Errorf("filter %q: filters need Linux (libpcap's compiler loaded at run time)", expr)
}
