package head

import (
	"fmt"
	"math"
)

// FitTemperature returns the temperature T > 0 that minimises the mean
// negative log-likelihood of softmax(logits/T) on held-out data (temperature
// scaling, Guo et al. 2017). logits is [len(labels)*k] row-major. The NLL is
// convex in 1/T; the minimum is found by golden-section search on log(1/T)
// over T in [0.02, 50].
func FitTemperature(logits []float32, labels []int32, k int) (float64, error) {
	n := len(labels)
	if k < 2 || len(logits) != n*k {
		return 0, fmt.Errorf("fit temperature: %d logits for %d rows of %d classes", len(logits), n, k)
	}
	if n == 0 {
		return 0, fmt.Errorf("fit temperature: no rows")
	}
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return 0, fmt.Errorf("fit temperature: row %d: label %d out of range [0, %d)", i, y, k)
		}
	}
	if !allFinite(logits) {
		return 0, fmt.Errorf("fit temperature: non-finite logits")
	}
	f := func(lb float64) float64 {
		l, _ := nllAcc(logits, labels, k, math.Exp(lb))
		return l
	}
	const phi = 0.6180339887498949
	a, b := math.Log(1.0/50), math.Log(50.0)
	c, d := b-phi*(b-a), a+phi*(b-a)
	fc, fd := f(c), f(d)
	for i := 0; i < 60 && b-a > 1e-6; i++ {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - phi*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + phi*(b-a)
			fd = f(d)
		}
	}
	beta := math.Exp((a + b) / 2)
	if f(0) <= f(math.Log(beta)) {
		return 1, nil
	}
	return 1 / beta, nil
}

// eceOf is the expected calibration error of softmax(beta*logits) with 15
// equal-width confidence bins: Σ_bins (n_b/n)·|accuracy_b - confidence_b|.
func eceOf(logits []float32, labels []int32, k int, beta float64) float64 {
	const bins = 15
	var cnt [bins]int
	var conf, acc [bins]float64
	for i, y := range labels {
		z := logits[i*k : (i+1)*k]
		j := argmax(z)
		c := math.Exp(-nllRow(z, j, beta))
		bi := min(bins-1, int(c*bins))
		cnt[bi]++
		conf[bi] += c
		if j == int(y) {
			acc[bi]++
		}
	}
	e := 0.0
	for b := 0; b < bins; b++ {
		if cnt[b] > 0 {
			e += math.Abs(acc[b]-conf[b]) / float64(len(labels))
		}
	}
	return e
}
