package elasticsearch

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spanflow/spanflow/collector/output/elasticsearch/setup"
	"github.com/spanflow/spanflow/internal/testutil"
)

// node is an Elasticsearch node of the test's own, which it may stop and
// start (the shared test cluster must never be stopped).
type node struct {
	script, rundir, url string
	env                 []string
}

const outagePort = 9290

func startNode(t *testing.T) *node {
	t.Helper()
	testutil.Elasticsearch(t) // same gate: needs the distribution make test uses
	n := &node{
		script: filepath.Join(testutil.ModuleRoot(), "scripts", "elasticsearch"),
		rundir: fmt.Sprintf("/tmp/spanflow-es-outage-%d", outagePort),
		url:    fmt.Sprintf("http://127.0.0.1:%d", outagePort),
	}
	n.env = append(os.Environ(), fmt.Sprintf("SPANFLOW_ES_PORT=%d", outagePort), "SPANFLOW_ES_RUNDIR="+n.rundir,
		"SPANFLOW_ES_HEAP=384m")
	// A node left by an interrupted run would keep the port.
	n.run("stop")
	out, err := n.run("start")
	if err != nil {
		testutil.NeedService(t, "a second Elasticsearch node (scripts/elasticsearch start)", fmt.Sprintf("%v: %s", err, lastLines(out)))
	}
	t.Cleanup(func() {
		n.run("stop")
		os.RemoveAll(n.rundir)
	})
	return n
}

func (n *node) run(args ...string) (string, error) {
	cmd := exec.Command(n.script, args...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// restart starts the stopped node again on its data. `scripts/elasticsearch
// start` would wipe its run directory, so this starts the same binary the
// way the script does, as the script's unprivileged user when root.
func (n *node) restart(t *testing.T) {
	t.Helper()
	homes, _ := filepath.Glob(filepath.Join(n.rundir, "elasticsearch-*"))
	if len(homes) != 1 {
		t.Fatalf("no Elasticsearch home under %s", n.rundir)
	}
	javaHome := os.Getenv("JAVA_HOME")
	if javaHome == "" {
		java, err := exec.LookPath("java")
		if err != nil {
			t.Fatalf("java: %v", err)
		}
		if java, err = filepath.EvalSymlinks(java); err != nil {
			t.Fatal(err)
		}
		javaHome = filepath.Dir(filepath.Dir(java))
	}
	args := []string{"env", "ES_JAVA_HOME=" + javaHome, "ES_JAVA_OPTS=-Xms384m -Xmx384m",
		filepath.Join(homes[0], "bin", "elasticsearch"), "-d", "-p", filepath.Join(n.rundir, "es.pid")}
	if os.Geteuid() == 0 {
		user := os.Getenv("SPANFLOW_ES_UNIX_USER")
		if user == "" {
			user = "spanflow-es"
		}
		args = append([]string{"runuser", "-u", user, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restart node: %v: %s", err, lastLines(string(out)))
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		res, err := http.Get(n.url + "/_cluster/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("node did not answer at %s within 3 minutes of the restart", n.url)
}

// TestOutage streams flows into a node that is stopped for 30 s and started
// again: every flow ends up indexed exactly once (nothing lost while it was
// down, nothing duplicated by the retries and replays).
func TestOutage(t *testing.T) {
	n := startNode(t) // skips under -short (fails under CI=true) like every cluster test
	day := time.Date(2001, 3, 2, 0, 0, 0, 0, time.UTC)
	index := setup.Layout{}.Index(day)
	c := testClient(t, n.url)

	recs, tr := genRecords(60000, day, 2)
	o, logs := newTestOutput(t, []string{n.url}, t.TempDir(), func(c *Configuration) {
		c.QueueSize = 2000
		c.Connection.Timeout = 5 * time.Second
		c.ReplayBackoffMax = 2 * time.Second
	})
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	// 40 records every 50 ms: the stream lasts longer than the outage.
	var wg sync.WaitGroup
	wg.Add(1)
	var writeErr error
	stopWriting := make(chan struct{})
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(recs); i += 40 {
			select {
			case <-tick.C:
			case <-stopWriting:
				return
			}
			if err := o.Write(recs[i:min(i+40, len(recs))]); err != nil && writeErr == nil {
				writeErr = err
			}
		}
	}()
	defer func() {
		select {
		case <-stopWriting:
		default:
			close(stopWriting)
		}
		wg.Wait()
	}()
	time.Sleep(8 * time.Second)
	if out, err := n.run("stop"); err != nil {
		t.Fatalf("stop node: %v: %s", err, out)
	}
	t.Log("node stopped")
	time.Sleep(30 * time.Second)
	n.restart(t)
	t.Log("node answering again")
	wg.Wait()
	if writeErr != nil {
		t.Fatalf("write during the outage: %v", writeErr)
	}
	waitSpoolEmpty(t, o, 3*time.Minute)
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	spooled := metric(o, "spooled")
	t.Logf("spooled %v documents, replayed %v, indexed live %v", spooled, metric(o, "replayed"), metric(o, "indexed"))
	if spooled == 0 {
		t.Errorf("nothing went to the spool: the outage was not exercised\n%s", logs)
	}
	checkTruth(t, c, index, tr)
	if dl := metric(o, "dead_letter"); dl != 0 {
		t.Errorf("%v documents dead-lettered", dl)
	}
}
