package main

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The command as make demo runs it (shorter): it exits 0, prints the
// progress, the summary and where the flows are.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3 s of traffic: skipped under -short")
	}
	file := filepath.Join(t.TempDir(), "flows.ndjson")
	out, err := run(t, "demo", "--duration", "3s", "--rate", "1000", "--port", "0", "--vcenter-port", "0", "--output", file)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
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
