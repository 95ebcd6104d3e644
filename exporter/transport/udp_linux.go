package transport

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/spanflow/spanflow/internal/batchio"
)

type mmsghdr = batchio.Mmsghdr

// udpBatch holds sendmmsg's arguments (one batch at a time: pipelines that
// share a transport send from several goroutines). Runs of equal-length
// messages (full IPFIX messages of one template have one length, so most
// of a busy exporter's messages come in runs) go to a collector as one
// message with UDP_SEGMENT (batchio.Runs): one pass through the kernel's
// send path per run; where the kernel refuses them, one by one.
type udpBatch struct {
	mu    sync.Mutex // held while the arguments are built and sent
	rc    syscall.RawConn
	names []unix.RawSockaddrInet6 // each collector's address, as the socket's family takes it
	runs  []*batchio.Runs         // each collector's
	v6    bool
}

// initBatch prepares sendmmsg: the socket is AF_INET6 when v6 (IPv4
// collectors then as IPv4-mapped addresses), AF_INET otherwise.
func (u *UDP) initBatch(v6 bool) error {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	u.batch = udpBatch{rc: rc, v6: v6}
	for _, d := range u.dests {
		a := d.AddrPort()
		var n unix.RawSockaddrInet6
		if v6 {
			n.Family = unix.AF_INET6
			n.Addr = netip.AddrFrom16(a.Addr().As16()).As16()
			if z := d.Zone; z != "" {
				if ifi, err := net.InterfaceByName(z); err == nil {
					n.Scope_id = uint32(ifi.Index)
				} else if k, err := strconv.Atoi(z); err == nil {
					n.Scope_id = uint32(k)
				}
			}
		} else {
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&n))
			s4.Family = unix.AF_INET
			s4.Addr = a.Addr().Unmap().As4()
		}
		// The port, in network byte order in both families.
		p := (*[2]byte)(unsafe.Pointer(&n.Port))
		p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
		u.batch.names = append(u.batch.names, n)
		u.batch.runs = append(u.batch.runs, batchio.NewRuns())
	}
	return nil
}

// write sends msgs to collector i with one sendmmsg, runs of equal
// lengths as one message each: it returns how many messages the kernel
// took, and the error of the first it did not take (when it took none).
func (u *UDP) write(i int, msgs [][]byte) (int, error) {
	b := &u.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	nameLen := uint32(unix.SizeofSockaddrInet4)
	if b.v6 {
		nameLen = unix.SizeofSockaddrInet6
	}
	return b.runs[i].Send(b.rc, unsafe.Pointer(&b.names[i]), nameLen, msgs)
}
