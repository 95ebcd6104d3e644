package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// netflowV5 is a NetFlow v5 datagram of the flows numbered from..from+n-1
// (n ≤ 30), each with its own source address and port: distinct documents.
func netflowV5(from, n int) []byte {
	b := binary.BigEndian.AppendUint16(nil, 5)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, 100000) // uptime, ms
	b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(from)) // flow sequence
	b = append(b, 0, 0, 0, 0)                          // engine type and id, sampling
	for i := from; i < from+n; i++ {
		b = binary.BigEndian.AppendUint32(b, 0x0a000000|uint32(i)) // source
		b = binary.BigEndian.AppendUint32(b, 0x0a640001)           // destination
		b = binary.BigEndian.AppendUint32(b, 0)                    // next hop
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint16(b, 2)
		b = binary.BigEndian.AppendUint32(b, 3)                // packets
		b = binary.BigEndian.AppendUint32(b, uint32(100+i))    // bytes
		b = binary.BigEndian.AppendUint32(b, 90000)            // first
		b = binary.BigEndian.AppendUint32(b, 99000)            // last
		b = binary.BigEndian.AppendUint16(b, uint16(1024+i))   // source port
		b = binary.BigEndian.AppendUint16(b, 443)              // destination port
		b = append(b, 0, 0x12, 6, 0, 0, 0, 0, 0, 24, 24, 0, 0) // pad, flags, TCP, tos, AS, masks, pad
	}
	return b
}

// spooledLines counts the documents in the spool directory's segments.
func spooledLines(t *testing.T, dir string) int {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
	n := 0
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		n += bytes.Count(b, []byte{'\n'})
	}
	return n
}

// TestSpoolDirOneProcessAtATime: a collector spools (its cluster does not
// answer) and an indexer is started on the same host with the same
// --es-spool-dir (before, both defaulted to /var/lib/spanflow/es-spool).
// The indexer must refuse to start, in one line naming the directory, the
// collector's pid and the setting to change, and every flow the collector
// took must still be in the spool when it stops. Before, the indexer
// replayed the collector's segments into its own cluster and removed them,
// the one the collector was still appending to included: 2,000 of 5,000
// flows went to a deleted file while the collector's stop summary said
// "0 lost, 5001 kept in the spool".
func TestSpoolDirOneProcessAtATime(t *testing.T) {
	url := testutil.Elasticsearch(t)
	spool := t.TempDir()
	netflow := testutil.FreeAddr(t, "udp")
	var logs testutil.SyncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	col, stop := startListeningCollector(t, &logs, "--netflow-listen", netflow, "--output", "elasticsearch",
		"--es-url", "http://"+testutil.FreeAddr(t, "tcp"), "--es-spool-dir", spool)
	conn, err := net.Dial("udp", netflow)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	send := func(n int) {
		t.Helper()
		for ; n > 0; n -= 30 {
			if _, err := conn.Write(netflowV5(sent, min(n, 30))); err != nil {
				t.Fatal(err)
			}
			sent += min(n, 30)
			time.Sleep(time.Millisecond) // not past the socket's buffer
		}
	}
	waitSpooled := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); spooledLines(t, spool) < want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the spool holds %d documents, want %d", spooledLines(t, spool), want)
			}
		}
	}
	send(1500)
	waitSpooled(1500)

	refusedInOneLine(t, &logs, col.Process.Pid, []string{"indexer", "run", "--metrics-listen", "", "--kafka-brokers", testutil.FreeAddr(t, "tcp"),
		"--es-url", url, "--es-spool-dir", spool}, spool, "--es-spool-dir")

	send(1000)
	waitSpooled(2500)
	stop()
	if got := spooledLines(t, spool); got != sent {
		t.Errorf("the spool holds %d documents after the collector stopped; it took %d", got, sent)
	}
}

