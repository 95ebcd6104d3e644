package pcapfile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/pcapfile"
	"github.com/spanflow/spanflow/internal/testutil"
)

// tsharkFrame is what tshark reads of a frame.
type tsharkFrame struct {
	ns         int64 // time, nanoseconds since the epoch
	wire, capt int
}

func tsharkFrames(t *testing.T, path string) []tsharkFrame {
	t.Helper()
	out, err := exec.Command(testutil.Command(t, "tshark"), "-r", path, "-T", "fields",
		"-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	var frames []tsharkFrame
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("tshark line %q", line)
		}
		r, ok := new(big.Rat).SetString(f[0])
		if !ok {
			t.Fatalf("tshark time %q", f[0])
		}
		ns := new(big.Int).Quo(new(big.Int).Mul(r.Num(), big.NewInt(1e9)), r.Denom())
		wire, _ := strconv.Atoi(f[1])
		capt, _ := strconv.Atoi(f[2])
		frames = append(frames, tsharkFrame{ns.Int64(), wire, capt})
	}
	return frames
}

// readFrames reads every frame of path, copied.
func readFrames(t *testing.T, path string, mapped bool) []pcapfile.Frame {
	t.Helper()
	open := pcapfile.Open
	if mapped {
		open = pcapfile.OpenMapped
	}
	r, err := open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer r.Close()
	var out []pcapfile.Frame
	var f pcapfile.Frame
	for {
		err := r.Next(&f)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read %s: %v", path, err)
			}
			return out
		}
		f.Data = bytes.Clone(f.Data)
		out = append(out, f)
	}
}

// TestPCAPVariantsAgainstTshark: the pcap variants that tshark reads
// (editcap writes them from captures of the shared test data) give the
// frames of the original capture, with tshark's times and lengths.
func TestPCAPVariantsAgainstTshark(t *testing.T) {
	root := testutil.SharedTestdata(t)
	editcap := testutil.Command(t, "editcap")
	captures := []string{
		"mirror/tcpdump/dns_tcp.pcap",
		"mirror/tcpdump/tcp-handshake-nano.pcap",
		"mirror/tcpdump/erspan-type-ii-3.pcap",
		"mirror/zeek/tcp-retransmit-timeout.pcapng",
	}
	variants := map[string]func(t *testing.T, orig, out string){
		// Alexey Kuznetzov's modified pcap: its own magic number, and
		// 8 more bytes in each record header.
		"modpcap": editcapTo(editcap, "modpcap"),
		// Old tcpdumps' longer record headers: Red Hat 6.1's and Nokia
		// IPSO's under the standard magic number, SuSE 6.3's under the
		// modified one (tshark tells them by their first records).
		"rh6_1pcap":   editcapTo(editcap, "rh6_1pcap"),
		"nokiapcap":   editcapTo(editcap, "nokiapcap"),
		"suse6_3pcap": editcapTo(editcap, "suse6_3pcap"),
		// The link type field with the FCS bits of libpcap: an FCS of
		// 4 bytes ends every frame (LT_FCS_DATALINK_EXT(4)).
		"fcs-bits": func(t *testing.T, orig, out string) {
			b, err := os.ReadFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(orig, ".pcapng") {
				t.Skip("a pcap header's field")
			}
			order := binary.ByteOrder(binary.LittleEndian)
			if b[0] == 0xa1 {
				order = binary.BigEndian
			}
			order.PutUint32(b[20:], order.Uint32(b[20:])|0x44000000)
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		// Compressed, as tcpdump -z and log rotation leave captures.
		"gzip": compressWith("gzip", "-c"),
		"zstd": compressWith("zstd", "-q", "-c"),
	}
	for _, c := range captures {
		orig := filepath.Join(root, c)
		want := readFrames(t, orig, false)
		for name, write := range variants {
			t.Run(filepath.Base(c)+"/"+name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), name+".pcap")
				write(t, orig, path)
				ts := tsharkFrames(t, path)
				if len(ts) != len(want) {
					t.Fatalf("tshark reads %d frames, the original has %d", len(ts), len(want))
				}
				for _, mapped := range []bool{false, true} {
					got := readFrames(t, path, mapped)
					if len(got) != len(ts) {
						t.Fatalf("mapped %v: %d frames, tshark reads %d", mapped, len(got), len(ts))
					}
					for i, f := range got {
						tf := ts[i]
						if f.Timestamp != tf.ns || f.Length != tf.wire || len(f.Data) != tf.capt || !bytes.Equal(f.Data, want[i].Data) || f.LinkType != want[i].LinkType {
							t.Errorf("mapped %v, frame %d: time %d, length %d, %d bytes captured, link type %d; tshark %+v, link type %d", mapped, i+1, f.Timestamp, f.Length, len(f.Data), f.LinkType, tf, want[i].LinkType)
						}
					}
				}
			})
		}
	}
}

// editcapTo writes out as editcap -F format writes orig.
func editcapTo(editcap, format string) func(t *testing.T, orig, out string) {
	return func(t *testing.T, orig, out string) {
		if b, err := exec.Command(editcap, "-F", format, orig, out).CombinedOutput(); err != nil {
			t.Fatalf("editcap: %v: %s", err, b)
		}
	}
}

// compressWith writes out as the output of the command name args orig.
func compressWith(name string, args ...string) func(t *testing.T, orig, out string) {
	return func(t *testing.T, orig, out string) {
		b, err := exec.Command(testutil.Command(t, name), append(args, orig)...).Output()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLZ4Refused: an lz4-compressed capture, which tshark reads but
// spanflow does not, is refused with a reason that says so.
func TestLZ4Refused(t *testing.T) {
	root := testutil.SharedTestdata(t)
	path := filepath.Join(t.TempDir(), "dns_tcp.pcap.lz4")
	compressWith("lz4", "-q", "-c")(t, filepath.Join(root, "mirror/tcpdump/dns_tcp.pcap"), path)
	if len(tsharkFrames(t, path)) != 11 {
		t.Fatal("tshark does not read the lz4 capture")
	}
	_, err := pcapfile.OpenMapped(path)
	if err == nil || !strings.Contains(err.Error(), "lz4 compression is not read: decompress it first") {
		t.Errorf("lz4 capture: %v", err)
	}
}
