package rollup

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
)

// TestBinIndex: binIndex gives the mapping's own bin for every value,
// across the accuracies a configuration may ask for: log-uniform values
// over fifteen decades, and the values at and a few units in the last
// place around each bin boundary (where a cell's comparison decides).
func TestBinIndex(t *testing.T) {
	for _, acc := range []float64{0.01, 0.001, 0.05, 0.2} {
		m, err := mapping.NewLogarithmicMapping(acc)
		if err != nil {
			t.Fatal(err)
		}
		b := newBinIndex(m)
		check := func(v float64) {
			if v <= m.MinIndexableValue() || v >= m.MaxIndexableValue() {
				return
			}
			if got, want := b.index(v), m.Index(v); got != want {
				t.Fatalf("accuracy %v: value %v (bits %#x): bin %d, want %d", acc, v, math.Float64bits(v), got, want)
			}
		}
		rng := rand.New(rand.NewPCG(1, uint64(acc*1e6)))
		for range 300_000 {
			check(math.Pow(10, -6+15*rng.Float64()))
		}
		lo, hi := m.Index(1e-6), m.Index(1e9)
		step := max(1, (hi-lo)/3000)
		for i := lo; i <= hi; i += step {
			v := m.LowerBound(i)
			for _, dir := range []float64{math.Inf(1), math.Inf(-1)} {
				x := v
				for range 12 {
					check(x)
					x = math.Nextafter(x, dir)
				}
			}
		}
		// Values outside the cells' exponents ask the mapping.
		for _, v := range []float64{m.MinIndexableValue() * 1.5, 5e-324 * 1e10, m.MaxIndexableValue() / 1.5} {
			check(v)
		}
	}
}
