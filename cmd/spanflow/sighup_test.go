package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/bench/ipfixgen"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestCollectorSIGHUP: SIGHUP (logrotate's postrotate, a closed terminal)
// neither ends the collector nor loses its flows: it reopens the file
// output, so the flows before it are in the moved file and those after in
// a new one, and SIGTERM then stops it cleanly.
func TestCollectorSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a collector process: skipped under -short")
	}
	addr := testutil.FreeAddr(t, "udp")
	out := filepath.Join(t.TempDir(), "flows.ndjson")
	cmd := spanflowProcess(t, "collector", "run", "--metrics-listen", "", "--netflow-listen", "", "--sflow-listen", "",
		"--ipfix-tcp-listen", "", "--ipfix-listen", addr, "--rollups=false", "--output", "file:"+out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	waitLog := func(what string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case line, ok := <-logs:
				if !ok {
					t.Fatalf("collector ended before logging %q", what)
				}
				if strings.Contains(line, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q in the collector's log", what)
			}
		}
	}
	waitLog("msg=listening")
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g := ipfixgen.New(7, 10)
	if _, err := conn.Write(g.Template()); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	send := func(messages int) {
		for range messages {
			buf = g.AppendData(buf[:0])
			if _, err := conn.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	// lines counts the flow documents (not the exporter statistics).
	lines := func(path string) int {
		b, _ := os.ReadFile(path)
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.Contains(l, `"kind":"metric"`) {
				n++
			}
		}
		return n
	}
	waitLines := func(path string, n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); lines(path) < n && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if got := lines(path); got != n {
			t.Fatalf("%s holds %d documents, want %d", filepath.Base(path), got, n)
		}
	}
	send(5)
	waitLines(out, 50)
	if err := os.Rename(out, out+".1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("SIGHUP: file outputs reopened")
	send(3)
	waitLines(out, 30)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("collector after SIGHUP and SIGTERM: %v", err)
	}
	if got := lines(out + ".1"); got != 50 {
		t.Errorf("moved file holds %d documents, want 50", got)
	}
	if got := lines(out); got != 30 {
		t.Errorf("reopened file holds %d documents, want 30", got)
	}
}
