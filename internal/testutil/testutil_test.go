package testutil

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestReadCaptureLinkTypeAbove255 writes a classic pcap with link type 276
// (Linux cooked v2) and checks it is not truncated.
func TestReadCaptureLinkTypeAbove255(t *testing.T) {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 276)
	frame := make([]byte, 20)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(frame)))
	b = binary.LittleEndian.AppendUint32(b, 60)
	b = append(b, frame...)
	path := filepath.Join(t.TempDir(), "sll2.pcap")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	pkts := ReadPcap(t, path)
	if len(pkts) != 1 || pkts[0].LinkType != 276 || pkts[0].Length != 60 {
		t.Fatalf("read %+v, want one frame of link type 276, length 60", pkts)
	}
}
