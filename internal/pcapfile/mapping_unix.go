//go:build unix

package pcapfile

import (
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps a regular file of size bytes read-only, or returns nil when
// it cannot (then the file is read instead).
func mapFile(f *os.File, size int64) []byte {
	if size <= 0 || size > math.MaxInt {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Read ahead generously and drop pages behind: the file is read once,
	// front to back.
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL)
	return b
}

func unmap(b []byte) error { return unix.Munmap(b) }

// dropPage is the alignment of what dropPages is given: the smallest page.
const dropPage = 4096

// dropPages unmaps the pages of b (a part of a mapping, aligned to
// dropPage); reading them again would map them again from the file.
func dropPages(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
