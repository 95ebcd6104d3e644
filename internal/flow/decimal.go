package flow

import (
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
)

// appendUint writes v in decimal as strconv.AppendUint(b, v, 10) does,
// straight into b: strconv formats into a buffer of its own and copies it
// (or copies a string for numbers under 100): 14% of BenchmarkHandle's
// profile. The 14 numbers of a typical flow document take 55-58 ns this
// way, 83-89 through strconv.
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	if v < 100 {
		return append(b, digitPairs[2*v], digitPairs[2*v+1])
	}
	n := decimalLen(v)
	l := len(b)
	if cap(b)-l < n {
		b = slices.Grow(b, n)
	}
	b = b[:l+n]
	d := b[l:]
	i := n
	for v >= 100 {
		q := v / 100
		r := v - q*100
		i -= 2
		d[i], d[i+1] = digitPairs[2*r], digitPairs[2*r+1]
		v = q
	}
	if v >= 10 {
		d[0], d[1] = digitPairs[2*v], digitPairs[2*v+1]
	} else {
		d[0] = byte('0' + v)
	}
	return b
}

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// decimalLen is the number of decimal digits of v (1 for 0).
func decimalLen(v uint64) int {
	// log10(2) ~ 1233/4096: t digits, or t+1 from 10^t on.
	t := bits.Len64(v) * 1233 >> 12
	if v >= pow10[t] {
		return t + 1
	}
	return max(t, 1)
}

var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// appendAddr writes a in text as a.AppendTo(b) does. IPv4 addresses are
// written from a table of the 256 octets' digits, three bytes at a time
// whatever their length: netip's formatter branches on each octet's
// length, and a stream's addresses mispredict those branches: 20.6 ns an
// address against 9.3 here (BenchmarkAppendAddr, random addresses).
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.Is4() {
		return a.AppendTo(b)
	}
	v := a.As4()
	l := len(b)
	b = append(b, "255.255.255.255"...)
	d := b[l:]
	n := 0
	for k, o := range v {
		if k > 0 {
			d[n] = '.'
			n++
		}
		e := &octetDigits[o]
		// The octet's digits, and whatever follows them in the table's
		// entry, overwritten by the next octet or cut below.
		d[n], d[n+1], d[n+2] = e[0], e[1], e[2]
		n += int(e[3])
	}
	return b[:l+n]
}

// octetDigits holds each octet's decimal digits, left-aligned, and their
// number in the last byte.
var octetDigits = func() (t [256][4]byte) {
	for i := range t {
		s := strconv.Itoa(i)
		copy(t[i][:], s)
		t[i][3] = byte(len(s))
	}
	return t
}()
