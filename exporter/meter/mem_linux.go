//go:build linux

package meter

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64.
const hugePage = 2 << 20

// reserve maps n bytes of zeroed anonymous memory outside the Go heap,
// aligned to a huge page and advised to be backed by huge pages. The memory
// is only reserved (MAP_NORESERVE): pages are taken as they are first
// touched, 2 MiB at a time where the kernel has huge pages to give. On a
// busy probe the flow table is read at random for every packet, and with
// 4 KiB pages each read costs a TLB miss too (a two-dimensional page walk
// under a hypervisor); one 2 MiB page covers 16,384 entries.
func reserve(n int) ([]byte, error) {
	size := uintptr(n+hugePage-1) &^ (hugePage - 1)
	p, err := unix.MmapPtr(-1, 0, nil, size+hugePage, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	// Keep the aligned part; give back the head and the tail.
	addr := uintptr(p)
	skip := (hugePage - addr%hugePage) % hugePage
	if skip > 0 {
		_ = unix.MunmapPtr(p, skip)
	}
	if tail := hugePage - skip; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, skip+size), tail)
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, skip)), size)
	// Without transparent huge pages this fails or does nothing; the
	// memory works the same with 4 KiB pages.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

// smallPagesFirst has the first huge page of b (from reserve) mapped with
// 4 KiB pages: the kernel then zeroes only the pages touched, not 2 MiB at
// the first touch.
func smallPagesFirst(b []byte) {
	_ = unix.Madvise(b[:min(len(b), hugePage)], unix.MADV_NOHUGEPAGE)
}

// release unmaps memory from reserve.
func release(b []byte) {
	if len(b) > 0 {
		_ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
	}
}

// discard gives the pages of b back; they read as zeros afterwards.
func discard(b []byte) {
	if len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_DONTNEED)
	}
}
