package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/kafka"
	"github.com/spanflow/spanflow/internal/flow"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestIndexerExitsWhenAnOutputFails: of two `spanflow indexer run` in one
// group, one writes to a file output that cannot be written (/dev/full:
// ENOSPC, as a full disk). It exits with status 1, leaving the group, and
// the other indexer writes every flow published, each once. Before, the
// failed indexer stayed up holding its partitions and consuming nothing,
// its consumer lag at 0: their flows never reached any output.
func TestIndexerExitsWhenAnOutputFails(t *testing.T) {
	brokers := testutil.Kafka(t)
	run := fmt.Sprintf("%d", rand.Uint32())
	topic, group := "spanflow-outfail-"+run, "outfail-"+run
	var logs testutil.SyncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	// The topic first, with 4 partitions: each indexer gets some.
	oc := kafka.DefaultConfiguration()
	oc.Connection.Brokers, oc.Connection.Topic, oc.CreatePartitions = []string{brokers}, topic, 4
	out, err := kafka.New(reporter.NewForTest(nil), oc)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Start(); err != nil {
		t.Fatal(err)
	}
	args := func(output string) []string {
		return []string{"indexer", "run", "--metrics-listen", "", "--kafka-brokers", brokers, "--kafka-topic", topic,
			"--kafka-group", group, "--kafka-session-timeout", "6s", "--kafka-max-poll-messages", "5",
			"--output", output, "--output-max-bytes", "0"}
	}
	start := func(what string, cmd *exec.Cmd) *processHandle {
		return startWatched(t, cmd, &logs, what, "partitions assigned")
	}
	failing := start("full", spanflowProcess(t, args("file:/dev/full")...))
	good := filepath.Join(t.TempDir(), "flows.ndjson")
	start("good", spanflowProcess(t, args("file:"+good)...))
	time.Sleep(3 * time.Second) // the group settles: two partitions each

	const exporters, per = 40, 25
	want := map[string]bool{}
	now := time.Now().UTC()
	for e := range exporters {
		recs := make([]flow.Record, per)
		for i := range recs {
			recs[i] = flow.Record{Kind: flow.KindIPFIX, ExporterAddr: netip.AddrFrom4([4]byte{198, 18, 0, byte(e)}),
				Received: now, Start: now.Add(-time.Minute), End: now,
				SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(e), byte(i)}), DstAddr: netip.MustParseAddr("10.255.0.1"),
				SrcPort: 1024, DstPort: 443, Proto: 6, Bytes: 100, Packets: 1}
			want[recs[i].SrcAddr.String()] = true
		}
		recs[0].ObserverIP = recs[0].ExporterAddr
		if err := out.Write(recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Stop(); err != nil {
		t.Fatal(err)
	}

	exited := make(chan error, 1)
	go func() { exited <- failing.cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("the indexer whose output failed ended with %v, want exit status 1", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("the indexer whose output failed is still running 60 s later")
	}

	got := map[string]int{}
	deadline := time.Now().Add(90 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		got = map[string]int{}
		f, err := os.Open(good)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var doc struct {
				Source struct{ IP string } `json:"source"`
			}
			if json.Unmarshal(sc.Bytes(), &doc) == nil {
				got[doc.Source.IP]++
			}
		}
		f.Close()
	}
	missing, twice := 0, 0
	for ip := range want {
		switch {
		case got[ip] == 0:
			missing++
		case got[ip] > 1:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(got) != len(want) {
		t.Fatalf("of the %d flows published, %d never reached the working indexer's file, %d more than once; %d others",
			len(want), missing, twice, len(got)-len(want)+missing)
	}
}
