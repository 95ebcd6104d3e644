package testutil

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

// FreeAddr returns a loopback address ("127.0.0.1:port") that was free a
// moment ago on network "udp" or "tcp": for flags that take an address to
// listen on, when the test must know it beforehand.
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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
