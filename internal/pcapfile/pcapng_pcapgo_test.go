package pcapfile_test

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/spanflow/spanflow/internal/pcapfile"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestPCAPNGSameAsPcapgo: on every pcapng capture of the shared test data,
// and on one with several interfaces, the frames are those gopacket's
// pcapgo reads: data, length on the wire, time and link type.
func TestPCAPNGSameAsPcapgo(t *testing.T) {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeLinuxSLL, SnapLength: 65535}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		data := bytes.Repeat([]byte{byte(i)}, i)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1_700_000_000+int64(i), int64(i)*123_457), CaptureLength: i, Length: 100 + i, InterfaceIndex: i % 2}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	synthetic := filepath.Join(t.TempDir(), "two-interfaces.pcapng")
	if err := os.WriteFile(synthetic, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{synthetic}
	root := testutil.SharedTestdata(t)
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".pcapng") {
			files = append(files, path)
		}
		return err
	})
	if len(files) < 4 {
		t.Fatalf("only %d pcapng files", len(files))
	}
	for _, path := range files {
		src, err := pcapfile.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		ng, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatal(err)
		}
		var fr pcapfile.Frame
		n := 0
		for ; ; n++ {
			data, ci, werr := ng.ReadPacketData()
			err := src.Next(&fr)
			if werr != nil || err != nil {
				if werr != io.EOF || err != io.EOF {
					t.Errorf("%s: frame %d: %v, pcapgo %v", path, n, err, werr)
				}
				break
			}
			// pcapgo keeps link types in a uint8.
			link := ci.AncillaryData[0].(layers.LinkType)
			if !bytes.Equal(fr.Data, data) || fr.Length != max(ci.Length, len(data)) || fr.Timestamp != ci.Timestamp.UnixNano() || uint8(fr.LinkType) != uint8(link) {
				t.Errorf("%s: frame %d: %d bytes (%d) at %d; pcapgo %d bytes (%d) at %d", path, n, len(fr.Data), fr.Length, fr.Timestamp, len(data), ci.Length, ci.Timestamp.UnixNano())
				break
			}
		}
		src.Close()
		t.Logf("%s: %d frames", filepath.Base(path), n)
	}
}
