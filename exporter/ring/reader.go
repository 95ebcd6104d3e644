package ring

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Segment is what List tells of one segment file.
type Segment struct {
	Path        string
	Seq         uint64
	Size        int64 // bytes on disk
	First, Last int64 // time range of its frames (ns); 0 when it has none
	Blocks      int
	Packets     uint64
	RawBytes    int64 // records before compression
	IndexBytes  int64 // headers and keys
	// Pinned says that a pin holds the segment: retention passes it by.
	Pinned bool
	// Damage says where the segment stops answering: a block cut short by
	// a crash, or bytes that are no block. Blocks before it answer.
	Damage string
}

// segmentBlock is a block's place in its segment.
type segmentBlock struct {
	off int64
	h   blockHeader
}

// openSegment checks a segment's file header.
func openSegment(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	var hdr [segmentHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:8]) != segmentMagic {
		f.Close()
		return nil, 0, fmt.Errorf("segment %s: not a packet ring segment", filepath.Base(path))
	}
	return f, st.Size(), nil
}

// scanSegment reads a segment's block headers in order, handing each to fn
// with a reader of the file; it stops at the first place that holds no
// valid block and says why in the returned damage.
func scanSegment(f io.ReaderAt, size int64, fn func(segmentBlock) error) (damage string, err error) {
	off := int64(segmentHeaderSize)
	var hb [blockHeaderSize]byte
	for off < size {
		if size-off < blockHeaderSize {
			return fmt.Sprintf("block at offset %d cut short (%d bytes of a header): skipped", off, size-off), nil
		}
		if _, err := f.ReadAt(hb[:], off); err != nil {
			return "", err
		}
		h, herr := parseBlockHeader(hb[:])
		if herr != nil {
			return fmt.Sprintf("offset %d: %v; the %d bytes from there are skipped", off, herr, size-off), nil
		}
		if off+h.size() > size {
			return fmt.Sprintf("block at offset %d cut short (%d of its %d bytes): skipped", off, size-off, h.size()), nil
		}
		if err := fn(segmentBlock{off: off, h: h}); err != nil {
			return "", err
		}
		off += h.size()
	}
	return "", nil
}

// scanDir lists the segments of a ring directory, oldest first, each with
// its time range and damage; warn is told of every damaged one.
func scanDir(dir string, warn func(string)) ([]Segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("packet ring %s: %w", dir, err)
	}
	var out []Segment
	for _, e := range ents {
		name := e.Name()
		num, ok := strings.CutSuffix(name, segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		s := Segment{Path: filepath.Join(dir, name), Seq: seq}
		f, size, err := openSegment(s.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed by the writer meanwhile
			}
			s.Damage = err.Error()
			if st, e := os.Stat(s.Path); e == nil {
				s.Size = st.Size()
			}
			warn(s.Damage)
			out = append(out, s)
			continue
		}
		s.Size = size
		s.Damage, err = scanSegment(f, size, func(b segmentBlock) error {
			if s.Blocks == 0 {
				s.First, s.Last = b.h.first, b.h.last
			}
			s.First, s.Last = min(s.First, b.h.first), max(s.Last, b.h.last)
			s.Blocks++
			s.Packets += uint64(b.h.packets)
			s.RawBytes += int64(b.h.raw)
			s.IndexBytes += blockHeaderSize + int64(b.h.index)
			return nil
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("segment %s: %w", name, err)
		}
		if s.Damage != "" {
			warn(fmt.Sprintf("segment %s: %s (a crash or power loss cut it short, or it is being written)", name, s.Damage))
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Segment) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// List returns the segments of a ring, oldest first, and the time of the
// newest frame the ring has dropped to stay within its size (0: none).
func List(dir string, warn func(string)) ([]Segment, int64, error) {
	segs, err := scanDir(dir, warn)
	if err != nil {
		return nil, 0, err
	}
	pins, err := Pins(dir)
	for i := range segs {
		segs[i].Pinned = segs[i].Blocks > 0 && pinned(pins, segs[i].First, segs[i].Last)
	}
	return segs, readTruncated(dir), err
}

// kept says whether the ring still holds all it ever held of the time
// from..to (to excluded, 0 for now), though it has removed frames up to
// truncated: then no packets there means that there were none, not that
// they went. Time after truncated was never removed. Before it, a window
// is kept when it lies within a pin (retention passes pinned segments by;
// AddPin refuses or trims a pin over time already removed), or between
// the first frame and the last of a run of segments whose sequence
// numbers follow each other (no segment between them was removed).
// segs are the ring's segments, oldest first.
func kept(dir string, from, to, truncated int64, segs []Segment) bool {
	if from == 0 {
		return false // from the first frame ever: some went
	}
	if to == 0 || to > truncated+1 {
		to = truncated + 1
	}
	if to <= from {
		return true
	}
	pins, _ := Pins(dir)
	for _, p := range pins {
		if p.From <= from && to <= p.To {
			return true
		}
	}
	var first int64 // of the current run; 0: none
	for i, s := range segs {
		if i > 0 && s.Seq != segs[i-1].Seq+1 {
			first = 0
		}
		if s.Blocks == 0 {
			continue // an empty segment breaks no run
		}
		if first == 0 {
			first = s.First
		}
		if first <= from && to-1 <= s.Last {
			return true
		}
	}
	return false
}

const truncatedFile = "truncated"

// readTruncated reads the time of the newest frame removed from the ring.
func readTruncated(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, truncatedFile))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func writeTruncated(dir string, ts int64) error {
	tmp := filepath.Join(dir, truncatedFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(ts, 10)+"\n"), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, truncatedFile))
}

