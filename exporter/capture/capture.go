// Package capture is the exporter's first stage: it yields captured frames,
// one at a time, to the decoder (exporter/decode), from a pcap or pcapng
// file or live from an AF_PACKET TPACKET_V3 ring per interface (several
// interfaces merged into one source; PACKET_FANOUT shares them between
// workers). Frames are handed out in place, without a copy.
package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket/pcapgo"
)

// Frame is one captured frame. Data is valid only until the next call to
// Next: sources reuse their buffer so that reading allocates nothing.
type Frame struct {
	Data      []byte
	Timestamp int64  // capture time, nanoseconds since the Unix epoch
	Length    int    // length on the wire (len(Data) is the captured length)
	LinkType  uint32 // pcap LINKTYPE_* of the frame
	// ObservationPoint identifies the interface of a live capture; 0 for
	// files.
	ObservationPoint uint16
}

// Source yields frames. Next returns io.EOF after the last frame of a file.
type Source interface {
	Next(f *Frame) error
	Close() error
}

// File reads a pcap or pcapng file; the format is told by its magic number.
type File struct {
	f      *os.File
	pcap   *pcapReader
	ng     *pcapgo.NgReader
	link   uint32
	ngLink []uint32 // pcapng link type per interface id
	frames int
}

// OpenFile opens a capture file.
func OpenFile(path string) (*File, error) {
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
	src := &File{f: f}
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

// Next reads the next frame.
func (s *File) Next(fr *Frame) error {
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

func (s *File) ngLinkType(i int) uint32 {
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
func (s *File) Close() error { return s.f.Close() }
