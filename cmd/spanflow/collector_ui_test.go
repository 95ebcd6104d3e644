package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestCollectorUI: `collector run --ui ADDR` serves the page and its
// stream; an address beyond loopback without TLS and a token is refused
// with one line naming the settings.
func TestCollectorUI(t *testing.T) {
	_, err := run(t, "collector", "run", "--ui", "0.0.0.0:18443", "--metrics-listen", "", "--netflow-listen", "127.0.0.1:0")
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "ui-tls-cert-file") || !strings.Contains(err.Error(), "ui-token-file") {
		t.Errorf("--ui 0.0.0.0:18443: %v; want one line asking for ui-tls-cert-file and ui-token-file", err)
	}
	if testing.Short() {
		t.Skip("starts a collector process: skipped under -short")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startCollector(t, "--netflow-listen", "127.0.0.1:0", "--ui", addr)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<script src="noc.js"`) {
		t.Fatalf("GET /: %s\n%.300s", resp.Status, page)
	}
	resp, err = http.Get("http://" + addr + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() && len(events) < 2 {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
	}
	if strings.Join(events, ",") != "hello,frame" {
		t.Errorf("stream events %v, want hello then a frame every tick", events)
	}
}
