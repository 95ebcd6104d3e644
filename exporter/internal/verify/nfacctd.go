package verify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// Nfacctd is a running pmacct nfacctd whose print plugin appends, every
// second, one JSON line per aggregate of source, destination, ports,
// protocol and TCP flags (a key may then have several lines).
type Nfacctd struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the core process has exited
	out  string
	Port int
	mu   sync.Mutex // guards log, written by exec's copying goroutine
	log  bytes.Buffer
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (n *Nfacctd) logText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// NfacctdFlow is one of nfacctd's aggregates: the records of one key,
// their packets and bytes summed.
type NfacctdFlow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            string // nfacctd's name: tcp, udp, icmp, ipv6-icmp
	TCPFlags         uint16
	Packets, Bytes   uint64
}

// StartNfacctd starts nfacctd on a free loopback UDP port, writing under
// dir; like StartNfcapd, it tries another port when one is taken before
// nfacctd binds it.
func StartNfacctd(bin, dir string) (*Nfacctd, error) {
	return onFreePort(func() (*Nfacctd, error) { return startNfacctd(bin, dir) })
}

func startNfacctd(bin, dir string) (*Nfacctd, error) {
	port, err := testutil.FreePort("udp")
	if err != nil {
		return nil, err
	}
	n := &Nfacctd{Port: port, done: make(chan struct{}), out: filepath.Join(dir, fmt.Sprintf("nfacctd-%d.json", port))}
	conf := filepath.Join(dir, fmt.Sprintf("nfacctd-%d.conf", port))
	// The plugin gets the records from the core process in its own time:
	// it writes what it has every second, so that Flows can wait for
	// them (stopping nfacctd may lose what the plugin has not read yet).
	c := fmt.Sprintf("daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: %d\nplugins: print\n"+
		"aggregate: src_host, dst_host, src_port, dst_port, proto, tcpflags\nprint_output: json\n"+
		"print_output_file: %s\nprint_output_file_append: true\nprint_refresh_time: 1\n", port, n.out)
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		return nil, err
	}
	n.cmd = exec.Command(bin, "-f", conf)
	n.cmd.Stdout = lockedWriter{&n.mu, &n.log}
	n.cmd.Stderr = n.cmd.Stdout
	// nfacctd forks its plugin: both in a group of their own, so that Stop
	// can wait for the plugin too.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nfacctd: %w", err)
	}
	go func() { n.cmd.Wait(); close(n.done) }()
	// Records that come before the print plugin is up are lost: it says so
	// once it has set up its JSON output.
	ready := func() bool {
		return ownsUDPPort(n.cmd.Process.Pid, port) && strings.Contains(n.logText(), "JSON: setting object handlers")
	}
	kill := func() { syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL) }
	if err := waitListening("nfacctd", port, n.done, n.logText, ready, kill); err != nil {
		return nil, err
	}
	return n, nil
}

// Flows waits (up to 15 s) until the aggregates written add up to at
// least packets, then stops nfacctd and returns them and its log.
func (n *Nfacctd) Flows(packets uint64) ([]NfacctdFlow, string, error) {
	var flows []NfacctdFlow
	var err error
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		flows, err = n.read()
		var sum uint64
		for _, f := range flows {
			sum += f.Packets
		}
		if err == nil && sum >= packets {
			break
		}
	}
	n.stop()
	return flows, n.logText(), err
}

// stop ends nfacctd and its plugin.
func (n *Nfacctd) stop() {
	pgid := n.cmd.Process.Pid
	syscall.Kill(pgid, syscall.SIGINT)
	<-n.done
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // a plugin left behind
}

// read reads the aggregates written so far (a line being written is left
// for the next read).
func (n *Nfacctd) read() ([]NfacctdFlow, error) {
	data, err := os.ReadFile(n.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var flows []NfacctdFlow
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		var r struct {
			Src     string `json:"ip_src"`
			Dst     string `json:"ip_dst"`
			SrcPort uint16 `json:"port_src"`
			DstPort uint16 `json:"port_dst"`
			Flags   string `json:"tcp_flags"`
			Proto   string `json:"ip_proto"`
			Packets uint64 `json:"packets"`
			Bytes   uint64 `json:"bytes"`
		}
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("nfacctd json %q: %w", s.Text(), err)
		}
		fl := NfacctdFlow{SrcPort: r.SrcPort, DstPort: r.DstPort, Proto: r.Proto, Packets: r.Packets, Bytes: r.Bytes}
		if fl.Src, err = netip.ParseAddr(r.Src); err != nil {
			return nil, fmt.Errorf("nfacctd source address %q", r.Src)
		}
		if fl.Dst, err = netip.ParseAddr(r.Dst); err != nil {
			return nil, fmt.Errorf("nfacctd destination address %q", r.Dst)
		}
		var v uint64
		if _, err := fmt.Sscan(r.Flags, &v); err != nil || v > 0xffff {
			return nil, fmt.Errorf("nfacctd tcp_flags %q", r.Flags)
		}
		fl.TCPFlags = uint16(v)
		flows = append(flows, fl)
	}
	return flows, s.Err()
}
