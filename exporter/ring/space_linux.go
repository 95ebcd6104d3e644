package ring

import "golang.org/x/sys/unix"

// lowOnSpace says whether writing n more bytes would take the ring's file
// system below the free-space floor.
func (g *Ring) lowOnSpace(n int64) bool {
	if g.cfg.MinFree == 0 {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(g.cfg.Dir, &st); err != nil {
		return false
	}
	return int64(st.Bavail)*int64(st.Bsize)-n < g.cfg.MinFree
}