// TestDeadLetterFileOneProcessAtATime: a collector runs with
// --es-dead-letter-file FILE, and an indexer, then a second collector, are
// started on the same host with the same file (each with its own spool
// directory, which its lock lets through). Each must refuse to start, in one
// line naming the file, the running collector's pid and the setting to
// change. Before, both started and appended to the file without any lock.
func TestDeadLetterFileOneProcessAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts spanflow processes: skipped under -short")
	}
	dead := filepath.Join(t.TempDir(), "refused.ndjson")
	var logs testutil.SyncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	col, stop := startListeningCollector(t, &logs, "--netflow-listen", testutil.FreeAddr(t, "udp"),
		"--output", "elasticsearch", "--es-url", "http://"+testutil.FreeAddr(t, "tcp"), "--es-spool-dir", t.TempDir(),
		"--es-dead-letter-file", dead)

	for _, args := range [][]string{
		{"indexer", "run", "--metrics-listen", "", "--kafka-brokers", testutil.FreeAddr(t, "tcp"),
			"--es-url", "http://" + testutil.FreeAddr(t, "tcp"), "--es-spool-dir", t.TempDir(), "--es-dead-letter-file", dead},
		{"collector", "run", "--netflow-listen", testutil.FreeAddr(t, "udp"), "--ipfix-listen", "", "--ipfix-tcp-listen", "",
			"--sflow-listen", "", "--metrics-listen", "", "--output", "elasticsearch", "--es-url", "http://" + testutil.FreeAddr(t, "tcp"),
			"--es-spool-dir", t.TempDir(), "--es-dead-letter-file", dead},
	} {
		refusedInOneLine(t, &logs, col.Process.Pid, args, dead, "--es-dead-letter-file")
	}

	stop()
}

// startListeningCollector starts `spanflow collector run` with only the
// listeners args give (IPFIX, sFlow and metrics off, no exporter stats),
// its log into logs, and waits until it listens. stop interrupts it and
// fails the test unless it exits cleanly within 60 s.
func startListeningCollector(t *testing.T, logs *testutil.SyncBuffer, args ...string) (col *exec.Cmd, stop func()) {
	t.Helper()
	col = spanflowProcess(t, append([]string{"collector", "run", "--ipfix-listen", "", "--ipfix-tcp-listen", "",
		"--sflow-listen", "", "--metrics-listen", "", "--exporter-stats-interval", "0"}, args...)...)
	stderr, err := col.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	colExited := make(chan error, 1)
	p := &processHandle{cmd: col, ready: make(chan struct{})}
	go func() {
		p.watch(io.TeeReader(stderr, prefixWriter{logs, "collector: "}), "msg=listening")
		colExited <- col.Wait()
	}()
	t.Cleanup(func() { col.Process.Kill() })
	select {
	case <-p.ready:
	case <-time.After(60 * time.Second):
		t.Fatal("collector not listening within 60s")
	}
	return col, func() {
		t.Helper()
		col.Process.Signal(os.Interrupt)
		select {
		case err := <-colExited:
			if err != nil {
				t.Fatalf("collector: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("collector did not stop within 60s")
		}
	}
}

// refusedInOneLine runs spanflow with args, which must refuse to start
// within 20 s: status 1, one line naming what (a path the process with
// pid holds), that pid and the setting to change.
func refusedInOneLine(t *testing.T, logs *testutil.SyncBuffer, pid int, args []string, what, setting string) {
	t.Helper()
	p := spanflowProcess(t, args...)
	var out testutil.SyncBuffer
	p.Stdout, p.Stderr = &out, &out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()
	select {
	case err := <-exited:
		got := strings.TrimSpace(out.String())
		for _, want := range []string{what, fmt.Sprintf("process %d", pid), setting} {
			if !strings.Contains(got, want) {
				t.Errorf("%s's error %q does not say %q", args[0], got, want)
			}
		}
		if err == nil || strings.Contains(got, "\n") {
			t.Errorf("%s on %s in use: exit %v, output %q; want status 1 and one line", args[0], what, err, got)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("the %s runs on %s, which the process %d holds", args[0], what, pid)
		p.Process.Signal(os.Interrupt)
		<-exited
		logs.Write([]byte(args[0] + ": " + out.String()))
	}
}
