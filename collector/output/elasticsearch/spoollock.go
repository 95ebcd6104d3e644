package elasticsearch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// spoolLockName is the file in the spool directory whose flock makes the
// directory one process's at a time. Two processes sharing a spool (a
// collector and an indexer on one host, both with the default directory)
// replayed and removed each other's segments, including the one the other
// was still appending to: what it appended then went to a deleted file
// and was lost without a count.
const spoolLockName = "spool.lock"

// ErrSpoolInUse is the error of a spool directory another process holds.
var ErrSpoolInUse = errors.New("spool directory in use")

// spoolInUseError names the directory and the process holding it.
type spoolInUseError struct {
	dir   string
	pid   int    // 0: unknown
	holds string // its command line, when readable
}

// holder names the process holding a lock, as far as it is known.
func holder(pid int, holds string) string {
	if pid <= 0 {
		return "another process"
	}
	who := "process " + strconv.Itoa(pid)
	if holds != "" {
		who += " (" + holds + ")"
	}
	return who
}

func (e *spoolInUseError) Error() string {
	who := holder(e.pid, e.holds)
	return fmt.Sprintf("spool directory %s is in use by %s: give each collector and indexer on this host its own --es-spool-dir", e.dir, who)
}

func (e *spoolInUseError) Is(target error) bool { return target == ErrSpoolInUse }

// lockSpoolDir takes the directory's lock without waiting and writes the
// process's id into the lock file, for the error of the next process that
// tries. The lock lasts as long as the returned file is open, and ends
// with the process whatever way it ends: no stale lock to remove.
func lockSpoolDir(dir string) (*os.File, error) {
	f, pid, holds, err := lockFile(filepath.Join(dir, spoolLockName))
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, &spoolInUseError{dir: dir, pid: pid, holds: holds}
	}
	if err != nil {
		return nil, fmt.Errorf("lock spool directory %s: %w", dir, err)
	}
	return f, nil
}

// lockFile takes an exclusive flock on path (created if missing) without
// waiting, and writes the process's id into it. When another open file
// holds the lock (another process, or another output of this one), the
// error is EWOULDBLOCK, with the pid written there and that process's
// command line when readable.
func lockFile(path string) (f *os.File, pid int, holds string, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, "", fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if b, err := os.ReadFile(path); err == nil {
				pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			if pid > 0 {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
					holds = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
					if len(holds) > 100 { // enough to tell a collector from an indexer
						holds = holds[:100] + "..."
					}
				}
			}
			return nil, pid, holds, syscall.EWOULDBLOCK
		}
		return nil, 0, "", err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, 0, "", nil
}
