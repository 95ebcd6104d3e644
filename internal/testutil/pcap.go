package testutil

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"time"
)

// WritePcap writes frames as a little-endian, microsecond pcap file of link
// type link (1 for Ethernet), frame i stamped at start plus i seconds, each
// frame whole (captured length = wire length).
func WritePcap(t testing.TB, path string, link uint32, start time.Time, frames [][]byte) {
	t.Helper()
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], link)
	b.Write(h)
	for i, f := range frames {
		ts := start.Add(time.Duration(i) * time.Second)
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r[0:], uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(r[4:], uint32(ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(r[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(f)))
		b.Write(r)
		b.Write(f)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
