package esconn

// Slices is a request body made of byte slices that a connection can
// write whole, with one writev, rather than read through a buffer. Take
// hands them over and leaves the reader at its end; Len is how many bytes
// are left.
type Slices interface {
	Len() int64
	Take() [][]byte
}
