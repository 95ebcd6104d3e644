package decoders_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestOptionsSampling replays akvorado's NetFlow v9 options template, options
// data (sampler 1: 1 in 30000), template and data in order: every data
// record must carry tshark's sampling interval, and its bytes and packets
// must be tshark's octets and packets times that interval.
func TestOptionsSampling(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	mergecap := testutil.Command(t, "mergecap")
	dir := filepath.Join(testutil.SharedTestdata(t), "flows", "akvorado", "netflow")
	merged := filepath.Join(t.TempDir(), "merged.pcap")
	var in []string
	for _, f := range []string{"options-template", "options-data", "template", "data"} {
		in = append(in, filepath.Join(dir, f+".pcap"))
	}
	if out, err := exec.Command(mergecap, append([]string{"-a", "-w", merged}, in...)...).CombinedOutput(); err != nil {
		t.Fatalf("mergecap: %v\n%s", err, out)
	}
	got := decodeCapture(t, merged)
	args := tsharkArgs(merged, got.ports)
	intervals := tsharkFields(t, tshark, args, "cflow.sampling_interval")
	if len(intervals) == 0 {
		t.Fatal("tshark found no sampling interval")
	}
	var rate uint32
	fmt.Sscan(intervals[0], &rate)
	if len(got.records) == 0 {
		t.Fatal("no records")
	}
	var bytes, pkts []string
	for _, r := range got.records {
		if r.SamplingRate != rate {
			t.Errorf("record sampling rate %d, tshark's options say %d", r.SamplingRate, rate)
		}
		bytes = append(bytes, fmt.Sprint(r.Bytes/uint64(rate)))
		pkts = append(pkts, fmt.Sprint(r.Packets/uint64(rate)))
	}
	sort.Strings(bytes)
	sort.Strings(pkts)
	if want := tsharkFields(t, tshark, args, "cflow.octets"); !slices.Equal(bytes, want) {
		t.Errorf("bytes / rate: %s", testutil.Diff(bytes, want))
	}
	if want := tsharkFields(t, tshark, args, "cflow.packets"); !slices.Equal(pkts, want) {
		t.Errorf("packets / rate: %s", testutil.Diff(pkts, want))
	}
}
