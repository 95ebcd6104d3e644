package demo

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/spanflow/spanflow/exporter/synth"
)

// pcapWriter keeps a copy of the mirrored frames in a pcap file (nanosecond
// timestamps), so the same traffic can be fed to `spanflow exporter run
// --pcap` later.
type pcapWriter struct {
	f   *os.File
	bw  *bufio.Writer
	rec [16]byte
	err error
}

func newPcapWriter(path string) (*pcapWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("write the traffic: %w", err)
	}
	p := &pcapWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20)}
	h := synth.PcapHeader()
	if _, err := p.bw.Write(h[:]); err != nil {
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
	r := p.rec[:]
	binary.LittleEndian.PutUint32(r[0:], uint32(ts/1e9))
	binary.LittleEndian.PutUint32(r[4:], uint32(ts%1e9))
	binary.LittleEndian.PutUint32(r[8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(r[12:], uint32(len(frame)))
	if _, p.err = p.bw.Write(r); p.err == nil {
		_, p.err = p.bw.Write(frame)
	}
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
