package decoders_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/decoders"
)

// ipfixMessage wraps sets into an IPFIX message of domain 1.
func ipfixMessage(sets ...[]byte) []byte {
	b := make([]byte, 16)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[12:], 1)
	return b
}

func set(id uint16, body []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
	return append(b, body...)
}

func name16(s string) []byte { b := make([]byte, 16); copy(b, s); return b }

// TestInterfaceNamesFromOptions: an options template scoped by
// ingressInterface with interfaceName names the interfaces of the data
// records that follow (ground truth: the names sent).
func TestInterfaceNamesFromOptions(t *testing.T) {
	// Options template 300: scope ingressInterface(10)/4, option interfaceName(82)/16.
	tpl := binary.BigEndian.AppendUint16(nil, 300)
	tpl = binary.BigEndian.AppendUint16(tpl, 2) // field count
	tpl = binary.BigEndian.AppendUint16(tpl, 1) // scope field count
	tpl = append(tpl, 0, 10, 0, 4, 0, 82, 0, 16)
	var data []byte
	for _, x := range []struct {
		idx  uint32
		name string
	}{{3, "vmnic0"}, {4, "vmnic1"}} {
		data = binary.BigEndian.AppendUint32(data, x.idx)
		data = append(data, name16(x.name)...)
	}
	dec, _ := decoders.New(decoders.DefaultConfiguration())
	now := time.Now()
	_, res, err := dec.Decode(dg("192.0.2.1:1", ipfixMessage(set(3, tpl), set(300, data)), now), nil)
	if err != nil || res.OptionsRecords != 2 {
		t.Fatalf("options: %d records, err %v", res.OptionsRecords, err)
	}
	g := ipfixgen.New(1, 3) // records with ingress 3, egress 4
	dec.Decode(dg("192.0.2.1:1", g.Template(), now), nil)
	recs, _, err := dec.Decode(dg("192.0.2.1:1", g.AppendData(nil), now), nil)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, err %v", len(recs), err)
	}
	for _, r := range recs {
		if r.InIfName != "vmnic0" || r.OutIfName != "vmnic1" {
			t.Errorf("interfaces %d=%q %d=%q, want vmnic0 and vmnic1", r.InIf, r.InIfName, r.OutIf, r.OutIfName)
		}
	}
}
