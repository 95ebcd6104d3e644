//go:build !(linux && cgo)

package capture

// LiveStats are the kernel's counters of a live socket. Declared here too
// for builds without cgo (Go disables cgo when no C compiler is installed),
// so that `make demo` works on a machine with only Go; the live source
// itself exists only on Linux with cgo.
type LiveStats struct {
	Received uint64 // frames the kernel passed to the ring (after the filter)
	Dropped  uint64 // frames the kernel dropped because the ring was full
}
