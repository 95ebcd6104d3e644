// Package capture is the exporter's first stage: it yields captured frames,
// one at a time, to the decoder (exporter/decode), from a pcap or pcapng
// file or live from an AF_PACKET TPACKET_V3 ring per interface (several
// interfaces merged into one source; PACKET_FANOUT shares them between
// workers). Frames are handed out in place, without a copy.
package capture

import "github.com/spanflow/spanflow/internal/pcapfile"

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
	// IfIndex is the capturing interface's index in a live capture; 0 for
	// files.
	IfIndex uint32
}

// Source yields frames. Next returns io.EOF after the last frame of a file.
type Source interface {
	Next(f *Frame) error
	Close() error
}

// File is a capture file as a Source.
type File struct {
	r     *pcapfile.Reader
	frame pcapfile.Frame
}

// OpenFile opens a pcap or pcapng file. A regular pcap file is mapped in
// memory and its frames handed out of the mapping (no copy from the page
// cache): the caller reads them with debug.SetPanicOnFault and takes a
// fault in Mapped as a read error (the file was cut while being read).
func OpenFile(path string) (*File, error) {
	r, err := pcapfile.OpenMapped(path)
	if err != nil {
		return nil, err
	}
	return &File{r: r}, nil
}

// Next reads the next frame; it returns io.EOF after the last one.
func (s *File) Next(fr *Frame) error {
	if err := s.r.Next(&s.frame); err != nil {
		return err
	}
	fr.Data, fr.Timestamp, fr.Length, fr.LinkType = s.frame.Data, s.frame.Timestamp, s.frame.Length, s.frame.LinkType
	return nil
}

// Untimed is how many frames read had no time in the file and were given
// one (pcapng simple packet blocks: pcapfile.Reader.Untimed).
func (s *File) Untimed() int { return s.r.Untimed() }

// Mapped says whether addr is in the file's mapping.
func (s *File) Mapped(addr uintptr) bool { return s.r.Mapped(addr) }

// Close closes the file.
func (s *File) Close() error { return s.r.Close() }
