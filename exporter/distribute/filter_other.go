//go:build !linux

package distribute

import (
	"fmt"
)

// compile needs libpcap's compiler, which spanflow loads on Linux only.
func compile(expr string) (program, error) {
	return nil, fmt.Errorf("filter %q: distribution filters need Linux (libpcap's compiler); use nets", expr)
}
