package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// Nfcapd is a running nfcapd writing what it receives under Dir.
type Nfcapd struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once nfcapd has exited
	Dir  string
	Port int
	log  bytes.Buffer
}

// errPortTaken: another process bound the port between our choosing it and
// nfcapd binding it (tests run in parallel packages).
var errPortTaken = errors.New("port taken before nfcapd bound it")

// StartNfcapd starts nfcapd on a free loopback UDP port. A free port can be
// taken by another process before nfcapd binds it; then it tries another.
func StartNfcapd(bin, dir string) (*Nfcapd, error) {
	return onFreePort(func() (*Nfcapd, error) { return startNfcapd(bin, dir) })
}

// onFreePort runs start, which binds a free port, until the port was not
// taken before it bound it (errPortTaken), up to 8 times.
func onFreePort[T any](start func() (T, error)) (T, error) {
	var n T
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if n, err = start(); !errors.Is(err, errPortTaken) {
			return n, err
		}
	}
	return n, err
}

func startNfcapd(bin, dir string) (*Nfcapd, error) {
	port, err := testutil.FreePort("udp")
	if err != nil {
		return nil, err
	}
	n := &Nfcapd{Dir: dir, Port: port, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-w", dir)
	n.cmd.Stdout, n.cmd.Stderr = &n.log, &n.log
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nfcapd: %w", err)
	}
	go func() { n.cmd.Wait(); close(n.done) }()
	ready := func() bool { return ownsUDPPort(n.cmd.Process.Pid, port) }
	if err := waitListening("nfcapd", port, n.done, n.log.String, ready, func() { n.cmd.Process.Kill() }); err != nil {
		return nil, err
	}
	return n, nil
}

// waitListening waits up to 10 s for a peer collector started on port to
// be ready (ready reports it; a socket bound to the port must be one of the
// peer's own descriptors, as another process may have taken it). done is
// closed when the peer exits and log gives what it printed; kill stops it
// when it is not ready in time. errPortTaken when it exited saying its
// port was in use.
func waitListening(name string, port int, done <-chan struct{}, log func() string, ready func() bool, kill func()) error {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		select {
		case <-done:
			if strings.Contains(log(), "Address already in use") {
				return fmt.Errorf("%w: port %d", errPortTaken, port)
			}
			return fmt.Errorf("%s exited before listening on port %d: %s", name, port, log())
		default:
		}
		if ready() {
			return nil
		}
	}
	kill()
	<-done
	return fmt.Errorf("%s did not listen on port %d within 10 s: %s", name, port, log())
}

// ownsUDPPort reports whether process pid has a descriptor on the IPv4 UDP
// socket bound to port (matched by inode, /proc/net/udp against
// /proc/PID/fd).
func ownsUDPPort(pid, port int) bool {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	suffix := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 10 && strings.HasSuffix(f[1], suffix) {
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[link] {
			return true
		}
	}
	return false
}

// Stop waits (up to 10 s) until nfcapd has read every datagram waiting on
// its socket, then ends it (SIGTERM, which makes it close its file) and
// returns its log.
func (n *Nfcapd) Stop() string {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if q, err := udpReceiveQueue(n.Port); err != nil || q == 0 {
			break
		}
	}
	time.Sleep(50 * time.Millisecond) // the last datagram read is being stored
	n.cmd.Process.Signal(syscall.SIGTERM)
	<-n.done
	return n.log.String()
}

// udpReceiveQueue is the number of bytes waiting on the IPv4 UDP socket
// bound to port, from /proc/net/udp.
func udpReceiveQueue(port int) (int, error) {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, err
	}
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], suffix) {
			continue
		}
		_, rx, ok := strings.Cut(f[4], ":")
		if !ok {
			break
		}
		q, err := strconv.ParseInt(rx, 16, 64)
		return int(q), err
	}
	return 0, fmt.Errorf("no UDP socket on port %d", port)
}

