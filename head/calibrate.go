package head

import (
	"fmt"
	"math"
)

// FitTemperature returns the temperature T > 0 for softmax(logits/T) fitted
// on held-out data. logits is [len(labels)*k] row-major.
//
// T is chosen so that the mean top-class probability on the held-out rows
// equals their accuracy, smoothed by Laplace's rule of succession: (c+1)/(n+2)
// when c of the n rows are classified correctly. Mean confidence falls
// monotonically as T grows, so the solution is unique; it is found by
// bisection on log T over [0.02, 50].
//
// Plain temperature scaling (Guo et al. 2017; FitTemperatureNLL) minimises
// the log loss instead. It is the better estimator with thousands of
// held-out rows, but on the few dozen that small datasets give it swings
// with each confident error, and when the rows are separable (every one
// right, common with a handful of validation images) the loss keeps falling
// as T goes to 0: every later prediction reads 1.000, photos of none of the
// classes included. Matching the smoothed accuracy cannot collapse (the
// target is below 1 for any finite n: 5/6 for 4 correct rows) and is stable
// on small sets; the README's small-data section compares the two on
// Fashion-MNIST.
func FitTemperature(logits []float32, labels []int32, k int) (float64, error) {
	if err := checkCalib(logits, labels, k); err != nil {
		return 0, err
	}
	n := len(labels)
	c := 0
	for i, y := range labels {
		if argmax(logits[i*k:(i+1)*k]) == int(y) {
			c++
		}
	}
	target := float64(c+1) / float64(n+2)
	conf := func(lt float64) float64 { return meanConfidence(logits, k, math.Exp(-lt)) }
	lo, hi := math.Log(minTemperature), math.Log(maxTemperature)
	switch {
	case conf(lo) <= target:
		return minTemperature, nil
	case conf(hi) >= target:
		return maxTemperature, nil
	}
	for i := 0; i < 60 && hi-lo > 1e-9; i++ {
		mid := (lo + hi) / 2
		if conf(mid) > target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return math.Exp((lo + hi) / 2), nil
}

// FitTemperatureNLL is plain temperature scaling (Guo et al. 2017): the T
// in [0.02, 50] that minimises the mean negative log-likelihood of
// softmax(logits/T). The NLL is convex in 1/T; the minimum is found by
// golden-section search on log(1/T).
func FitTemperatureNLL(logits []float32, labels []int32, k int) (float64, error) {
	if err := checkCalib(logits, labels, k); err != nil {
		return 0, err
	}
	return goldenTemperature(func(beta float64) float64 {
		l, _ := nllAcc(logits, labels, k, beta)
		return l
	}), nil
}

func checkCalib(logits []float32, labels []int32, k int) error {
	n := len(labels)
	if k < 2 || len(logits) != n*k {
		return fmt.Errorf("fit temperature: %d logits for %d rows of %d classes", len(logits), n, k)
	}
	if n == 0 {
		return fmt.Errorf("fit temperature: no rows")
	}
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return fmt.Errorf("fit temperature: row %d: label %d out of range [0, %d)", i, y, k)
		}
	}
	if !allFinite(logits) {
		return fmt.Errorf("fit temperature: non-finite logits")
	}
	return nil
}

// The temperature search range.
const (
	minTemperature = 0.02
	maxTemperature = 50
)

// goldenTemperature minimises obj(beta), beta = 1/T, by golden-section
// search on log beta; T = 1 is kept when it is at least as good.
func goldenTemperature(obj func(beta float64) float64) float64 {
	f := func(lb float64) float64 { return obj(math.Exp(lb)) }
	const phi = 0.6180339887498949
	a, b := -math.Log(maxTemperature), -math.Log(minTemperature)
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
	lb := (a + b) / 2
	if f(0) <= f(lb) {
		return 1
	}
	return 1 / math.Exp(lb)
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

// meanConfidence is the mean top-class probability of softmax(beta*logits).
func meanConfidence(logits []float32, k int, beta float64) float64 {
	n := len(logits) / k
	s := 0.0
	for i := 0; i < n; i++ {
		z := logits[i*k : (i+1)*k]
		s += math.Exp(-nllRow(z, argmax(z), beta))
	}
	return s / float64(max(1, n))
}
