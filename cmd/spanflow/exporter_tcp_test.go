package main

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/synth"
)

// TestExporterRunOverTCP: `exporter run` delivers to a tcp:// collector and
// a UDP one at once; goflow2's decoding of the TCP stream equals the ground
// truth of the capture.
func TestExporterRunOverTCP(t *testing.T) {
	c := synth.Mixed(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	pcap := filepath.Join(t.TempDir(), "mixed.pcap")
	if err := synth.WritePcapFile(pcap, c.Packets); err != nil {
		t.Fatal(err)
	}
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
	out, err := run(t, "exporter", "run", "--pcap", pcap, "--collector", "tcp://"+ln.Addr().String(), "--collector", udp.LocalAddr().String())
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, "0 send errors") || strings.Contains(out, "dropped") {
		t.Errorf("summary: %s", out)
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
	if d := synth.Diff(flows, c.Flows); d != "" {
		t.Errorf("flows over TCP (-got +want):\n%s", d)
	}
}
