package esconn

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// takeSpy is a SlicesReader that records whether its slices were taken
// (written with writev) rather than read.
type takeSpy struct {
	*SlicesReader
	took bool
}

func (s *takeSpy) Take() [][]byte {
	s.took = true
	return s.SlicesReader.Take()
}

// rawPair returns a rawConn dialled to a listener, and the accepted end.
func rawPair(t *testing.T) (*rawConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	rc, ok := wrapRaw(c).(*rawConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	return rc, peer
}

// TestRawConnCarriesEveryByte: bodies far larger than the socket buffers
// (so that writes wait in the poller, EAGAIN), written whole, in slices of
// random sizes (more than one writev takes, empty ones among them) and
// through io.Copy, arrive byte for byte; what the peer sends is read back
// the same way, then io.EOF when it closes.
func TestRawConnCarriesEveryByte(t *testing.T) {
	c, peer := rawPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var parts [][]byte
	var all []byte
	for range 3000 {
		p := make([]byte, rng.IntN(4096))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		parts = append(parts, p)
		all = append(all, p...)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(3*len(all))))
		got <- b
	}()
	if n, err := c.Write(all); err != nil || n != len(all) {
		t.Fatalf("Write: %d, %v; want %d", n, err, len(all))
	}
	body := &takeSpy{SlicesReader: NewSlicesReader(parts)}
	lr := &io.LimitedReader{R: body, N: int64(len(all))}
	if n, err := c.ReadFrom(lr); err != nil || n != int64(len(all)) || lr.N != 0 || !body.took {
		t.Fatalf("ReadFrom(slices): %d, %v, %d left, took %v; want %d, all, by writev", n, err, lr.N, body.took, len(all))
	}
	if n, err := c.ReadFrom(bytes.NewReader(all)); err != nil || n != int64(len(all)) {
		t.Fatalf("ReadFrom(reader): %d, %v", n, err)
	}
	b := <-got
	if want := bytes.Repeat(all, 3); !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes (sha256 %x), want %d (%x)", len(b), sha256.Sum256(b), len(want), sha256.Sum256(want))
	}

	go func() {
		peer.Write(all)
		peer.Close()
	}()
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, all) {
		t.Fatalf("read back %d bytes, %v; want %d, then EOF", len(back), err, len(all))
	}
	if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v", n, err)
	}
}

// TestRawConnDeadlineAndClose: a read deadline ends a read that waits with
// a timeout error, as net's connections give; a closed connection says so.
func TestRawConnDeadlineAndClose(t *testing.T) {
	c, _ := rawPair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
}

// TestConsume: dropping n bytes from slices leaves the rest, whatever
// slice boundary n falls on.
func TestConsume(t *testing.T) {
	parts := [][]byte{[]byte("abc"), {}, []byte("de"), []byte("f")}
	for n := 0; n <= 6; n++ {
		cp := append([][]byte(nil), parts...)
		if got, want := string(bytes.Join(consume(cp, n), nil)), "abcdef"[n:]; got != want {
			t.Errorf("consume %d: %q, want %q", n, got, want)
		}
	}
}
