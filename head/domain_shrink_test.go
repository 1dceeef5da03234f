package head

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sparseReLU draws n rows of d ReLU features max(0, z·scale + bias_j + shift):
// with biases down to -3 some features fire in a few percent of rows only,
// as pooled CNN features of small face or photo sets do.
func sparseReLU(rng *rand.Rand, bias []float64, n int, scale, shift float64) Data {
	d := len(bias)
	x := make([]float32, n*d)
	for i := range n {
		for j, b := range bias {
			x[i*d+j] = float32(math.Max(0, rng.NormFloat64()*scale+b+shift))
		}
	}
	return Data{X: x, N: n, D: d}
}

// TestDomainFewRows: held-out rows drawn like the training rows stay inside
// the domain even with far fewer rows than features (21 faces of 256
// features flagged 3 of 21 new faces as outside before Shrink), while rows
// from another distribution are all outside.
func TestDomainFewRows(t *testing.T) {
	const d = 256
	rng := rand.New(rand.NewPCG(1, 2))
	bias := make([]float64, d)
	for j := range bias {
		bias[j] = -3 * rng.Float64()
	}
	for _, n := range []int{21, 60, 2000} {
		train := sparseReLU(rng, bias, n, 1, 0)
		m := &Model{}
		m.Mean, m.Std = standardStats(train, 1)
		m.setDomain(train)
		outside := func(data Data) int {
			k := 0
			for i := 0; i < data.Rows(); i++ {
				if m.Distance(data.Row(i)) > m.Domain.Limit {
					k++
				}
			}
			return k
		}
		same := sparseReLU(rng, bias, 500, 1, 0)
		other := sparseReLU(rng, bias, 100, 3, 1.5)
		if k := outside(same); k > 5 {
			t.Errorf("%d training rows: %d of 500 rows like the training rows are outside the domain (shrink %.3g)", n, k, m.Domain.Shrink)
		}
		if k := outside(other); k != 100 {
			t.Errorf("%d training rows: only %d of 100 rows of another distribution are outside", n, k)
		}
	}
}
