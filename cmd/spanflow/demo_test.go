package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/testutil"
)

// The command as make demo runs it (shorter): it exits 0, prints the
// progress, the summary and where the flows are.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 s of traffic: skipped under -short")
	}
	file := filepath.Join(t.TempDir(), "flows.ndjson")
	pcap := filepath.Join(t.TempDir(), "mirror.pcap")
	out, err := run(t, "demo", "--duration", "3s", "--rate", "1000", "--port", "0", "--vcenter-port", "0", "--output", file, "--write-pcap", pcap)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	// The traffic written out gives the exporter the same packets and, with
	// the demo's timeouts, the same flows.
	m := regexp.MustCompile(`ESXi hosts: ([0-9,]+) packets`).FindStringSubmatch(out)
	f := regexp.MustCompile(`exporter: ([0-9,]+) flows`).FindStringSubmatch(out)
	if m == nil || f == nil {
		t.Fatalf("no packet or flow count in the demo's output:\n%s", out)
	}
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	xout, err := run(t, "exporter", "run", "--pcap", pcap, "--collector", sink.LocalAddr().String(), "--active-timeout", "10s", "--idle-timeout", "3s")
	// The exporter's summary groups its numbers as the demo does.
	want := fmt.Sprintf("spanflow exporter: %s packets", m[1])
	wantFlows := fmt.Sprintf(" %s flows exported", f[1])
	if err != nil || !strings.Contains(xout, want) || !strings.Contains(xout, wantFlows) {
		t.Errorf("exporter on the written traffic: %v\n%s\nwant %q and %q", err, xout, want, wantFlows)
	}
	for _, want := range []string{"simulated vCenter", "collector loaded 18 VMs", "Top VM conversations", "East-west / north-south",
		"Top lines", "TCP by project", file} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}

func TestDemoPortInUse(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.LocalAddr().(*net.UDPAddr).Port)
	out, err := run(t, "demo", "--port", port, "--vcenter-port", "0")
	if err == nil {
		t.Fatalf("demo started on a port in use:\n%s", out)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "--port") || !strings.Contains(msg, port) {
		t.Errorf("error %q: want one line naming --port and %s", msg, port)
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--rate", "0"}, {"--duration", "1s"}, {"--port", "70000"}, {"--es-url", "localhost:9200"}} {
		_, err := run(t, append([]string{"demo", "--vcenter-port", "0"}, args...)...)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("demo %v: error %v, want one line naming %s", args, err, args[0])
		}
	}
}

// Ctrl-C on the real process: SIGINT ends the traffic, the summary is
// printed and the process exits 0 with its ports released. The test binary
// runs itself as the spanflow command in a child process.
func TestDemoSIGINT(t *testing.T) {
	if args := os.Getenv("SPANFLOW_TEST_DEMO_ARGS"); args != "" {
		app := newApp()
		if err := app.Run(append([]string{"spanflow"}, strings.Fields(args)...)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if testing.Short() {
		t.Skip("runs the demo in a child process: skipped under -short")
	}
	// The port is chosen free and released for the child to bind; a test
	// in another package can take it in between, so a child that says its
	// port is in use before it starts is run again on another.
	var port int
	var stdout bytes.Buffer
	for attempt := 0; ; attempt++ {
		var err error
		if port, err = testutil.FreePort("udp"); err != nil {
			t.Fatal(err)
		}
		stdout.Reset()
		signalled, errLines, err := runDemoUntilSIGINT(t, port, &stdout)
		if !signalled && attempt < 4 && strings.Contains(strings.Join(errLines, "\n"), "already in use") {
			continue
		}
		if !signalled || err != nil {
			t.Fatalf("signalled %v, exit: %v\nstderr:\n%s", signalled, err, strings.Join(errLines, "\n"))
		}
		break
	}
	if !strings.Contains(stdout.String(), "traffic until interrupted") || !strings.Contains(stdout.String(), "TCP by project") {
		t.Errorf("no summary after SIGINT:\n%s", stdout.String())
	}
	if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Errorf("IPFIX port still held: %v", err)
	} else {
		c.Close()
	}
}

// make demo must work on a machine with only Go: without a C compiler, Go
// builds with cgo off, so the binary must build that way too.
func TestBuildsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds spanflow: skipped under -short")
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/spanflow: %v\n%s", err, out)
	}
}

// `make demo` on a clean build cache (the first build compiles every
// dependency, minutes on a 2-core machine) says what it is doing at once,
// then counts the packages as they compile, instead of a silent go run.
// The build is stopped once its progress shows.
func TestMakeDemoSpeaksAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cold build: skipped under -short")
	}
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cmd := exec.Command(makePath, "-C", root, "--no-print-directory", "demo", "BIN="+filepath.Join(tmp, "spanflow"))
	cmd.Env = append(os.Environ(), "GOCACHE="+filepath.Join(tmp, "gocache"), "GOFLAGS=-p=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // make, go build and the compilers
		cmd.Wait()
	}()
	type line struct {
		text string
		at   time.Duration
	}
	lines := make(chan line, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- line{sc.Text(), time.Since(start)}
		}
		close(lines)
	}()
	first, ok := <-lines
	if !ok {
		t.Fatal("make demo printed nothing")
	}
	if first.at > 5*time.Second || !strings.Contains(first.text, "building") || !strings.Contains(first.text, "first build") {
		t.Fatalf("first line after %s: %q; want, within 5 s, one saying the first build is under way and how long it takes", first.at, first.text)
	}
	progress := regexp.MustCompile(`compiled [0-9]+/[0-9]+ packages`)
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("make demo ended before any build progress")
			}
			if progress.MatchString(l.text) {
				t.Logf("first line after %s, progress after %s: %q", first.at.Round(time.Millisecond), l.at.Round(time.Millisecond), l.text)
				return
			}
		case <-timeout:
			t.Fatal("no build progress within 2 minutes")
		}
	}
}

// runDemoUntilSIGINT runs this test binary as `spanflow demo` on the IPFIX
// port, interrupts it once it reports its first two seconds of traffic, and
// waits for it to exit.
func runDemoUntilSIGINT(t *testing.T, port int, stdout *bytes.Buffer) (signalled bool, errLines []string, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDemoSIGINT$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("SPANFLOW_TEST_DEMO_ARGS=demo --duration 1m --port %d --vcenter-port 0 --output %s",
		port, filepath.Join(t.TempDir(), "flows.ndjson")))
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		errLines = append(errLines, sc.Text())
		if !signalled && strings.Contains(sc.Text(), "packets") && strings.Contains(sc.Text(), "2s/1m") {
			cmd.Process.Signal(os.Interrupt)
			signalled = true
		}
	}
	return signalled, errLines, cmd.Wait()
}
