package head

import (
	"fmt"
	"math"
)

// FitTemperature returns the temperature T > 0 for softmax(logits/T) fitted
// on held-out data (temperature scaling, Guo et al. 2017). logits is
// [len(labels)*k] row-major.
//
// Plain temperature scaling minimises the mean negative log-likelihood.
// When the held-out rows are separable (every row classified correctly,
// common with a handful of validation images) that NLL keeps falling as T
// goes to 0, and every later prediction reads 1.000, photos of none of the
// classes included. FitTemperature therefore adds one pseudo-observation
// whose target is uniform over the classes (a Laplace-style prior: "one
// more row the head knows nothing about"), so the objective is
//
//	(Σ_i NLL_i(T) + mean_i CE(uniform, softmax(z_i/T))) / (n+1)
//
// The prior costs nothing measurable with many rows (it weighs 1/(n+1)) and
// bounds the confidence with few: with 4 separable rows of margin ~7 the
// mean confidence stays near 0.8 instead of 1. Both terms are convex in
// 1/T; the minimum is found by golden-section search on log(1/T) over T in
// [0.02, 50]. FitTemperatureNLL is the plain minimiser, for reports.
func FitTemperature(logits []float32, labels []int32, k int) (float64, error) {
	if err := checkCalib(logits, labels, k); err != nil {
		return 0, err
	}
	n := float64(len(labels))
	return goldenTemperature(func(beta float64) float64 {
		l, _ := nllAcc(logits, labels, k, beta)
		return (l*n + uniformCE(logits, k, beta)) / (n + 1)
	}), nil
}

// FitTemperatureNLL is plain temperature scaling: the T in [0.02, 50] that
// minimises the mean NLL, without FitTemperature's prior.
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

// uniformCE is the mean over rows of the cross-entropy between the uniform
// distribution and softmax(beta*z): logsumexp(beta*z) - beta*mean(z).
func uniformCE(logits []float32, k int, beta float64) float64 {
	n := len(logits) / k
	s := 0.0
	for i := 0; i < n; i++ {
		z := logits[i*k : (i+1)*k]
		mx := math.Inf(-1)
		mean := 0.0
		for _, v := range z {
			mx = math.Max(mx, beta*float64(v))
			mean += float64(v)
		}
		var e float64
		for _, v := range z {
			e += math.Exp(beta*float64(v) - mx)
		}
		s += mx + math.Log(e) - beta*mean/float64(k)
	}
	return s / float64(max(1, n))
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
