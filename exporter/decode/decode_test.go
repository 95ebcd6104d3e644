package decode

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/testutil"
)

// sharedCaptures lists the captures of ../shared/testdata/<dir>.
func sharedCaptures(t testing.TB, dir string) []string {
	root := filepath.Join(testutil.SharedTestdata(t), dir)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no captures under %s", root)
	}
	return files
}

// TestSharedCapturesNoPanic runs every mirror and malformed capture through the
// decoder: no panic, and every frame is either decoded or counted with a reason.
func TestSharedCapturesNoPanic(t *testing.T) {
	for _, dir := range []string{"mirror", "malformed"} {
		for _, path := range sharedCaptures(t, dir) {
			src, err := capture.OpenFile(path)
			if err != nil {
				t.Logf("%s: unreadable capture: %v", path, err)
				continue
			}
			d := New()
			var p Packet
			var fr capture.Frame
			counts := map[Reason]int{}
			for {
				if err := src.Next(&fr); err != nil {
					if err != io.EOF {
						t.Logf("%s: %v", path, err)
					}
					break
				}
				r := d.Decode(fr.LinkType, fr.Data, fr.Length, &p)
				if r >= reasonCount {
					t.Errorf("%s: reason %d out of range", path, r)
				}
				counts[r]++
			}
			src.Close()
			// Mirror captures of L2 control traffic only, or of encapsulations
			// nobody meters (NSH, ERSPAN III frame type 7), decode nothing.
			if dir == "mirror" && counts[ReasonOK] == 0 && !noIPCaptures[filepath.Base(path)] {
				t.Errorf("%s: no frame decoded: %v", path, counts)
			}
		}
	}
}

var noIPCaptures = map[string]bool{
	"802.1ad_QinQ.pcap":         true, // ARP
	"erspan-type-i-3.pcap":      true, // ARP
	"erspan-type-ii-3.pcap":     true, // STP, CDP
	"erspan-type-iii-ft-7.pcap": true, // frame type 7
	"nsh-over-vxlan-gpe.pcap":   true, // NSH
}

func FuzzDecode(f *testing.F) {
	// Seeds: the first frames of the mirror captures, and their prefixes.
	{
		root := filepath.Join(testutil.ModuleRoot(), "..", "shared", "testdata", "mirror")
		if dir := os.Getenv("SPANFLOW_SHARED_TESTDATA"); dir != "" {
			root = filepath.Join(dir, "mirror")
		}
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			src, err := capture.OpenFile(path)
			if err != nil {
				return nil
			}
			defer src.Close()
			var fr capture.Frame
			for i := 0; i < 4 && src.Next(&fr) == nil; i++ {
				f.Add(fr.LinkType, append([]byte(nil), fr.Data...))
			}
			return nil
		})
	}
	// And one frame of each generated session (every encapsulation), which
	// needs no shared captures.
	for _, p := range synth.Mixed(time.Unix(0, 0)).Packets {
		f.Add(LinkEthernet, p.Data)
	}
	// And the frames of exporter/testdata/encap (NSH over Ethernet, E-Tag,
	// VN-Tag, WCCP, PPPoE and PPP with compressed fields, Cisco HDLC...).
	for _, c := range encapCaptures() {
		for _, fr := range c.frames {
			f.Add(c.link, fr)
		}
	}
	f.Add(LinkEthernet, []byte{})
	f.Add(LinkRaw, []byte{0x45})
	f.Fuzz(func(t *testing.T, link uint32, data []byte) {
		d := New()
		var p Packet
		r := d.Decode(link%300, data, len(data), &p)
		if r == ReasonOK && p.IPLength == 0 {
			t.Fatalf("decoded packet without IP length")
		}
	})
}
