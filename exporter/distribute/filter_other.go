//go:build !linux

package distribute

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// compile needs libpcap's compiler, which spanflow loads on Linux only.
func compile(expr string) (*bpf.VM, error) {
	return nil, fmt.Errorf("filter %q: distribution filters need Linux (libpcap's compiler); use nets", expr)
}