// Query selects frames. From and To bound their time (ns, To exclusive;
// 0 is unbounded). Key, when not 0, keeps one flow's frames. Match, when
// set, is called for the frames left (a BPF filter) with their length
// on the wire.
type Query struct {
	From, To int64
	Key      uint64
	Match    func(link uint32, data []byte, wire int) bool
	// MaxBytes bounds the packets' bytes an answer holds (0: no bound):
	// past it the search stops, with the oldest packets found, and warns.
	// An answer is held whole before it is written: the query server, in
	// the capturing process, bounds it (a query of a whole ring of 5 MiB
	// of compressed frames took 1.67 GB).
	MaxBytes int64
}

func (q *Query) overlaps(first, last int64) bool {
	return (q.From == 0 || last >= q.From) && (q.To == 0 || first < q.To)
}

func (q *Query) inWindow(ts int64) bool {
	return (q.From == 0 || ts >= q.From) && (q.To == 0 || ts < q.To)
}

// Packet is one frame a query found.
type Packet struct {
	Time             int64 // ns since the epoch
	Length           int   // on the wire
	LinkType         uint32
	ObservationPoint uint16
	Key              uint64
	Data             []byte
}

// QueryStats says what a query read.
type QueryStats struct {
	Segments, Blocks  int // scanned
	BlocksRead        int // decompressed
	BytesRead         int64
	Damaged           int // segments or blocks skipped as damaged
	Oldest, Truncated int64
}

// ErrGone says that the frames asked for were removed from the ring to
// keep it within its size.
var ErrGone = errors.New("the packets of that time were removed from the ring to keep it within its size")

// errAnswerFull stops a search whose answer reached Query.MaxBytes.
var errAnswerFull = errors.New("answer full")

