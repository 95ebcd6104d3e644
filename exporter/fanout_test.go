package exporter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// liveFake is a live source (it has kernel counters): it yields its
// packets, closes drained, then stays idle, or fails with err once
// failAfter is closed.
type liveFake struct {
	pkts      []synth.Packet
	drained   chan struct{}
	err       error
	failAfter chan struct{}
}

func (s *liveFake) Next(f *capture.Frame) error {
	if len(s.pkts) == 0 {
		if s.drained != nil {
			close(s.drained)
			s.drained = nil
		}
		if s.err != nil {
			<-s.failAfter
			return s.err
		}
		time.Sleep(time.Millisecond)
		return capture.ErrIdle
	}
	p := s.pkts[0]
	s.pkts = s.pkts[1:]
	*f = capture.Frame{Data: p.Data, Length: len(p.Data), Timestamp: p.Time, LinkType: 1}
	return nil
}

func (s *liveFake) Close() error             { return nil }
func (s *liveFake) Stats() capture.LiveStats { return capture.LiveStats{} }

// nowhere is a transport that sends nowhere; the workers share it.
type nowhere struct{}

func (nowhere) Send([]byte) error { return nil }

// TestFanoutOneWorkerFails: when one fanout worker's source fails, the others
// stop too (instead of running on, half blind, until a signal), every
// worker's flows are exported, and the error is returned.
func TestFanoutOneWorkerFails(t *testing.T) {
	c := synth.Mixed(time.Unix(1700000000, 0))
	half := len(c.Packets) / 2
	// The failure comes once the healthy worker has read all its frames,
	// so that every frame is read and its flow must be exported.
	drained := make(chan struct{})
	srcs := []capture.Source{
		&liveFake{pkts: c.Packets[:half], drained: drained},
		&liveFake{pkts: c.Packets[half:], err: errors.New("read from vB: boom"), failAfter: drained},
	}
	f, err := NewFanout(reporter.NewForTest(nil), DefaultConfiguration(), srcs, nowhere{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var sum Summary
	go func() {
		sum, err = f.Run(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the healthy worker ran on after the other failed")
	}
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %v, want the failed worker's", err)
	}
	if sum.Frames != uint64(len(c.Packets)) || sum.Flows == 0 {
		t.Errorf("summary %+v: want all %d frames read and their flows exported", sum, len(c.Packets))
	}
}

// mixedFileConfiguration is the configuration `exporter run --config FILE
// --pcap PCAP --idle-timeout 15s --collector ...` builds (the CLI's test
// checks that it does): the file says 5s idle, which would split flows, and
// observation domain 3; the flags say 15s and name the collectors.
func mixedFileConfiguration(t *testing.T, pcap string, collectors ...string) Configuration {
	t.Helper()
	file := filepath.Join(t.TempDir(), "exporter.yaml")
	if err := os.WriteFile(file, []byte("collector: [\""+collectors[0]+"\"]\nidle-timeout: 5s\nactive-timeout: 60s\nobservation-domain: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	if err := cfg.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	cfg.Pcap, cfg.IdleTimeout, cfg.Collectors = pcap, Duration(15*time.Second), collectors
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runFanout opens the configuration's capture and runs it to the
// configured collectors.
func runFanout(t *testing.T, cfg Configuration) Summary {
	t.Helper()
	srcs, err := OpenSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	f, err := NewFanout(reporter.NewForTest(nil), cfg, srcs, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := f.Run(context.Background())
	if err != nil {
		t.Fatalf("run %s: %v", cfg.Pcap, err)
	}
	return sum
}

// TestFanoutOverUDP: over UDP, to two collectors, the exporter sends IPFIX
// that goflow2 decodes into the ground-truth flows, with the settings of
// the configuration file and those given over them.
func TestFanoutOverUDP(t *testing.T) {
	c, pcap := mixedCapture(t)
	var conns []*net.UDPConn
	var addrs []string
	for i := 0; i < 2; i++ {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadBuffer(4 << 20)
		conns = append(conns, conn)
		addrs = append(addrs, conn.LocalAddr().String())
	}
	sum := runFanout(t, mixedFileConfiguration(t, pcap, addrs...))
	if sum.Frames != uint64(len(c.Packets)) || sum.Flows != uint64(len(c.Flows)) {
		t.Errorf("summary %s: want %d packets, %d flows", sum, len(c.Packets), len(c.Flows))
	}
	for i, conn := range conns {
		var msgs [][]byte
		buf := make([]byte, 65536)
		for {
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			msgs = append(msgs, append([]byte(nil), buf[:n]...))
		}
		flows, infos, _, err := verify.Goflow2(msgs)
		if err != nil {
			t.Fatal(err)
		}
		synth.Sort(flows)
		if diff := testutil.FlowsDiff(flows, c.Flows); diff != "" {
			t.Errorf("collector %d: flows (-got, +want):\n%s", i, diff)
		}
		if len(infos) == 0 || infos[0].Domain != 3 {
			t.Errorf("collector %d: messages %+v, want observation domain 3 from the file", i, infos)
		}
	}
}

// TestFanoutOverTCP: the exporter delivers to a tcp:// collector and a UDP
// one at once; goflow2's decoding of the TCP stream equals the ground truth
// of the capture.
func TestFanoutOverTCP(t *testing.T) {
	c, pcap := mixedCapture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stream := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			stream <- nil
			return
		}
		defer conn.Close()
		b, _ := io.ReadAll(conn)
		stream <- b
	}()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	// As `exporter run --pcap PCAP --collector tcp://... --collector ...`.
	cfg := DefaultConfiguration()
	cfg.Pcap, cfg.Collectors = pcap, []string{"tcp://" + ln.Addr().String(), udp.LocalAddr().String()}
	sum := runFanout(t, cfg)
	if s := sum.String(); !strings.Contains(s, "0 send errors") || strings.Contains(s, "dropped") {
		t.Errorf("summary: %s", s)
	}
	var b []byte
	select {
	case b = <-stream:
	case <-time.After(10 * time.Second):
		t.Fatal("no TCP stream")
	}
	var msgs [][]byte
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 16 || n > len(b) {
			t.Fatalf("stream cut in a message: %d bytes left, message of %d", len(b), n)
		}
		msgs, b = append(msgs, b[:n]), b[n:]
	}
	flows, _, _, err := verify.Goflow2(msgs)
	if err != nil {
		t.Fatal(err)
	}
	synth.Sort(flows)
	if d := testutil.FlowsDiff(flows, c.Flows); d != "" {
		t.Errorf("flows over TCP (-got +want):\n%s", d)
	}
}
