//go:build !linux

package meter

// hugePage rounds what grow gives back, as on Linux.
const hugePage = 2 << 20

// reserve returns n bytes of zeroed memory from the Go heap, where
// anonymous mappings are not available through this package.
func reserve(n int) ([]byte, error) { return make([]byte, n), nil }

func release([]byte) {}

// discard zeros b.
func discard(b []byte) { clear(b) }

func smallPagesFirst([]byte) {}
