//go:build linux && cgo

package distribute_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter"
	"github.com/spanflow/spanflow/exporter/distribute"
	"github.com/spanflow/spanflow/internal/testutil"
)

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pair is two network namespaces: the probe (where the exporter runs) and
// the tool. vA (10.9.0.1, probe) and vB (10.9.0.2, tool) carry tunnels; vC
// (probe) and vD (tool), without addresses, carry frames as they are.
type pair struct{ probe, tool string }

func newPair(t *testing.T) pair {
	t.Helper()
	testutil.Root(t)
	testutil.Command(t, "ip")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	p := pair{probe: "sfdp-" + id, tool: "sfdt-" + id}
	for _, ns := range []string{p.probe, p.tool} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// No IPv6: the kernel sends nothing of its own on the pairs.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", p.probe, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", p.tool)
	run(t, "ip", "-n", p.probe, "link", "add", "vC", "type", "veth", "peer", "name", "vD", "netns", p.tool)
	for _, l := range [][2]string{{p.probe, "vA"}, {p.tool, "vB"}, {p.probe, "vC"}, {p.tool, "vD"}} {
		run(t, "ip", "-n", l[0], "link", "set", l[1], "mtu", "9000", "up")
	}
	run(t, "ip", "-n", p.probe, "addr", "add", "10.9.0.1/24", "dev", "vA")
	// A veth hands a UDP GSO packet (a run of VXLAN datagrams) to its
	// peer whole, and a capture there sees one large datagram; a NIC
	// sends the datagrams. One segment at most: the kernel splits runs
	// before the veth, and the tool's side sees what a wire would carry.
	run(t, "ip", "-n", p.probe, "link", "set", "vA", "gso_max_segs", "1")
	run(t, "ip", "-n", p.tool, "addr", "add", "10.9.0.2/24", "dev", "vB")
	// The tool's address is known beforehand: frames sent while ARP is
	// resolving would be lost beyond the kernel's small queue.
	mac, err := exec.Command("ip", "-n", p.tool, "-br", "link", "show", "vB").Output()
	if err != nil || len(strings.Fields(string(mac))) < 3 {
		t.Fatalf("vB: %v %s", err, mac)
	}
	// A VXLAN device listens on the tool's side, as a tool's VTEP would:
	// otherwise its ICMP port unreachable makes the probe's next send fail
	// (counted as a send error).
	run(t, "ip", "-n", p.tool, "link", "add", "vx0", "type", "vxlan", "id", "4242", "dstport", "4789", "local", "10.9.0.2")
	run(t, "ip", "-n", p.tool, "link", "set", "vx0", "up")
	run(t, "ip", "-n", p.probe, "neigh", "replace", "10.9.0.2", "lladdr", strings.Fields(string(mac))[2], "dev", "vA", "nud", "permanent")
	return p
}

// in runs fn on a thread in the probe namespace: the sockets it opens
// belong there.
func (p pair) in(t *testing.T, fn func()) {
	t.Helper()
	if !testutil.InNetns(t, p.probe, fn) {
		t.FailNow()
	}
}

// tcpdump captures on the tool's interface until stop is called, which
// returns the capture file.
func (p pair) tcpdump(t *testing.T, iface, filter string) (stop func() string) {
	t.Helper()
	stopCounted := p.capture(t, iface, filter)
	return func() string {
		out, _ := stopCounted()
		return out
	}
}

