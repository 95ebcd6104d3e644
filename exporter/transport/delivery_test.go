package transport_test

import (
	"net"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/internal/verify"
	"github.com/spanflow/spanflow/exporter/transport"
	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestTLSClientCertificate: a spanflow collector that requires client
// certificates decodes the flows of an exporter that presents one; an
// exporter without one is refused (with TLS 1.3 only after its handshake
// ended), and its records count as dropped, not as sent.
func TestTLSClientCertificate(t *testing.T) {
	collectorCA, exportersCA := testutil.NewCA(t, "collectors"), testutil.NewCA(t, "exporters")
	server := collectorCA.Server(t, "collector")
	cfg := verify.StreamConfiguration("")
	cfg.TLS, cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = []string{"127.0.0.1:0"}, server.CertFile, server.KeyFile, exportersCA.File
	col := verify.NewCollector(t, cfg)
	client := exportersCA.Client(t, "esxi-01")
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tls://" + col.Addrs[0]},
		CAFile: collectorCA.File, CertFile: client.CertFile, KeyFile: client.KeyFile, QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, tr)
	s.send(t, 500)
	s.enc.Close(time.Now())
	tr.Close()
	waitFor(t, "500 flows decoded", func() bool { return col.Records() == 500 })
	if st := tr.TCP()[0].Stats(); st.Records != 500 || st.DroppedRecords != 0 || st.Connects != 1 {
		t.Errorf("with a certificate: stats %+v, want 500 records sent in one connection", st)
	}

	st := sendRefused(t, transport.Configuration{Collectors: []string{"tls://" + col.Addrs[0]}, CAFile: collectorCA.File, QueueSize: 100}, 300)
	t.Logf("without a certificate: %+v", st)
	if st.Records != 0 || st.Messages != 0 || st.DroppedRecords != 300 || st.Connects != 0 {
		t.Errorf("without a certificate: stats %+v, want nothing sent, no connection and the 300 records dropped", st)
	}
	if n := col.Records(); n != 500 {
		t.Errorf("%d flows decoded, want only the 500 of the exporter with a certificate", n)
	}
}

// TestCloseWaitsForCollector: Close with the collector away keeps trying;
// the collector coming back within the drain time gets every record.
func TestCloseWaitsForCollector(t *testing.T) {
	col := newTCPCollector(t, nil)
	col.kill()
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tcp://" + col.addr}, QueueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, tr)
	s.send(t, 1000)
	s.enc.Close(time.Now())
	back := make(chan struct{})
	go func() {
		time.Sleep(transport.DrainTimeout / 2)
		col.start()
		close(back)
	}()
	start := time.Now()
	tr.Close()
	took := time.Since(start)
	<-back
	col.settle()
	st := tr.TCP()[0].Stats()
	t.Logf("Close took %v; stats %+v", took, st)
	seen := col.flows(t)
	for port := uint16(1); port < s.next; port++ {
		if seen[port] != 1 {
			t.Errorf("record %d received %d times", port, seen[port])
		}
	}
	if st.Records != 1000 || st.DroppedRecords != 0 {
		t.Errorf("stats %+v: want the 1000 records sent", st)
	}
	if took > transport.DrainTimeout+time.Second {
		t.Errorf("Close took %v, more than the drain time %v", took, transport.DrainTimeout)
	}
}

// TestCollectorHalfCloses: a collector that stops by closing its side of
// the connection, then reading to the end, gets every record exactly
// once: the exporter waits for the acknowledgement of what it wrote before
// deciding what to send again on its next connection. (Over loopback the
// acknowledgements come at once, so this checks the outcome more than the
// wait.)
func TestCollectorHalfCloses(t *testing.T) {
	col := newTCPCollector(t, nil)
	tr, err := transport.New(reporter.NewForTest(nil), transport.Configuration{Collectors: []string{"tcp://" + col.addr}, QueueSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, tr)
	for i := 0; i < 100; i++ {
		s.send(t, 50)
		if i == 50 {
			col.mu.Lock()
			col.conn[0].(*net.TCPConn).CloseWrite()
			col.mu.Unlock()
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.enc.Close(time.Now())
	tr.Close()
	col.settle()
	st := tr.TCP()[0].Stats()
	t.Logf("stats %+v", st)
	seen := col.flows(t)
	for port := uint16(1); port < s.next; port++ {
		if seen[port] != 1 {
			t.Errorf("record %d received %d times", port, seen[port])
		}
	}
	if st.Records != uint64(s.next-1) || st.DroppedRecords != 0 || st.Connects != 2 || st.Resets != 0 {
		t.Errorf("stats %+v: want all %d records sent over 2 connections, no reset", st, s.next-1)
	}
}
