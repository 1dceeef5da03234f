package head

import (
	"math"
	"math/rand/v2"
)

// mixture returns n rows of a k-class Gaussian mixture in d dimensions:
// class means drawn with spread sep, unit noise, plus a per-feature offset
// and scale so that standardisation matters.
func mixture(n, d, k int, sep float64, seed uint64) Data {
	rng := rand.New(rand.NewPCG(seed, 1))
	centres := make([]float64, k*d)
	for i := range centres {
		centres[i] = rng.NormFloat64() * sep
	}
	off := make([]float64, d)
	scale := make([]float64, d)
	for j := range off {
		off[j] = rng.NormFloat64() * 5
		scale[j] = math.Exp(rng.NormFloat64())
	}
	X := make([]float32, n*d)
	Y := make([]int32, n)
	for i := 0; i < n; i++ {
		y := rng.IntN(k)
		Y[i] = int32(y)
		for j := 0; j < d; j++ {
			X[i*d+j] = float32((centres[y*d+j]+rng.NormFloat64())*scale[j] + off[j])
		}
	}
	return Data{X: X, N: n, D: d, Y: Y}
}

func accuracy(m *Model, d Data) float64 {
	k := m.NumClasses()
	logits := make([]float32, d.Rows()*k)
	m.logitsData(d, logits, 2)
	c := 0
	for i := 0; i < d.Rows(); i++ {
		if argmax(logits[i*k:(i+1)*k]) == int(d.Label(i)) {
			c++
		}
	}
	return float64(c) / float64(d.Rows())
}

// standardized returns a copy of d with standardised features.
func standardized(d Data) Data {
	mean, std := standardStats(d, 1)
	X := make([]float32, len(d.X))
	for i := range X {
		j := i % d.D
		X[i] = (d.X[i] - mean[j]) / std[j]
	}
	d.X = X
	return d
}
