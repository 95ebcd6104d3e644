package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spanflow/spanflow/internal/testutil"
)

// TestExporterClientCertificate: --cert-file and --key-file (or the keys
// of the same names) set the exporter's client certificate; one without
// the other, an unreadable file or a key of another certificate is refused
// with one line naming the file.
func TestExporterClientCertificate(t *testing.T) {
	ca := testutil.NewCA(t, "exporters")
	a, b := ca.Client(t, "esxi-01"), ca.Client(t, "esxi-02")
	dir := t.TempDir()
	file := filepath.Join(dir, "exporter.yaml")
	os.WriteFile(file, []byte("cert-file: "+a.CertFile+"\nkey-file: "+a.KeyFile+"\n"), 0o644)
	base := []string{"--pcap", "x.pcap", "--collector", "tls://127.0.0.1:4740"}
	if cfg := runConfiguration(t, append(base, "--cert-file", a.CertFile, "--key-file", a.KeyFile)...); cfg.CertFile != a.CertFile || cfg.KeyFile != a.KeyFile {
		t.Errorf("from flags: cert-file %q, key-file %q", cfg.CertFile, cfg.KeyFile)
	}
	if cfg := runConfiguration(t, append(base, "--config", file)...); cfg.CertFile != a.CertFile || cfg.KeyFile != a.KeyFile {
		t.Errorf("from the file: cert-file %q, key-file %q", cfg.CertFile, cfg.KeyFile)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--cert-file", a.CertFile}, "certificate file given without a key file"},
		{"key without cert", []string{"--key-file", a.KeyFile}, "key file given without a certificate file"},
		{"missing cert", []string{"--cert-file", filepath.Join(dir, "none.pem"), "--key-file", a.KeyFile}, "read certificate file"},
		{"key of another", []string{"--cert-file", a.CertFile, "--key-file", b.KeyFile}, "key file " + b.KeyFile + " with certificate file " + a.CertFile},
		{"not a certificate", []string{"--cert-file", a.KeyFile, "--key-file", a.KeyFile}, "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, append([]string{"exporter", "run"}, append(base, tc.args...)...)...)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, tc.want)
			}
		})
	}
}
