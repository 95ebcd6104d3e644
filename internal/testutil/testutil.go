// Package testutil holds what spanflow's tests share: reading captures,
// go-cmp diffs, and the gate for tests that need a real service or the
// shared captures.
package testutil

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spanflow/spanflow/internal/pcapfile"
)

// InCI reports whether the test runs in CI (CI=true), where every gated test
// must run.
func InCI() bool { return os.Getenv("CI") == "true" }

// NeedService gates a test on a real service: it skips under -short or when
// the service is unavailable (reason non-empty), and fails instead of skipping
// when CI=true, so CI can never go green by skipping.
func NeedService(t testing.TB, service, unavailable string) {
	t.Helper()
	switch {
	case unavailable == "" && !testing.Short():
		return
	case InCI() && unavailable != "":
		t.Fatalf("%s is required in CI but unavailable: %s", service, unavailable)
	case InCI():
		t.Fatalf("%s tests cannot be skipped in CI (-short given)", service)
	case unavailable != "":
		t.Skipf("%s unavailable: %s", service, unavailable)
	default:
		t.Skipf("needs %s: skipped under -short", service)
	}
}

// Elasticsearch returns the URL of the test cluster (SPANFLOW_ES_URL, which
// `make test` sets after starting one), or skips/fails as NeedService does.
func Elasticsearch(t testing.TB) string {
	t.Helper()
	url := os.Getenv("SPANFLOW_ES_URL")
	reason := ""
	if url == "" {
		reason = "SPANFLOW_ES_URL is not set (make test starts a cluster with scripts/elasticsearch)"
	}
	NeedService(t, "Elasticsearch", reason)
	return url
}

// Command gates a test on an external program (tshark, nfdump, softflowd...)
// and returns its path.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	reason := ""
	if err != nil {
		reason = fmt.Sprintf("%s not found in PATH (.ci/run installs it)", name)
	}
	NeedService(t, name, reason)
	return path
}

// Root gates a test that needs root (network namespaces, raw sockets).
func Root(t testing.TB) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root for network namespaces"
	}
	NeedService(t, "root", reason)
}

// ModuleRoot is the directory holding go.mod.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SharedTestdata returns ../shared/testdata (the captures under non-permissive
// licences that stay outside the repository). It skips when that folder is
// absent, and fails when it is absent under CI=true. SPANFLOW_SHARED_TESTDATA
// overrides the location.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SPANFLOW_SHARED_TESTDATA")
	if dir == "" {
		dir = filepath.Join(ModuleRoot(), "..", "shared", "testdata")
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		// Fails under CI=true: the shared captures are part of CI's checkout.
		NeedService(t, "../shared/testdata", fmt.Sprintf("shared captures not found at %s", dir))
	}
	return dir
}

// Packet is one frame read from a capture.
type Packet struct {
	Data   []byte
	Time   time.Time
	Length int // original length on the wire
	// LinkType is the frame's link type (its interface's in pcapng). It is
	// a uint32 because gopacket's layers.LinkType is a byte and truncates
	// types above 255 (Linux cooked v2, 276, would read as 20).
	LinkType uint32
}

// ReadPcap reads every frame of a pcap or pcapng file.
func ReadPcap(t testing.TB, path string) []Packet {
	t.Helper()
	pkts, err := ReadCapture(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return pkts
}

// ReadCapture reads every frame of a pcap or pcapng file.
func ReadCapture(path string) ([]Packet, error) {
	r, err := pcapfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Packet
	var f pcapfile.Frame
	for {
		err := r.Next(&f)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, Packet{Data: slices.Clone(f.Data), Time: time.Unix(0, f.Timestamp).UTC(), Length: f.Length, LinkType: f.LinkType})
	}
}

// Diff returns go-cmp's diff of got and want, to be printed as (-got, +want).
func Diff(got, want any, opts ...cmp.Option) string {
	return cmp.Diff(got, want, opts...)
}

// FlowsDiff is Diff for values holding addresses (exporter/synth's flow
// lists), which go-cmp compares by value.
func FlowsDiff(got, want any) string {
	return cmp.Diff(got, want, cmpopts.EquateComparable(netip.Addr{}))
}

// Kafka returns the bootstrap address of the test broker
// (SPANFLOW_KAFKA_BROKERS, which `make test` sets after starting one with
// scripts/kafka), or skips/fails as NeedService does.
func Kafka(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("SPANFLOW_KAFKA_BROKERS")
	reason := ""
	if addr == "" {
		reason = "SPANFLOW_KAFKA_BROKERS is not set (make test starts a broker with scripts/kafka)"
	}
	NeedService(t, "Kafka", reason)
	return addr
}