// Search runs a query over a ring directory and returns the frames found,
// in time order. Damaged segments and blocks are skipped and told to warn.
// When the query's window lies wholly before the oldest frame kept and the
// ring has dropped frames of that time, the error is ErrGone; when only a
// part of it does, warn says so.
func Search(dir string, q Query, warn func(string)) ([]Packet, QueryStats, error) {
	var st QueryStats
	st.Truncated = readTruncated(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, st, fmt.Errorf("packet ring %s: %w", dir, err)
	}
	var dec *zstd.Decoder
	defer func() {
		if dec != nil {
			dec.Close()
		}
	}()
	var out []Packet
	var segs []Segment // the time ranges kept, for knowing what was removed
	var raw, body []byte
	var held int64 // the answer's bytes
	full := false
	for _, e := range ents {
		if full {
			break
		}
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) || e.IsDir() {
			continue
		}
		f, size, err := openSegment(filepath.Join(dir, name))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				st.Damaged++
				warn(err.Error())
			}
			continue
		}
		st.Segments++
		seq, _ := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		segs = append(segs, Segment{Seq: seq})
		seg := &segs[len(segs)-1]
		kb := make([]byte, 0, 4096)
		damage, err := scanSegment(f, size, func(b segmentBlock) error {
			st.Blocks++
			if seg.Blocks == 0 {
				seg.First, seg.Last = b.h.first, b.h.last
			}
			seg.First, seg.Last = min(seg.First, b.h.first), max(seg.Last, b.h.last)
			seg.Blocks++
			if b.h.packets > 0 && (st.Oldest == 0 || b.h.first < st.Oldest) {
				st.Oldest = b.h.first
			}
			if !q.overlaps(b.h.first, b.h.last) {
				return nil
			}
			if q.Key != 0 {
				n := int(b.h.index)
				kb = slices.Grow(kb[:0], n)[:n]
				if _, err := f.ReadAt(kb, b.off+blockHeaderSize); err != nil {
					return err
				}
				if !indexHas(kb, b.h.keys, indexKey(q.Key)) {
					return nil
				}
			}
			n := int(b.h.size() - blockHeaderSize)
			body = slices.Grow(body[:0], n)[:n]
			if _, err := f.ReadAt(body, b.off+blockHeaderSize); err != nil {
				return err
			}
			st.BlocksRead++
			st.BytesRead += int64(n)
			if crc32.Checksum(body, castagnoli) != b.h.crc {
				st.Damaged++
				warn(fmt.Sprintf("segment %s: block at offset %d does not match its checksum: skipped", name, b.off))
				return nil
			}
			stored := body[b.h.index:]
			recs := stored
			if b.h.codec == CodecZstd {
				if dec == nil {
					if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxBlockBody)); err != nil {
						return err
					}
				}
				raw, err = dec.DecodeAll(stored, raw[:0])
				if err != nil || len(raw) != int(b.h.raw) {
					st.Damaged++
					warn(fmt.Sprintf("segment %s: block at offset %d does not decompress to its %d bytes: skipped", name, b.off, b.h.raw))
					return nil
				}
				recs = raw
			}
			var r record
			for off := 0; off < len(recs); {
				next, err := nextRecord(recs, off, &r)
				if err != nil {
					st.Damaged++
					warn(fmt.Sprintf("segment %s: block at offset %d: %v: the rest of the block is skipped", name, b.off, err))
					return nil
				}
				off = next
				if !q.inWindow(r.ts) || (q.Key != 0 && r.key != q.Key) {
					continue
				}
				if q.Match != nil && !q.Match(uint32(r.link), r.data, int(r.wire)) {
					continue
				}
				if held += int64(len(r.data)) + 64; q.MaxBytes > 0 && held > q.MaxBytes {
					full = true
					return errAnswerFull
				}
				out = append(out, Packet{Time: r.ts, Length: int(r.wire), LinkType: uint32(r.link), ObservationPoint: r.obs, Key: r.key, Data: slices.Clone(r.data)})
			}
			return nil
		})
		f.Close()
		if errors.Is(err, errAnswerFull) {
			warn(fmt.Sprintf("the answer stops at %d MiB of packets, the oldest found (segment %s on): narrow the time range, or give a flow or a filter", q.MaxBytes>>20, name))
			err = nil
		}
		if err != nil {
			return nil, st, fmt.Errorf("segment %s: %w", name, err)
		}
		if damage != "" {
			st.Damaged++
			warn(fmt.Sprintf("segment %s: %s (a crash or power loss cut it short, or it is being written)", name, damage))
		}
	}
	slices.SortStableFunc(out, func(a, b Packet) int { return cmp.Compare(a.Time, b.Time) })
	if st.Truncated != 0 && (q.From == 0 || q.From <= st.Truncated) && (full || !kept(dir, q.From, q.To, st.Truncated, segs)) {
		gone := fmt.Sprintf("packets up to %s were removed from the ring to keep it within its size", time.Unix(0, st.Truncated).UTC().Format(time.RFC3339Nano))
		if q.To != 0 && q.To <= st.Truncated+1 && len(out) == 0 {
			return nil, st, fmt.Errorf("%w (%s)", ErrGone, gone)
		}
		warn(gone + ": the answer may miss some")
	}
	return out, st, nil
}
