package head

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SplitOptions says how PlanSplit holds rows out.
type SplitOptions struct {
	ValFrac  float64 // fraction of every class for validation, [0, 1)
	TestFrac float64 // fraction of every class for test, [0, 1)
	Seed     int64
	// MinTrain is the number of training rows each class must keep after
	// both held-out splits; 0 means 2 (the least cross-validation can use).
	MinTrain int
}

// SplitPlan is the outcome of PlanSplit: positions (into the labels given)
// of each split, sorted ascending, and for a requested split that was not
// made, the reason in one sentence. A skipped split has no rows, so no
// metric can be computed on it.
type SplitPlan struct {
	Train, Val, Test  []int
	ValSkipped        string // "" when the validation split was made or not asked for
	TestSkipped       string // "" when the test split was made or not asked for
	SmallestClass     string // name of the class with the fewest rows
	SmallestClassRows int
}

// PlanSplit makes a stratified train/validation/test split, but only holds a
// split out when every class gets at least one row in it and keeps at least
// MinTrain training rows; otherwise the split is skipped and the reason
// recorded (the caller then estimates with cross-validation instead of
// printing a metric for an empty split). The test split is planned first,
// as the more valuable one. classes names the labels (for the reasons); the
// result depends only on labels, the options and the seed.
func PlanSplit(labels []int32, classes []string, opt SplitOptions) (SplitPlan, error) {
	var p SplitPlan
	if opt.ValFrac < 0 || opt.TestFrac < 0 || opt.ValFrac+opt.TestFrac >= 1 || math.IsNaN(opt.ValFrac+opt.TestFrac) {
		return p, fmt.Errorf("split: fractions val %g + test %g must be >= 0 and sum below 1", opt.ValFrac, opt.TestFrac)
	}
	minTrain := opt.MinTrain
	if minTrain <= 0 {
		minTrain = 2
	}
	k := len(classes)
	counts := make([]int, k)
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return p, fmt.Errorf("split: row %d: label %d out of range [0, %d)", i, y, k)
		}
		counts[y]++
	}
	small := -1
	for c, n := range counts {
		if n > 0 && (small < 0 || n < counts[small]) {
			small = c
		}
	}
	if small < 0 {
		return p, fmt.Errorf("split: no rows")
	}
	p.SmallestClass, p.SmallestClassRows = classes[small], counts[small]
	held := func(frac float64, n int) int { return int(math.Round(frac * float64(n))) }
	// fits reports whether held-out fractions fv, ft leave every class at
	// least one row in each nonzero split and minTrain training rows.
	fits := func(fv, ft float64) (bool, int) {
		for c, n := range counts {
			if n == 0 {
				continue
			}
			nv, nt := held(fv, n), held(ft, n)
			if (fv > 0 && nv < 1) || (ft > 0 && nt < 1) || n-nv-nt < minTrain {
				return false, c
			}
		}
		return true, -1
	}
	// need is the smallest class size for which fraction f holds out a row
	// and leaves minTrain (with the other split's share).
	need := func(f, other float64) int {
		for n := 1; n < 1<<20; n++ {
			if held(f, n) >= 1 && n-held(f, n)-held(other, n) >= minTrain && (other == 0 || held(other, n) >= 1) {
				return n
			}
		}
		return 1 << 20
	}
	ft, fv := opt.TestFrac, opt.ValFrac
	if ft > 0 {
		if ok, c := fits(0, ft); !ok {
			p.TestSkipped = fmt.Sprintf("no test split: class %q has %d images, a %g%% test split needs at least %d per class",
				classes[c], counts[c], 100*ft, need(ft, 0))
			ft = 0
		}
	}
	if fv > 0 {
		if ok, c := fits(fv, ft); !ok {
			p.ValSkipped = fmt.Sprintf("no validation split: class %q has %d images, a %g%% validation split needs at least %d per class",
				classes[c], counts[c], 100*fv, need(fv, ft))
			fv = 0
		}
	}
	byClass := make([][]int, k)
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
	}
	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x5eed5eed))
	for _, rows := range byClass {
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		n := len(rows)
		nt, nv := held(ft, n), held(fv, n)
		p.Test = append(p.Test, rows[:nt]...)
		p.Val = append(p.Val, rows[nt:nt+nv]...)
		p.Train = append(p.Train, rows[nt+nv:]...)
	}
	slices.Sort(p.Train)
	slices.Sort(p.Val)
	slices.Sort(p.Test)
	return p, nil
}
