package pcapfile_test

import (
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/pcapfile"
	"github.com/spanflow/spanflow/internal/testutil"
)

// ngBlocks builds a little-endian pcapng file of one section and one
// Ethernet interface (microseconds).
type ngBlocks struct{ b []byte }

func (f *ngBlocks) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	le := binary.LittleEndian
	f.b = le.AppendUint32(append(le.AppendUint32(le.AppendUint32(f.b, typ), n), body...), n)
}

func newNGBlocks() *ngBlocks {
	le := binary.LittleEndian
	f := &ngBlocks{}
	f.block(0x0a0d0d0a, le.AppendUint64(le.AppendUint32(le.AppendUint32(nil, 0x1a2b3c4d), 1), ^uint64(0)))
	f.block(1, le.AppendUint32(le.AppendUint32(nil, 1), 0)) // Ethernet, no snap length, no options
	return f
}

func (f *ngBlocks) simple(b byte) {
	f.block(3, append(binary.LittleEndian.AppendUint32(nil, 3), b, b, b))
}

func (f *ngBlocks) enhanced(us uint64, b byte) {
	le := binary.LittleEndian
	body := le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 0), uint32(us>>32)), uint32(us))
	body = le.AppendUint32(le.AppendUint32(body, 3), 3)
	f.block(6, append(body, b, b, b))
}

// TestSimplePacketTime: pcapng simple packet blocks carry no time: tshark
// shows none, and they must not be dated 1970 (flows of 1970, indexed into
// daily indices of 1970). A frame of one takes the time of the frame before
// it; before any frame with a time, that of the first frame after it with
// one; in a file with no time at all, the file's modification time. Frames
// with a time keep tshark's.
func TestSimplePacketTime(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	const t1, t2 = 1_796_437_980_000_000, 1_796_437_982_500_000 // µs: 2026-12-05T02:33:00Z and 2.5 s later
	build := func(blocks func(f *ngBlocks)) string {
		f := newNGBlocks()
		blocks(f)
		path := filepath.Join(t.TempDir(), "c.pcapng")
		if err := os.WriteFile(path, f.b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mtime := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		blocks func(f *ngBlocks)
		want   []int64 // ns
	}{
		{"simple blocks first, between and last", func(f *ngBlocks) {
			f.simple(1)
			f.simple(2)
			f.enhanced(t1, 3)
			f.simple(4)
			f.enhanced(t2, 5)
			f.simple(6)
		}, []int64{t1 * 1e3, t1 * 1e3, t1 * 1e3, t1 * 1e3, t2 * 1e3, t2 * 1e3}},
		{"simple blocks only", func(f *ngBlocks) {
			f.simple(1)
			f.simple(2)
		}, []int64{mtime.UnixNano(), mtime.UnixNano()}},
	}
	for _, c := range cases {
		path := build(c.blocks)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		// tshark: a time for the enhanced packet blocks, none for the
		// simple ones.
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.time_epoch").Output()
		if err != nil {
			t.Fatalf("%s: tshark: %v", c.name, err)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		src, err := pcapfile.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		var fr pcapfile.Frame
		for {
			if err := src.Next(&fr); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got = append(got, fr.Timestamp)
		}
		untimed := src.Untimed()
		src.Close()
		if len(got) != len(c.want) || len(lines) != len(c.want) {
			t.Fatalf("%s: %d frames, tshark %d, want %d", c.name, len(got), len(lines), len(c.want))
		}
		n := 0
		for i, line := range lines {
			if line == "" {
				n++
			} else if ns, err := epochNS(line); err != nil || ns != got[i] {
				t.Errorf("%s: frame %d at %d, tshark %s", c.name, i+1, got[i], line)
			}
			if got[i] != c.want[i] || got[i] < int64(365*24*time.Hour) {
				t.Errorf("%s: frame %d at %s, want %s", c.name, i+1, time.Unix(0, got[i]).UTC(), time.Unix(0, c.want[i]).UTC())
			}
		}
		if untimed != n || n == 0 {
			t.Errorf("%s: %d frames given a time, tshark shows %d without", c.name, untimed, n)
		}
	}
}

// epochNS reads tshark's frame.time_epoch, seconds with nine decimals.
func epochNS(s string) (int64, error) {
	sec, frac, _ := strings.Cut(s, ".")
	v, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	return v*1e9 + f, err
}
