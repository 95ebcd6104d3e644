//go:build !linux

package distribute

import (
	"fmt"

	"github.com/spanflow/spanflow/exporter/capture"
)

// compile needs libpcap's compiler, which spanflow loads on Linux only.
func compile(expr string) (capture.Program, error) {
	return nil, fmt.Errorf("filter %q: distribution filters need Linux (libpcap's compiler); use nets", expr)
}
