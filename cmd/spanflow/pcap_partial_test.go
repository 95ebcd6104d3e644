package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestPcapQueryPartial: of four probes, one answers, one is stopped
// (connection refused), one answers 500 (its ring is gone) and one accepts
// but never answers. `pcap query --exporter` writes the packets of the one
// that answered, names each of the three others on a line of its own with
// why, and exits with the partial status, 3; when no probe answers it
// fails (status 1) and writes no file.
func TestPcapQueryPartial(t *testing.T) {
	tshark := testutil.Command(t, "tshark")
	in := filepath.Join(testutil.SharedTestdata(t), "mirror", "ipfixprobe", "http.pcap")
	dir := filepath.Join(t.TempDir(), "ring")
	keepInRing(t, in, dir)
	up := serveRing(t, dir)
	stopped := serveRing(t, dir)
	stopped.Stop()
	broken := serveRing(t, filepath.Join(t.TempDir(), "no-ring"))
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn // accepted, never answered
		for {
			c, err := silent.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	failing := map[string]string{
		"http://" + stopped.Addr():         "connection refused",
		"http://" + broken.Addr():          "500 Internal Server Error",
		"http://" + silent.Addr().String(): "no answer within 2s",
	}
	args := []string{"pcap", "query", "--token-file", tokenFile, "--timeout", "2s", "--exporter", "http://" + up.Addr()}
	for u := range failing {
		args = append(args, "--exporter", u)
	}
	file := filepath.Join(t.TempDir(), "partial.pcap")
	// A spanflow process: its exit status is what a script sees.
	b, err := spanflowProcess(t, append(args, "-o", file)...).CombinedOutput()
	out := string(b)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitPartial {
		t.Fatalf("three of four probes failing: %v, want exit status %d\n%s", err, exitPartial, out)
	}
	if got, want := tsharkCount(t, tshark, file, ""), tsharkCount(t, tshark, in, ""); got != want || want == 0 {
		t.Errorf("partial answer: %d frames, want the answering probe's %d", got, want)
	}
	// The summary counts the exporters that answered; no block of a ring
	// was read here.
	if want := fmt.Sprintf("; 1 of %d exporters answered", len(failing)+1); !strings.Contains(out, want) || strings.Contains(out, "blocks") {
		t.Errorf("summary: want %q and no blocks:\n%s", want, out)
	}
	for u, why := range failing {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, u) {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "failed") || !strings.Contains(lines[0], why) {
			t.Errorf("probe %s: lines %q, want one saying it failed: %s\n%s", u, lines, why, out)
		}
	}
	// No probe answers: an error, and no file that looks like an empty answer.
	file = filepath.Join(t.TempDir(), "none.pcap")
	args = []string{"pcap", "query", "--token-file", tokenFile, "--timeout", "2s", "-o", file}
	for u := range failing {
		args = append(args, "--exporter", u)
	}
	b, err = spanflowProcess(t, args...).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(b), "none of the "+strconv.Itoa(len(failing))+" exporters answered") {
		t.Errorf("no probe answering: %v, want exit status 1 and why\n%s", err, b)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no probe answering: %s written (%v)", file, err)
	}
}

// TestPcapQueryAllGone: when every probe answers 410 (the window left
// their rings), the query fails saying so, exit status 1, and writes no
// file.
func TestPcapQueryAllGone(t *testing.T) {
	cfg := ring.Configuration{Dir: t.TempDir(), Size: ring.MinSize, Codec: ring.CodecNone, BlockSize: 256 << 10}
	g, err := ring.Open(reporter.NewForTest(io.Discard), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := g.NewAppender()
	a.Wait = true
	frame := make([]byte, 1000)
	ts := time.Date(2026, 12, 5, 2, 13, 0, 0, time.UTC).UnixNano()
	start := ts
	for range 4 * cfg.Size / 1000 { // a ring's size four times: the first goes
		ts += 1e6 // a frame a millisecond: the first 50 s go
		frame[0]++
		a.Append(ts, len(frame), 1, 0, 0, frame)
	}
	a.Flush()
	g.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	args := []string{"pcap", "query", "--token-file", tokenFile, "--from", strconv.FormatInt(start/1e9, 10), "--to", strconv.FormatInt(start/1e9+1, 10)}
	for range 2 {
		s := serveRing(t, cfg.Dir)
		args = append(args, "--exporter", "http://"+s.Addr())
	}
	file := filepath.Join(t.TempDir(), "gone.pcap")
	b, err := spanflowProcess(t, append(args, "-o", file)...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(b), "no exporter holds that time: the packets of that time were removed") {
		t.Errorf("window gone from every probe: %v, want exit status 1 saying so\n%s", err, b)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("window gone from every probe: %s written (%v)", file, err)
	}
}