// NfdumpFlows reads every flow nfcapd stored in dir with nfdump -o json,
// projected on the fields nfdump decodes from spanflow's templates.
func NfdumpFlows(bin, dir string) ([]synth.Flow, error) {
	cmd := exec.Command(bin, "-R", dir, "-o", "json")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nfdump: %w: %s", err, stderr.String())
	}
	var recs []struct {
		First, Last        string
		InPackets          uint64 `json:"in_packets"`
		InBytes            uint64 `json:"in_bytes"`
		Proto              uint8
		TCPFlags           string `json:"tcp_flags"`
		SrcPort            uint16 `json:"src_port"`
		DstPort            uint16 `json:"dst_port"`
		ICMPType           uint8  `json:"icmp_type"`
		ICMPCode           uint8  `json:"icmp_code"`
		Src4               string `json:"src4_addr"`
		Src6               string `json:"src6_addr"`
		Dst6               string `json:"dst6_addr"`
		Dst4Addr           string `json:"dst4_addr"`
		InputSNMP          uint32 `json:"input_snmp"`
		SrcVLAN            uint16 `json:"src_vlan"`
		InSrcMAC           string `json:"in_src_mac"`
		InDstMAC           string `json:"in_dst_mac"`
		ObservationPointID uint64 `json:"observationPointID"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("nfdump json: %w", err)
	}
	var flows []synth.Flow
	for _, r := range recs {
		var f synth.Flow
		var err error
		src, dst := r.Src4, r.Dst4Addr
		if src == "" {
			src, dst = r.Src6, r.Dst6
		}
		if f.Src, err = netip.ParseAddr(src); err != nil {
			return nil, fmt.Errorf("nfdump source address %q", src)
		}
		if f.Dst, err = netip.ParseAddr(dst); err != nil {
			return nil, fmt.Errorf("nfdump destination address %q", dst)
		}
		f.SrcPort, f.DstPort, f.Proto = r.SrcPort, r.DstPort, r.Proto
		f.ICMPType, f.ICMPCode = r.ICMPType, r.ICMPCode
		f.Packets, f.Bytes = r.InPackets, r.InBytes
		for _, t := range []struct {
			s   string
			dst *int64
		}{{r.First, &f.StartMs}, {r.Last, &f.EndMs}} {
			ts, err := time.Parse("2006-01-02T15:04:05.000", t.s)
			if err != nil {
				return nil, fmt.Errorf("nfdump time %q", t.s)
			}
			*t.dst = ts.UnixMilli()
		}
		f.TCPFlags = nfdumpFlags(r.TCPFlags)
		f.InIf, f.VLAN, f.Session = r.InputSNMP, r.SrcVLAN, r.ObservationPointID
		if f.SrcMAC, err = parseMAC(r.InSrcMAC); err != nil {
			return nil, err
		}
		if f.DstMAC, err = parseMAC(r.InDstMAC); err != nil {
			return nil, err
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// nfdumpFlags reads nfdump's "CEUAPRSF" flag string ('.' for unset).
func nfdumpFlags(s string) uint16 {
	const names = "CEUAPRSF"
	if s != "" && len(s) != len(names) {
		return 0xffff
	}
	if s == "" {
		return 0 // nfdump shows no flags for ICMP
	}
	var v uint16
	for i := range names {
		if s[i] == names[i] {
			v |= 1 << (7 - i)
		}
	}
	return v
}

// NfdumpView keeps the fields of f that nfdump decodes (the others are
// spanflow's enterprise elements or IEs nfdump 1.7 does not store).
func NfdumpView(f synth.Flow) synth.Flow {
	return synth.Flow{Src: f.Src, Dst: f.Dst, SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto,
		ICMPType: f.ICMPType, ICMPCode: f.ICMPCode, Packets: f.Packets, Bytes: f.Bytes,
		StartMs: f.StartMs, EndMs: f.EndMs, TCPFlags: f.TCPFlags & 0xff, InIf: f.InIf, VLAN: f.VLAN,
		Session: f.Session, SrcMAC: f.SrcMAC, DstMAC: f.DstMAC}
}
