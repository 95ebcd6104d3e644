package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr returns a loopback address ("127.0.0.1:port") that was free a
// moment ago on network "udp" or "tcp": for flags that take an address to
// listen on, when the test must know it beforehand. See FreePort.
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	port, err := FreePort(network)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// FreePort returns a loopback port free a moment ago on network "udp" or
// "tcp", for a listener started later (often by another program). It is
// taken below the kernel's ephemeral range (ip_local_port_range), at random:
// a port the kernel handed out for ":0" and released could be handed to
// any other socket of the machine (every outgoing TCP connection of a
// parallel test takes one) before the program binds it; below the range only
// another explicit choice can take it.
func FreePort(network string) (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const first = 20000 // above the demo's fixed defaults (14739, 18989)
	for i := 0; low-first >= 1000 && i < 100; i++ {
		port := first + rand.IntN(low-first)
		if portFree(network, port) {
			return port, nil
		}
	}
	// A machine whose ephemeral range leaves no room below it: the kernel's.
	return kernelPort(network)
}

func portFree(network string, port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if network == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func kernelPort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Performer is what ESRequest needs of an Elasticsearch client
// (*elasticsearch.Client has it).
type Performer interface {
	Perform(*http.Request) (*http.Response, error)
}

// ESRequest sends one request to the cluster behind client and returns the
// answer's body; a transport error or a status of 300 or more fails the test
// with the start of the answer. ctype may be empty, body nil.
func ESRequest(t testing.TB, client Performer, method, path, ctype string, body []byte) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := client.Perform(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s %.500s", method, path, res.Status, out)
	}
	return out
}
