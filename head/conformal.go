package head

import (
	"fmt"
	"math"
	"slices"
)

// ConformalLAC is the score 1 - p(true class) of split-conformal
// classification ("least ambiguous set-valued classifier", Sadinle et al.
// 2019): it gives the smallest sets on average for a given coverage.
const ConformalLAC = "lac"

// Conformal holds the nonconformity scores of held-out rows, from which a
// prediction set with any requested coverage can be built at prediction
// time. With exchangeable data, the set of the classes whose score is at
// most the ⌈(n+1)·coverage⌉-th smallest held-out score contains the true
// class with probability at least coverage (split conformal). When the
// scores are out-of-fold (cross-conformal), the guarantee is approximate:
// the final head saw more data than the fold heads did.
type Conformal struct {
	Method string    `json:"method"` // ConformalLAC
	Source string    `json:"source"` // CalibValidation or CalibCV
	Folds  int       `json:"folds,omitempty"`
	Scores []float64 `json:"scores"` // sorted ascending, one per held-out row, with the head's temperature applied
}

// NewConformal computes the scores of held-out rows from calibrated
// probabilities probs [len(labels)*k].
func NewConformal(probs []float32, labels []int32, k int, source string) (*Conformal, error) {
	if k < 2 || len(probs) != len(labels)*k {
		return nil, fmt.Errorf("conformal: %d probabilities for %d rows of %d classes", len(probs), len(labels), k)
	}
	c := &Conformal{Method: ConformalLAC, Source: source, Scores: make([]float64, len(labels))}
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return nil, fmt.Errorf("conformal: row %d: label %d out of range [0, %d)", i, y, k)
		}
		c.Scores[i] = 1 - float64(probs[i*k+int(y)])
	}
	slices.Sort(c.Scores)
	return c, nil
}

// MinRows is the number of held-out rows needed for a set with this
// coverage to exclude any class: ⌈(n+1)·coverage⌉ ≤ n.
func MinRows(coverage float64) int {
	return int(math.Ceil(coverage/(1-coverage) - 1e-9))
}

// Validate checks the coverage range and the scores.
func (c *Conformal) Validate() error {
	if c.Method != ConformalLAC {
		return fmt.Errorf("conformal: unknown method %q", c.Method)
	}
	for i, s := range c.Scores {
		if math.IsNaN(s) || s < 0 || s > 1 || (i > 0 && s < c.Scores[i-1]) {
			return fmt.Errorf("conformal: score %d (%g) out of range or out of order", i, s)
		}
	}
	return nil
}

// Threshold returns the score threshold for the requested coverage in
// (0, 1): a class is in the set when 1 - p(class) ≤ q. all is true when
// there are too few held-out rows (fewer than MinRows(coverage)) for any
// threshold below 1: every class is then in every set.
func (c *Conformal) Threshold(coverage float64) (q float64, all bool, err error) {
	if !(coverage > 0 && coverage < 1) {
		return 0, false, fmt.Errorf("coverage %g out of range (0, 1)", coverage)
	}
	n := len(c.Scores)
	r := int(math.Ceil(float64(n+1)*coverage - 1e-9))
	if r > n {
		return 1, true, nil
	}
	return c.Scores[max(0, r-1)], false, nil
}

// Set appends to dst the classes of one row's calibrated probabilities p
// whose score is within the threshold q, most probable first. The set may
// be empty: no class is probable enough for the coverage asked (an
// ambiguous image, or one unlike the training data). Forcing the top class
// in would push the coverage up to at least the accuracy: with an 87%
// accurate head, sets for 80% coverage would cover 87%.
func Set(dst []int, p []float32, q float64) []int {
	start := len(dst)
	for j, v := range p {
		if 1-float64(v) <= q {
			dst = append(dst, j)
		}
	}
	s := dst[start:]
	slices.SortStableFunc(s, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return a - b
	})
	return dst
}

// SetStats is the empirical behaviour of prediction sets on labelled rows.
type SetStats struct {
	Coverage  float64 `json:"coverage"`  // requested
	Empirical float64 `json:"empirical"` // fraction of rows whose set holds the true class
	MeanSize  float64 `json:"mean_size"` // mean number of classes per set
	Singleton float64 `json:"singleton"` // fraction of sets with one class
	Empty     float64 `json:"empty"`     // fraction of empty sets
	AllRows   bool    `json:"all_classes,omitempty"`
}

// Evaluate measures the sets for the requested coverage on calibrated
// probabilities probs [len(labels)*k] of rows not used to fit c.
func (c *Conformal) Evaluate(probs []float32, labels []int32, k int, coverage float64) (SetStats, error) {
	st := SetStats{Coverage: coverage}
	q, all, err := c.Threshold(coverage)
	if err != nil {
		return st, err
	}
	if len(labels) == 0 || len(probs) != len(labels)*k {
		return st, fmt.Errorf("conformal: %d probabilities for %d rows of %d classes", len(probs), len(labels), k)
	}
	st.AllRows = all
	var set []int
	hit, size, single, empty := 0, 0, 0, 0
	for i, y := range labels {
		set = Set(set[:0], probs[i*k:(i+1)*k], q)
		size += len(set)
		switch len(set) {
		case 0:
			empty++
		case 1:
			single++
		}
		if slices.Contains(set, int(y)) {
			hit++
		}
	}
	n := float64(len(labels))
	st.Empirical, st.MeanSize, st.Singleton, st.Empty = float64(hit)/n, float64(size)/n, float64(single)/n, float64(empty)/n
	return st, nil
}
