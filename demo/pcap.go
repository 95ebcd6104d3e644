package demo

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapWriter keeps a copy of the mirrored frames in a pcap file (nanosecond
// timestamps), so the same traffic can be fed to `spanflow exporter run
// --pcap` later.
type pcapWriter struct {
	f   *os.File
	bw  *bufio.Writer
	w   *pcapgo.Writer
	err error
}

func newPcapWriter(path string) (*pcapWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("write the traffic: %w", err)
	}
	p := &pcapWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20)}
	p.w = pcapgo.NewWriterNanos(p.bw)
	if err := p.w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the traffic to %s: %w", path, err)
	}
	return p, nil
}

// write adds a frame; the first error is kept for close.
func (p *pcapWriter) write(ts int64, frame []byte) {
	if p.err != nil {
		return
	}
	p.err = p.w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(frame), Length: len(frame)}, frame)
}

func (p *pcapWriter) close() error {
	err := p.err
	if ferr := p.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the traffic to %s: %w", p.f.Name(), err)
	}
	return nil
}
