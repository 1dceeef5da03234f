package head

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Data is a labelled feature matrix. X is not copied and never modified by
// this package; the caller keeps ownership.
type Data struct {
	X   []float32 // [N*D] row-major features
	N   int       // rows in X
	D   int       // features per row
	Y   []int32   // [N] labels in [0, classes); may be nil for prediction-only data
	Idx []int     // optional: the rows of X that belong to this set (a split without copying); nil means all N rows
}

// Rows is the number of rows in the set: len(Idx) when Idx is set, N otherwise.
func (d Data) Rows() int {
	if d.Idx != nil {
		return len(d.Idx)
	}
	return d.N
}

// row returns the index into X of the i-th row of the set.
func (d Data) row(i int) int {
	if d.Idx != nil {
		return d.Idx[i]
	}
	return i
}

// Row returns the i-th row of the set (a sub-slice of X, not a copy).
func (d Data) Row(i int) []float32 {
	r := d.row(i)
	return d.X[r*d.D : (r+1)*d.D]
}

// Label returns the label of the i-th row of the set.
func (d Data) Label(i int) int32 { return d.Y[d.row(i)] }

// Subset returns the set restricted to the given positions of d (no copy).
func (d Data) Subset(pos []int) Data {
	idx := make([]int, len(pos))
	for i, p := range pos {
		idx[i] = d.row(p)
	}
	d.Idx = idx
	return d
}

// Validate checks shapes, row indices and (when classes > 0 and labels are
// present) the label range.
func (d Data) Validate(classes int) error {
	if d.N < 0 || d.D <= 0 {
		return fmt.Errorf("invalid shape %dx%d", d.N, d.D)
	}
	if len(d.X) != d.N*d.D {
		return fmt.Errorf("%d feature values for %d rows of %d", len(d.X), d.N, d.D)
	}
	if d.Y != nil && len(d.Y) != d.N {
		return fmt.Errorf("%d labels for %d rows", len(d.Y), d.N)
	}
	for _, r := range d.Idx {
		if r < 0 || r >= d.N {
			return fmt.Errorf("row index %d out of range [0, %d)", r, d.N)
		}
	}
	if classes > 0 && d.Y != nil {
		for i := 0; i < d.Rows(); i++ {
			if y := d.Label(i); y < 0 || int(y) >= classes {
				return fmt.Errorf("row %d: label %d out of range [0, %d)", d.row(i), y, classes)
			}
		}
	}
	return nil
}

// ClassCounts returns the number of rows of each class in the set.
func (d Data) ClassCounts(classes int) []int {
	c := make([]int, classes)
	for i := 0; i < d.Rows(); i++ {
		if y := d.Label(i); y >= 0 && int(y) < classes {
			c[y]++
		}
	}
	return c
}

// StratifiedSplit splits row positions 0..len(labels)-1 into train,
// validation and test sets holding about valFrac and testFrac of every class
// (rounded per class; a class with at least 3 rows keeps at least one training
// row). The result depends only on labels, the fractions and seed. Each
// returned slice is sorted ascending.
func StratifiedSplit(labels []int32, valFrac, testFrac float64, seed int64) (train, val, test []int, err error) {
	if valFrac < 0 || testFrac < 0 || valFrac+testFrac >= 1 || math.IsNaN(valFrac+testFrac) {
		return nil, nil, nil, fmt.Errorf("split: fractions val %g + test %g must be >= 0 and sum below 1", valFrac, testFrac)
	}
	byClass := map[int32][]int{}
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
	}
	keys := make([]int32, 0, len(byClass))
	for k := range byClass {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed))
	for _, k := range keys {
		rows := byClass[k]
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		n := len(rows)
		nt := int(math.Round(testFrac * float64(n)))
		nv := int(math.Round(valFrac * float64(n)))
		for nt+nv >= n && n >= 1 && nt+nv > 0 {
			// keep at least one training row
			if nv >= nt && nv > 0 {
				nv--
			} else {
				nt--
			}
		}
		test = append(test, rows[:nt]...)
		val = append(val, rows[nt:nt+nv]...)
		train = append(train, rows[nt+nv:]...)
	}
	slices.Sort(train)
	slices.Sort(val)
	slices.Sort(test)
	return train, val, test, nil
}

// standardStats computes the per-feature mean and population standard
// deviation (ddof 0, as scikit-learn's StandardScaler) of the set's rows in
// float64. A feature with zero (or denormal) spread gets std 1.
func standardStats(d Data, workers int) (mean, std []float32) {
	n := d.Rows()
	const blk = 1024
	parts := (n + blk - 1) / blk
	sums := make([][]float64, parts)
	parallelFor(workers, parts, func(p int) {
		s := make([]float64, d.D)
		for i := p * blk; i < min(n, (p+1)*blk); i++ {
			for j, v := range d.Row(i) {
				s[j] += float64(v)
			}
		}
		sums[p] = s
	})
	mu := make([]float64, d.D)
	for _, s := range sums {
		for j, v := range s {
			mu[j] += v
		}
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	parallelFor(workers, parts, func(p int) {
		s := sums[p]
		clear(s)
		for i := p * blk; i < min(n, (p+1)*blk); i++ {
			for j, v := range d.Row(i) {
				e := float64(v) - mu[j]
				s[j] += e * e
			}
		}
	})
	vr := make([]float64, d.D)
	for _, s := range sums {
		for j, v := range s {
			vr[j] += v
		}
	}
	return meanStd(mu, vr, n)
}

// meanStd turns the means mu and summed squared deviations ss of n rows,
// both [D] in float64, into the statistics a Model keeps: std 1 where a
// feature is constant (to rounding), so standardising never divides by 0.
func meanStd(mu, ss []float64, n int) (mean, std []float32) {
	mean, std = make([]float32, len(mu)), make([]float32, len(mu))
	for j := range mu {
		mean[j] = float32(mu[j])
		sd := math.Sqrt(ss[j] / float64(n))
		if !(sd > 1e-12*math.Max(1, math.Abs(mu[j]))) {
			sd = 1
		}
		std[j] = float32(sd)
	}
	return mean, std
}

// classWeights returns per-class loss weights: all ones, or with balance
// n/(k*n_c) as scikit-learn's class_weight="balanced" (absent classes get 0).
func classWeights(counts []int, balance bool) []float64 {
	w := make([]float64, len(counts))
	n := 0
	for _, c := range counts {
		n += c
	}
	for i, c := range counts {
		switch {
		case !balance:
			w[i] = 1
		case c > 0:
			w[i] = float64(n) / float64(len(counts)*c)
		}
	}
	return w
}

// defaultClassNames returns "0", "1", ... for k classes.
func defaultClassNames(k int) []string {
	s := make([]string, k)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}
