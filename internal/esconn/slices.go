package esconn

import "io"

// Slices is a request body made of byte slices that a connection can
// write whole, with one writev, rather than read through a buffer. Take
// hands them over and leaves the reader at its end; Len is how many bytes
// are left.
type Slices interface {
	Len() int64
	Take() [][]byte
}

// SlicesReader reads byte slices in turn, without copying them into one
// buffer first, and is a Slices. The slices are not changed, so that
// another SlicesReader can read them again (a request's GetBody, for the
// transport's retries).
type SlicesReader struct {
	parts [][]byte
	off   int // in parts[0]
}

// NewSlicesReader returns a reader of parts.
func NewSlicesReader(parts [][]byte) *SlicesReader {
	return &SlicesReader{parts: parts}
}

func (r *SlicesReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(r.parts) > 0 {
		c := copy(p[n:], r.parts[0][r.off:])
		n += c
		if r.off += c; r.off == len(r.parts[0]) {
			r.parts, r.off = r.parts[1:], 0
		}
	}
	if n == 0 && len(r.parts) == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Close does nothing: a SlicesReader is a request body.
func (r *SlicesReader) Close() error { return nil }

// Len is how many bytes are left to read.
func (r *SlicesReader) Len() int64 {
	n := -r.off
	for _, p := range r.parts {
		n += len(p)
	}
	return int64(n)
}

// Take returns what is left to read, as slices, and leaves the reader at
// its end.
func (r *SlicesReader) Take() [][]byte {
	var out [][]byte
	if len(r.parts) > 0 {
		out = make([][]byte, 0, len(r.parts))
		out = append(out, r.parts[0][r.off:])
		out = append(out, r.parts[1:]...)
	}
	r.parts, r.off = nil, 0
	return out
}
