package elasticsearch

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// Settings of the process killed by TestKill9Bound, and the loss bound
// docs/elasticsearch.md states for them.
const (
	killQueue      = 2000
	killFlushBytes = 256 << 10
	killWorkers    = 2
	killBatch      = 500
	killDay        = "2001-03-07"
)

func killBound() int {
	// queue + per feeder (2 per worker) the request being filled or in
	// flight (at least 600 bytes per document; the last batch taken may
	// pass the flush size) + the batch in Write.
	return killQueue + 2*killWorkers*(killFlushBytes/600+killBatch) + killBatch
}

// TestKill9Helper is the process TestKill9Bound kills: it writes flows to
// an output whose cluster never answers bulk requests, printing how many
// Write calls have returned.
func TestKill9Helper(t *testing.T) {
	if os.Getenv("SPANFLOW_KILL9_HELPER") == "" {
		t.Skip("run by TestKill9Bound")
	}
	day, _ := time.Parse(time.DateOnly, killDay)
	recs, _ := genRecords(200000, day, 7)
	c := DefaultConfiguration()
	c.Connection.URLs = []string{os.Getenv("SPANFLOW_KILL9_URL")}
	c.SpoolDir = os.Getenv("SPANFLOW_KILL9_SPOOL")
	c.RunSetup = false
	c.QueueSize, c.FlushBytes, c.Workers = killQueue, killFlushBytes, killWorkers
	o, err := New(reporter.NewForTest(nil), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += killBatch {
		if err := o.Write(recs[i:min(i+killBatch, len(recs))]); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("written %d\n", min(i+killBatch, len(recs)))
		time.Sleep(2 * time.Millisecond)
	}
	select {} // wait to be killed
}

// TestKill9Bound kills -9 a process writing flows to a hung cluster and
// checks the documented bound: every flow it had written is in the spool
// except at most killBound() of them; the next start indexes the spooled
// ones exactly once.
func TestKill9Bound(t *testing.T) {
	target := testutil.Elasticsearch(t)
	proxyURL := hangingBulkProxy(t, target)

	spool := filepath.Join(t.TempDir(), "spool")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKill9Helper$", "-test.v")
	cmd.Env = append(os.Environ(), "SPANFLOW_KILL9_HELPER=1", "SPANFLOW_KILL9_URL="+proxyURL, "SPANFLOW_KILL9_SPOOL="+spool)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	written := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "written "); ok {
			written, _ = strconv.Atoi(n)
			if written >= 30000 {
				break
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if written < 30000 {
		t.Fatalf("helper wrote only %d flows before ending", written)
	}

	// What survived: the spool's documents (the cluster indexed nothing).
	s, err := openSpool(spool, 1<<30, func(dropReason, int) {})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for seg := s.Take(); seg != nil; seg = s.Take() {
		items, bad, err := s.Read(seg)
		if err != nil {
			t.Fatal(err)
		}
		if bad > 1 {
			t.Errorf("%d torn lines in a segment; a kill leaves at most one", bad)
		}
		for _, it := range items {
			ids[string(it.id)] = true
		}
		if err := s.Done(seg, nil); err != nil {
			t.Fatal(err)
		}
	}
	day, _ := time.Parse(time.DateOnly, killDay)
	recs, _ := genRecords(200000, day, 7)
	lost := 0
	for i := range recs[:written] {
		if !ids[DocumentID(&recs[i])] {
			lost++
		}
	}
	t.Logf("killed after %d flows written: %d spooled, %d lost (documented bound %d)", written, len(ids), lost, killBound())
	if lost > killBound() {
		t.Errorf("kill -9 lost %d flows, more than the documented bound %d", lost, killBound())
	}
	known := map[string]bool{}
	for i := range recs {
		known[DocumentID(&recs[i])] = true
	}
	for id := range ids {
		if !known[id] {
			t.Errorf("spool holds a document %s that was never written", id)
			break
		}
	}
}