// capture is tcpdump whose stop also says how many packets tcpdump itself
// dropped (its buffer full: a capture that missed what did arrive).
func (p pair) capture(t *testing.T, iface, filter string) (stop func() (string, int)) {
	t.Helper()
	tcpdump := testutil.Command(t, "tcpdump")
	out := filepath.Join(t.TempDir(), iface+".pcap")
	args := []string{"netns", "exec", p.tool, tcpdump, "-Z", "root", "--immediate-mode", "-B", "16384", "-i", iface, "-U", "-s", "0", "-w", out} // -Z root: write into the test's private directory
	if filter != "" {
		args = append(args, filter)
	}
	cmd := exec.Command("ip", args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stderr)
	line, _ := r.ReadString('\n')
	if !strings.Contains(line, "listening on") {
		cmd.Process.Kill()
		t.Fatalf("tcpdump: %s", line)
	}
	return func() (string, int) {
		// Until nothing more came for 300 ms (at most 5 s): on a loaded
		// machine the last frames may still be on their way through the
		// tool's kernel or tcpdump when the sender is done.
		last, quiet := int64(-1), time.Now()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			var size int64
			if fi, err := os.Stat(out); err == nil {
				size = fi.Size()
			}
			if size != last {
				last, quiet = size, time.Now()
			} else if time.Since(quiet) >= 300*time.Millisecond {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		rest, _ := io.ReadAll(r)
		cmd.Wait()
		t.Logf("tcpdump on %s: %s", iface, bytes.ReplaceAll(bytes.TrimSpace(rest), []byte("\n"), []byte("; ")))
		dropped := 0
		if m := regexp.MustCompile(`(\d+) packets? dropped by kernel`).FindSubmatch(rest); m != nil {
			dropped, _ = strconv.Atoi(string(m[1]))
		}
		return out, dropped
	}
}

// TestInterfaceDestination: the chosen frames leave on a local interface
// exactly as captured (tcpdump on the other end of the veth).
// writers runs fn once for each way of sending on an interface: the TX
// ring, and sendmmsg (the fallback where there is no ring).
func writers(t *testing.T, fn func(t *testing.T)) {
	for _, w := range []struct {
		name string
		ring bool
	}{{"tx-ring", true}, {"sendmmsg", false}} {
		t.Run(w.name, func(t *testing.T) {
			defer distribute.SetTXRing(w.ring)()
			fn(t)
		})
	}
}

func TestInterfaceDestination(t *testing.T) {
	writers(t, func(t *testing.T) {
		p := newPair(t)
		pcap := mirror(t, "ipfixprobe/mixed.pcap")
		const filter = "udp or arp"
		want := tcpdumpFilter(t, pcap, filter)
		stop := p.tcpdump(t, "vD", "")
		var sum distribute.Stats
		p.in(t, func() {
			if strings.HasSuffix(t.Name(), "tx-ring") {
				// Not a silent fallback to sendmmsg.
				if err := distribute.OpenTXRing("vC"); err != nil {
					t.Errorf("no TX ring on a veth: %v", err)
				}
			}
			s := distributeFile(t, pcap, distribute.Rule{Name: "tool", To: "iface:vC", Filter: filter, Rate: 5000})
			sum = s.Distribution[0]
		})
		t.Logf("counters %+v", sum)
		sameFrames(t, frames(testutil.ReadPcap(t, stop())), want)
		if sum.Sent != uint64(len(want)) || sum.Dropped() != 0 {
			t.Errorf("counters %+v, want %d sent", sum, len(want))
		}
	})
}

// TestInterfaceMTU: frames longer than the interface's MTU (changed after
// the pair was made) are counted as send errors, the others arrive as
// they were. With a TX ring the kernel does not check the MTU itself
// (the frames carry a virtio-net header) and the veth would drop them
// unseen: the sender checks it.
func TestInterfaceMTU(t *testing.T) {
	writers(t, func(t *testing.T) {
		p := newPair(t)
		run(t, "ip", "-n", p.probe, "link", "set", "vC", "mtu", "1000")
		run(t, "ip", "-n", p.tool, "link", "set", "vD", "mtu", "1000")
		pcap := mirror(t, "zeek/erspan.pcap") // 47 of 287 frames longer than 1,014 bytes
		all := frames(testutil.ReadPcap(t, pcap))
		var want [][]byte
		for _, f := range all {
			if len(f) <= 1014 {
				want = append(want, f)
			}
		}
		stop := p.tcpdump(t, "vD", "")
		var sum distribute.Stats
		p.in(t, func() {
			sum = distributeFile(t, pcap, distribute.Rule{Name: "tool", To: "iface:vC", Rate: 5000, QueueSize: len(all)}).Distribution[0]
		})
		t.Logf("counters %+v", sum)
		if len(want) == len(all) {
			t.Fatal("no frame longer than the MTU in the capture")
		}
		sameFrames(t, frames(testutil.ReadPcap(t, stop())), want)
		if sum.Sent != uint64(len(want)) || sum.SendErrors != uint64(len(all)-len(want)) || sum.QueueFull != 0 {
			t.Errorf("counters %+v, want %d sent and %d send errors", sum, len(want), len(all)-len(want))
		}
		// The bytes of the frames sent, whatever the batch the refused
		// ones were in.
		if sum.Bytes != totalBytes(want) {
			t.Errorf("%d bytes counted as sent, want the %d of the frames sent", sum.Bytes, totalBytes(want))
		}
	})
}

// TestInterfacePeerDown: on a veth whose peer is down, every frame is
// counted as a send error, none as sent, and the sender does not linger
// on each.
func TestInterfacePeerDown(t *testing.T) {
	writers(t, func(t *testing.T) {
		p := newPair(t)
		run(t, "ip", "-n", p.tool, "link", "set", "vD", "down")
		pcap := mirror(t, "zeek/tcp-timestamp.pcap")
		all := frames(testutil.ReadPcap(t, pcap))
		var sum distribute.Stats
		start := time.Now()
		p.in(t, func() {
			sum = distributeFile(t, pcap, distribute.Rule{Name: "tool", To: "iface:vC", QueueSize: len(all)}).Distribution[0]
		})
		t.Logf("counters %+v in %v", sum, time.Since(start))
		if sum.SendErrors != uint64(len(all)) || sum.Sent != 0 || sum.QueueFull != 0 || sum.Bytes != 0 {
			t.Errorf("counters %+v, want all %d frames counted as send errors, no bytes sent", sum, len(all))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v to count %d refused frames", d, len(all))
		}
	})
}

// TestInterfaceDownAndUp: while the interface is down, the frames for it
// are counted as send errors; once it is up again, the next ones leave.
// Each frame is sent once or counted once: what the peer sees is exactly
// the frames counted as sent, in order, none twice.
func TestInterfaceDownAndUp(t *testing.T) {
	writers(t, func(t *testing.T) {
		p := newPair(t)
		pcap := mirror(t, "zeek/tcp-timestamp.pcap")
		all := frames(testutil.ReadPcap(t, pcap))
		stop := p.tcpdump(t, "vD", "")
		done := make(chan struct{})
		go func() {
			// 500 frames a second: about 1.8 s for the capture.
			defer close(done)
			time.Sleep(400 * time.Millisecond)
			exec.Command("ip", "-n", p.probe, "link", "set", "vC", "down").Run()
			time.Sleep(500 * time.Millisecond)
			exec.Command("ip", "-n", p.probe, "link", "set", "vC", "up").Run()
		}()
		var sum distribute.Stats
		p.in(t, func() {
			sum = distributeFile(t, pcap, distribute.Rule{Name: "tool", To: "iface:vC", Rate: 500, QueueSize: len(all)}).Distribution[0]
		})
		<-done
		got := frames(testutil.ReadPcap(t, stop()))
		t.Logf("counters %+v, %d frames seen", sum, len(got))
		if sum.Sent+sum.Dropped() != uint64(len(all)) || sum.SendErrors == 0 || sum.QueueFull != 0 {
			t.Errorf("counters %+v: want every one of %d frames sent or counted as a send error, some of each", sum, len(all))
		}
		if uint64(len(got)) != sum.Sent {
			t.Errorf("the peer saw %d frames, %d counted as sent", len(got), sum.Sent)
		}
		// In order, each once: got is a subsequence of all.
		i := 0
		for _, f := range got {
			for i < len(all) && !bytes.Equal(all[i], f) {
				i++
			}
			if i == len(all) {
				t.Fatalf("a frame seen on the peer out of order, twice or never offered: %x", f[:min(len(f), 64)])
			}
			i++
		}
		if len(got) > 0 && !bytes.Equal(got[len(got)-1], all[len(all)-1]) {
			t.Errorf("the last frame did not leave once the interface was up again")
		}
	})
}

func TestTunnelsDecodedByTshark(t *testing.T) {
	p := newPair(t)
	tshark := testutil.Command(t, "tshark")
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	const filter = "icmp or udp"
	want := tcpdumpFilter(t, pcap, filter)
	for _, tc := range []struct {
		to, capture string
		header      int    // outer Ethernet, IP and tunnel headers
		protocols   string // in tshark's frame.protocols
		fields      string // tshark fields, each frame
		want        func(i int) string
	}{
		{to: "vxlan://10.9.0.2?vni=4242", capture: "udp port 4789", header: 14 + 20 + 8 + 8, protocols: "udp:vxlan:eth:", fields: "vxlan.vni",
			want: func(int) string { return "4242" }},
		{to: "gre://10.9.0.2?key=77", capture: "ip proto 47", header: 14 + 20 + 8, protocols: "gre:eth:", fields: "gre.proto,gre.key",
			want: func(int) string { return "0x6558\t0x0000004d" }},
		{to: "erspan2://10.9.0.2?session=513&index=9", capture: "ip proto 47", header: 14 + 20 + 8 + 8, protocols: "gre:erspan:eth:", fields: "gre.proto,gre.sequence_number,erspan.version,erspan.spanid,erspan.index",
			want: func(i int) string { return fmt.Sprintf("0x88be\t%d\t1\t513\t9", i) }},
		{to: "erspan3://10.9.0.2?session=1001", capture: "ip proto 47", header: 14 + 20 + 8 + 12, protocols: "gre:erspan:eth:", fields: "gre.proto,gre.sequence_number,erspan.version,erspan.spanid,erspan.ft",
			want: func(i int) string { return fmt.Sprintf("0x22eb\t%d\t2\t1001\t0", i) }},
	} {
		gre := strings.HasPrefix(tc.to, "gre:") || strings.HasPrefix(tc.to, "erspan")
		ways := []bool{true}
		if gre {
			// Through the ring on vA (the neighbour is known), and
			// through the raw socket (no ring).
			ways = append(ways, false)
		}
		for _, ring := range ways {
			name := strings.Split(tc.to, ":")[0]
			if gre && ring {
				name += "-ring"
			} else if gre {
				name += "-raw"
			}
			t.Run(name, func(t *testing.T) {
				defer distribute.SetTXRing(ring)()
				ringBefore := distribute.GRERingPackets()
				stop := p.tcpdump(t, "vB", tc.capture)
				// The kernel's own VXLAN device is a real consumer: what it
				// decapsulates is what a tool reading it gets.
				var stopKernel func() string
				if strings.HasPrefix(tc.to, "vxlan:") {
					stopKernel = p.tcpdump(t, "vx0", "")
				}
				var sum distribute.Stats
				p.in(t, func() {
					s := distributeFile(t, pcap, distribute.Rule{To: tc.to, Filter: filter, Rate: 5000})
					sum = s.Distribution[0]
				})
				got := stop()
				var inner [][]byte
				for _, f := range frames(testutil.ReadPcap(t, got)) {
					inner = append(inner, f[tc.header:])
				}
				sameFrames(t, inner, want)
				if stopKernel != nil {
					sameFrames(t, frames(testutil.ReadPcap(t, stopKernel())), want)
				}
				if sum.Sent != uint64(len(want)) {
					t.Errorf("counters %+v, want %d sent", sum, len(want))
				}
				args := []string{"-r", got, "-T", "fields", "-E", "separator=/t", "-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.severity"}
				for _, f := range strings.Split(tc.fields, ",") {
					args = append(args, "-e", f)
				}
				out, err := exec.Command(tshark, args...).Output()
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				for i, l := range lines {
					cols := strings.SplitN(l, "\t", 4)
					if len(cols) < 4 || !strings.Contains(cols[0], tc.protocols) || cols[1] != "" {
						t.Fatalf("frame %d: tshark: %q, want protocols with %s, not malformed", i+1, l, tc.protocols)
					}
					if cols[3] != tc.want(i) {
						t.Fatalf("frame %d: tshark reads %q, want %q", i+1, cols[3], tc.want(i))
					}
				}
				if len(lines) != len(want) {
					t.Errorf("tshark read %d frames, want %d", len(lines), len(want))
				}
				if !gre {
					return
				}
				// The outer IPv4 headers the ring path writes itself: tshark
				// finds every checksum good.
				out, err = exec.Command(tshark, "-r", got, "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "ip.checksum.status").Output()
				if err != nil {
					t.Fatal(err)
				}
				for i, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if st := strings.Split(l, ",")[0]; st != "1" {
						t.Fatalf("frame %d: outer IPv4 checksum status %q, want 1 (good)", i+1, l)
					}
				}
				viaRing := distribute.GRERingPackets() - ringBefore
				if ring && viaRing != uint64(len(want)) || !ring && viaRing != 0 {
					t.Errorf("%d of %d packets went through the ring, want all with the ring, none without", viaRing, len(want))
				}
			})
		}
	}
}

// TestGREWaitsForTheNeighbour: with the tool's MAC address not yet known,
// GRE goes through the raw socket (whose packets have the kernel resolve
// it), then through the send ring from the next lookup on (within a
// second); the tool gets every chosen frame once, in order, either way.
func TestGREWaitsForTheNeighbour(t *testing.T) {
	p := newPair(t)
	run(t, "ip", "-n", p.probe, "neigh", "del", "10.9.0.2", "dev", "vA")
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	const filter = "icmp or udp"
	want := tcpdumpFilter(t, pcap, filter)
	stop := p.tcpdump(t, "vB", "ip proto 47")
	before := distribute.GRERingPackets()
	var sum distribute.Stats
	p.in(t, func() {
		// 50 frames a second: the 125 frames take 2.5 s.
		s := distributeFile(t, pcap, distribute.Rule{To: "gre://10.9.0.2", Filter: filter, Rate: 50})
		sum = s.Distribution[0]
	})
	var inner [][]byte
	for _, f := range frames(testutil.ReadPcap(t, stop())) {
		inner = append(inner, f[14+20+4:])
	}
	sameFrames(t, inner, want)
	viaRing := distribute.GRERingPackets() - before
	t.Logf("%d of %d frames through the ring, %+v", viaRing, len(want), sum)
	if viaRing == 0 || viaRing == uint64(len(want)) {
		t.Errorf("%d of %d frames through the ring: want the first through the raw socket, the rest through the ring", viaRing, len(want))
	}
	if sum.Sent != uint64(len(want)) {
		t.Errorf("counters %+v, want %d sent", sum, len(want))
	}
}

// TestGREThroughATunDevice: GRE to an address routed through a device
// that is not Ethernet (a tun) cannot have a ring: it goes through the raw
// socket, every chosen frame accounted for, nothing through a ring.
func TestGREThroughATunDevice(t *testing.T) {
	p := newPair(t)
	run(t, "ip", "-n", p.probe, "tuntap", "add", "dev", "t0", "mode", "tun")
	run(t, "ip", "-n", p.probe, "link", "set", "t0", "up")
	run(t, "ip", "-n", p.probe, "addr", "add", "10.7.0.1/24", "dev", "t0")
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	const filter = "icmp or udp"
	want := tcpdumpFilter(t, pcap, filter)
	before := distribute.GRERingPackets()
	var sum distribute.Stats
	p.in(t, func() {
		sum = distributeFile(t, pcap, distribute.Rule{To: "gre://10.7.0.2", Filter: filter}).Distribution[0]
	})
	if via := distribute.GRERingPackets() - before; via != 0 {
		t.Errorf("%d packets through a ring on a tun device", via)
	}
	if sum.Matched != uint64(len(want)) || sum.Sent+sum.Dropped() != sum.Matched {
		t.Errorf("counters %+v: want %d matched, each sent or counted as dropped", sum, len(want))
	}
}

// TestDestinationDisappears: the interface a rule sends to is deleted
// while frames are queued: they are counted as dropped (send errors), the
// other rule gets every frame, and metering is the same as without rules.
// TestVXLANRunsReachTheKernelsDevice: with GSO through the veth, runs of
// datagrams reach the tool's side as one packet each (fewer packets than
// frames on vB), and the kernel's VXLAN device there, a real receiver,
// hands out every chosen frame, in order, byte for byte.
func TestVXLANRunsReachTheKernelsDevice(t *testing.T) {
	p := newPair(t)
	run(t, "ip", "-n", p.probe, "link", "set", "vA", "gso_max_segs", "65535")
	pcap := mirror(t, "ipfixprobe/mixed.pcap")
	want := frames(testutil.ReadPcap(t, pcap))
	stopWire := p.tcpdump(t, "vB", "udp port 4789")
	stopKernel := p.tcpdump(t, "vx0", "")
	var sum distribute.Stats
	p.in(t, func() {
		// Unpaced: the sender finds many frames waiting, and runs in them.
		sum = distributeFile(t, pcap, distribute.Rule{To: "vxlan://10.9.0.2?vni=4242", QueueSize: len(want)}).Distribution[0]
	})
	wire := testutil.ReadPcap(t, stopWire())
	sameFrames(t, frames(testutil.ReadPcap(t, stopKernel())), want)
	if sum.Sent != uint64(len(want)) || sum.Dropped() != 0 {
		t.Errorf("counters %+v, want %d sent", sum, len(want))
	}
	t.Logf("%d frames in %d packets on the wire", len(want), len(wire))
	if len(wire) >= len(want) {
		t.Errorf("%d packets on the veth for %d frames: no run went as one", len(wire), len(want))
	}
}

// TestVXLANRunsLongerThanTheMTU: runs of datagrams longer than the path
// MTU are refused by the kernel's segmentation; they go one datagram at a
// time, fragmented, and the tool's VXLAN device still hands out every
// frame, in order.
func TestVXLANRunsLongerThanTheMTU(t *testing.T) {
	p := newPair(t)
	run(t, "ip", "-n", p.probe, "link", "set", "vA", "mtu", "1000", "gso_max_segs", "65535")
	run(t, "ip", "-n", p.tool, "link", "set", "vB", "mtu", "1000")
	pcap := mirror(t, "zeek/erspan.pcap") // 47 of 287 frames longer than 1,000 bytes
	want := frames(testutil.ReadPcap(t, pcap))
	var sum distribute.Stats
	var kernel, wire string
	// A loaded machine can make tcpdump itself drop (its buffer full while
	// it is descheduled): such a capture says nothing of the frames that
	// arrived, so the run is made again, three times at most.
	for attempt := 1; ; attempt++ {
		stopWire := p.capture(t, "vB", "udp or (ip[6:2] & 0x1fff != 0)")
		stopKernel := p.capture(t, "vx0", "")
		p.in(t, func() {
			sum = distributeFile(t, pcap, distribute.Rule{To: "vxlan://10.9.0.2?vni=4242", QueueSize: len(want)}).Distribution[0]
		})
		var kd, wd int
		kernel, kd = stopKernel()
		wire, wd = stopWire()
		if kd+wd == 0 || attempt == 3 {
			break
		}
		t.Logf("attempt %d: tcpdump dropped %d packets itself; again", attempt, kd+wd)
	}
	sameFrames(t, frames(testutil.ReadPcap(t, kernel)), want)
	if sum.Sent != uint64(len(want)) || sum.Dropped() != 0 {
		t.Errorf("counters %+v, want %d sent", sum, len(want))
	}
	fragments := 0
	for _, f := range frames(testutil.ReadPcap(t, wire)) {
		if len(f) >= 34 && f[12] == 0x08 && f[13] == 0x00 && (f[20]&0x3f != 0 || f[21] != 0) {
			fragments++
		}
	}
	if fragments == 0 {
		t.Error("no fragment on the wire: the long frames did not go as single datagrams")
	}
}

func TestDestinationDisappears(t *testing.T) {
	writers(t, func(t *testing.T) {
		p := newPair(t)
		pcap := mirror(t, "zeek/tcp-timestamp.pcap")
		all := frames(testutil.ReadPcap(t, pcap))
		stop := p.tcpdump(t, "vB", "udp port 4789")
		var sum, base exporter.Summary
		done := make(chan struct{})
		go func() {
			// The slow rule sends 200 frames a second: delete its interface
			// while most of its frames wait.
			defer close(done)
			time.Sleep(500 * time.Millisecond)
			if out, err := exec.Command("ip", "-n", p.probe, "link", "del", "vC").CombinedOutput(); err != nil {
				t.Errorf("delete vC: %v: %s", err, out)
			}
		}()
		p.in(t, func() {
			base = distributeFile(t, pcap)
			sum = distributeFile(t, pcap,
				distribute.Rule{Name: "gone", To: "iface:vC", Rate: 200, QueueSize: len(all)},
				distribute.Rule{Name: "vxlan", To: "vxlan://10.9.0.2?vni=4242", Rate: 5000},
			)
		})
		<-done
		sameFrames(t, headersOff(frames(testutil.ReadPcap(t, stop())), 50), all)
		byName := map[string]distribute.Stats{}
		for _, d := range sum.Distribution {
			byName[d.Rule] = d
		}
		g := byName["gone"]
		if g.SendErrors == 0 || g.Sent == 0 || g.Sent+g.Dropped() != uint64(len(all)) {
			t.Errorf("rule whose interface went: %+v; want some sent, the rest counted as send errors, %d in all", g, len(all))
		}
		if sum.Flows != base.Flows || sum.Frames != base.Frames {
			t.Errorf("metering changed: %d/%d flows, %d/%d frames", sum.Flows, base.Flows, sum.Frames, base.Frames)
		}
	})
}

func headersOff(fs [][]byte, n int) [][]byte {
	var out [][]byte
	for _, f := range fs {
		out = append(out, f[n:])
	}
	return out
}
