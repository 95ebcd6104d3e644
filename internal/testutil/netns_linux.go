package testutil

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on a thread in the network namespace ns (made by `ip
// netns add`): the sockets fn opens belong to ns for good. It reports
// whether fn ran; when it could not enter ns it says why with t.Error, so
// it may be called from a goroutine of the test.
func InNetns(t testing.TB, ns string, fn func()) bool {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Error(err)
		return false
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		t.Error(err)
		return false
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Error(err)
		return false
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // the thread must not go back to the pool in ns
		}
	}()
	fn()
	return true
}
