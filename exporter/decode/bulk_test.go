package decode

import (
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/synth"
)

// TestBulkDecodes: every frame of the benchmark mix decodes (the ARP-free
// mix has only IP in encapsulations the decoder undoes).
func TestBulkDecodes(t *testing.T) {
	d := New()
	var p Packet
	for i, pkt := range synth.NewBulk(time.Unix(0, 0)).Packets(50000) {
		if r := d.Decode(LinkEthernet, pkt.Data, len(pkt.Data)+1000, &p); r != ReasonOK {
			t.Fatalf("frame %d (%d bytes): %s: % x", i, len(pkt.Data), r, pkt.Data)
		}
	}
}
