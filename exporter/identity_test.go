package exporter

import (
	"os"
	"strings"
	"testing"
)

// TestIdentity: the probe name and packets URL sent in IPFIX: the
// settings; with packet-ring-listen, the host name and the listen address
// (the host name for an unspecified one, https with a certificate); none
// without either. A URL that is not http(s) is refused.
func TestIdentity(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct {
		name, url, listen, cert string
		wantName, wantURL       string
	}{
		{"", "", "", "", "", ""},
		{"probe-a", "", "", "", "probe-a", ""},
		{"", "", "127.0.0.1:9109", "", host, "http://127.0.0.1:9109"},
		{"", "", "0.0.0.0:9109", "c.pem", host, "https://" + host + ":9109"},
		{"", "", "[::]:9109", "c.pem", host, "https://" + host + ":9109"},
		{"", "", "[2001:db8::1]:9109", "c.pem", host, "https://[2001:db8::1]:9109"},
		{"probe-b", "https://probe-b.example:443", "0.0.0.0:9109", "c.pem", "probe-b", "https://probe-b.example:443"},
	} {
		cfg := DefaultConfiguration()
		cfg.ProbeName, cfg.PacketRingURL, cfg.PacketRingListen, cfg.PacketRingCertFile = c.name, c.url, c.listen, c.cert
		if name, url := cfg.Identity(); name != c.wantName || url != c.wantURL {
			t.Errorf("%+v: identity %q %q, want %q %q", c, name, url, c.wantName, c.wantURL)
		}
	}
	cfg := DefaultConfiguration()
	cfg.Pcap, cfg.PacketRingURL = "x.pcap", "probe-a:9109"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "packet-ring-url") {
		t.Errorf("a URL without a scheme: %v", err)
	}
	cfg.PacketRingURL, cfg.ProbeName = "", strings.Repeat("p", 300)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "probe-name") {
		t.Errorf("a 300-byte probe name: %v", err)
	}
}
