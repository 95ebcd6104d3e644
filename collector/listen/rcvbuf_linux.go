package listen

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// setReceiveBuffer asks for n bytes of socket receive buffer:
// SO_RCVBUFFORCE passes net.core.rmem_max when root (CAP_NET_ADMIN);
// otherwise SO_RCVBUF, which the kernel caps at rmem_max.
func setReceiveBuffer(fd, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
}

// sharedWithOthers reports whether a UDP socket that is not one of mine
// (inodes) is bound to the local address of one of mine: another process
// that joined a port's SO_REUSEPORT group. It reads /proc/net/udp and
// udp6 (the process's network namespace); what it cannot read it does not
// count.
func sharedWithOthers(mine map[uint64]bool) bool {
	type sock struct {
		local string
		ino   uint64
	}
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var socks []sock
		ours := map[string]bool{}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			ino, err := strconv.ParseUint(f[9], 10, 64)
			if err != nil {
				continue
			}
			socks = append(socks, sock{f[1], ino})
			if mine[ino] {
				ours[f[1]] = true
			}
		}
		for _, s := range socks {
			if ours[s.local] && !mine[s.ino] {
				return true
			}
		}
	}
	return false
}
