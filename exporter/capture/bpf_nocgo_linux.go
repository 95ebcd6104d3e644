//go:build linux && !cgo

package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// CompileFilter needs libpcap's compiler, which is loaded through cgo: this
// build has none (Go turns cgo off when no C compiler is installed).
func CompileFilter(expr string) ([]bpf.RawInstruction, error) {
	return nil, fmt.Errorf("filter %q: this spanflow was built without cgo, which loading libpcap's filter compiler needs; rebuild with a C compiler installed (CGO_ENABLED=1) or run without --filter", expr)
}

func compileFilter(expr string, _ uint32) ([]bpf.RawInstruction, error) { return CompileFilter(expr) }

// CompileFilterFor needs libpcap too.
func CompileFilterFor(expr string, _ uint32) ([]bpf.RawInstruction, error) {
	return CompileFilter(expr)
}
