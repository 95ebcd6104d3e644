package ring

// A block's flow index is a Golomb-Rice coded set (as in BIP 158) of its
// flows' 32-bit keys: each key is mapped onto [0, n·2^riceBits), the values
// are sorted and their gaps written as a unary quotient and riceBits bits
// of remainder, about riceBits+1.5 bits per flow. A flow that is not in
// the block is taken for one with probability about 2^-riceBits; the
// reader then decompresses the block for nothing and finds no frame of
// it (each record carries its full 64-bit key).
const riceBits = 10

// indexValue maps a key onto [0, n<<riceBits).
func indexValue(key uint32, n uint32) uint64 {
	return uint64(key) * (uint64(n) << riceBits) >> 32
}

// appendIndex appends the coded set of keys (ascending, distinct).
func appendIndex(dst []byte, keys []uint32) []byte {
	n := uint32(len(keys))
	var acc uint64 // bits not yet written, left-aligned in nacc bits
	var nacc uint
	put := func(v uint64, bits uint) {
		for bits > 0 {
			take := min(bits, 32)
			bits -= take
			acc = acc<<take | (v>>bits)&(1<<take-1)
			nacc += take
			for nacc >= 8 {
				nacc -= 8
				dst = append(dst, byte(acc>>nacc))
			}
		}
	}
	var prev uint64
	for _, k := range keys {
		v := indexValue(k, n)
		d := v - prev // values ascend as keys do; equal values give 0
		prev = v
		for q := d >> riceBits; q > 0; q-- {
			put(1, 1)
		}
		put(0, 1)
		put(d&(1<<riceBits-1), riceBits)
	}
	if nacc > 0 {
		dst = append(dst, byte(acc<<(8-nacc)))
	}
	return dst
}

// indexHas says whether the coded set of n keys in idx may hold key. A
// damaged index answers "may" rather than fail: the records decide.
func indexHas(idx []byte, n uint32, key uint32) bool {
	if n == 0 {
		return false
	}
	target := indexValue(key, n)
	pos, end := uint(0), uint(len(idx))*8
	bit := func() (uint64, bool) {
		if pos >= end {
			return 0, false
		}
		b := uint64(idx[pos>>3]>>(7-pos&7)) & 1
		pos++
		return b, true
	}
	var v uint64
	for range n {
		var q uint64
		for {
			b, ok := bit()
			if !ok {
				return true
			}
			if b == 0 {
				break
			}
			q++
		}
		var r uint64
		for range riceBits {
			b, ok := bit()
			if !ok {
				return true
			}
			r = r<<1 | b
		}
		v += q<<riceBits | r
		if v == target {
			return true
		}
		if v > target {
			return false
		}
	}
	return false
}
