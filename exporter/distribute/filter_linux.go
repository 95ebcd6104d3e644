package distribute

import (
	"fmt"

	"github.com/spanflow/spanflow/exporter/capture"
)

// compile turns a tcpdump filter into a BPF program run in user space,
// compiled by libpcap as the live capture's filter is.
func compile(expr string) (capture.Program, error) {
	raw, err := capture.CompileFilter(expr)
	if err != nil {
		return nil, err
	}
	p, err := capture.NewProgram(raw)
	if err != nil {
		return nil, fmt.Errorf("filter %q: cannot run it in user space: %w", expr, err)
	}
	return p, nil
}
