// Package pcapfile reads pcap and pcapng capture files, frame by frame,
// without allocating: it is spanflow's one reader of captures, under the
// exporter's file source (exporter/capture), the collector's replay of flow
// datagrams (collector/pcapreplay) and the tests' capture helper
// (internal/testutil).
package pcapfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket/pcapgo"
)

// Frame is one frame of a capture. Data is valid only until the next call
// to Next: the reader hands out its buffer in place.
type Frame struct {
	Data      []byte
	Timestamp int64  // capture time, nanoseconds since the Unix epoch
	Length    int    // length on the wire, at least len(Data)
	LinkType  uint32 // pcap LINKTYPE_* of the frame (per interface in pcapng)
}

// Reader reads a pcap or pcapng file; the format is told by its magic
// number.
type Reader struct {
	f      *os.File
	pcap   *pcapReader
	ng     *pcapgo.NgReader
	link   uint32
	ngLink []uint32 // pcapng link type per interface id
	frames int
}

// Open opens a capture file.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read capture %s: not a pcap or pcapng file (%d bytes)", path, len(magic))
	}
	src := &Reader{f: f}
	if magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a {
		opts := pcapgo.DefaultNgReaderOptions
		src.ng, err = pcapgo.NewNgReader(br, opts)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read pcapng header of %s: %w", path, err)
		}
		src.link = uint32(src.ng.LinkType())
	} else {
		src.pcap, err = newPCAPReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read pcap header of %s: %w", path, err)
		}
		src.link = src.pcap.link
	}
	return src, nil
}

// Next reads the next frame; it returns io.EOF after the last one.
func (s *Reader) Next(fr *Frame) error {
	var err error
	if s.pcap != nil {
		err = s.pcap.next(fr)
	} else {
		data, ci, e := s.ng.ZeroCopyReadPacketData()
		err = e
		if err == nil {
			fr.Data, fr.Length, fr.LinkType = data, ci.Length, s.ngLinkType(ci.InterfaceIndex)
			fr.Timestamp = ci.Timestamp.UnixNano()
		}
	}
	switch {
	case err == nil:
		s.frames++
		if fr.Length < len(fr.Data) {
			fr.Length = len(fr.Data)
		}
		return nil
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("capture truncated after frame %d: %w", s.frames, err)
	}
	return fmt.Errorf("read frame %d: %w", s.frames+1, err)
}

func (s *Reader) ngLinkType(i int) uint32 {
	for len(s.ngLink) <= i {
		iface, err := s.ng.Interface(len(s.ngLink))
		if err != nil {
			return s.link
		}
		s.ngLink = append(s.ngLink, uint32(iface.LinkType))
	}
	return s.ngLink[i]
}

// Close closes the file.
func (s *Reader) Close() error { return s.f.Close() }
