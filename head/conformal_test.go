package head

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"slices"
	"testing"

	"github.com/headtune/headtune/internal/fashionmnist"
	"github.com/headtune/headtune/internal/testasset"
)

// fashion loads the first n images of a Fashion-MNIST part as raw pixels.
// The dataset is a Debian package: absent on a bare machine (skip, loudly),
// required in CI.
func fashion(t *testing.T, part string, n int) Data {
	t.Helper()
	X, y, err := fashionmnist.Load(fashionmnist.Dir, part, n)
	if errors.Is(err, fs.ErrNotExist) {
		testasset.Skip(t, "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return Data{X: X, N: len(y), D: fashionmnist.Side * fashionmnist.Side, Y: y}
}

func TestConformalThreshold(t *testing.T) {
	c, err := NewConformal([]float32{0.9, 0.1, 0.3, 0.7, 0.6, 0.4, 0.2, 0.8}, []int32{0, 0, 0, 1}, 2, CalibValidation)
	if err != nil {
		t.Fatal(err)
	}
	// scores 1-p(true): 0.1, 0.7, 0.4, 0.2 -> sorted 0.1 0.2 0.4 0.7
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if len(c.Scores) != 4 || !near(c.Scores[0], 0.1) || !near(c.Scores[1], 0.2) || !near(c.Scores[2], 0.4) || !near(c.Scores[3], 0.7) {
		t.Fatalf("scores %v", c.Scores)
	}
	for _, tc := range []struct {
		cov  float64
		q    float64
		all  bool
		rows int
	}{
		{0.5, 0.4, false, 1}, // ceil(5*0.5)=3rd smallest
		{0.8, 0.7, false, 4}, // ceil(5*0.8)=4th
		{0.9, 1, true, 9},    // ceil(5*0.9)=5 > 4 rows
		{0.95, 1, true, 19},
	} {
		q, all, err := c.Threshold(tc.cov)
		if err != nil || !near(q, tc.q) || all != tc.all || MinRows(tc.cov) != tc.rows {
			t.Errorf("coverage %g: q %v all %v (%v), MinRows %d; want %v %v %d", tc.cov, q, all, err, MinRows(tc.cov), tc.q, tc.all, tc.rows)
		}
	}
	if _, _, err := c.Threshold(1); err == nil {
		t.Error("coverage 1 accepted")
	}
	// classes come most probable first; no class may qualify
	if s := Set(nil, []float32{0.2, 0.5, 0.3}, 0.01); len(s) != 0 {
		t.Errorf("set %v", s)
	}
	if s := Set(nil, []float32{0.2, 0.5, 0.3}, 0.75); !slices.Equal(s, []int{1, 2}) {
		t.Errorf("set %v", s)
	}
	bad := *c
	bad.Scores = []float64{0.5, 0.2}
	if bad.Validate() == nil {
		t.Error("unsorted scores accepted")
	}
}

// TestConformalCoverageFashionMNIST is the acceptance test: a linear
// head on raw Fashion-MNIST pixels, split-conformal scores from 3000
// held-out training images, then sets on 5000 images of the separate test
// file: the share of sets holding the true class is within 2 points of
// 0.8, 0.9 and 0.95. The same holds for cross-conformal (out-of-fold scores
// of 5-fold cross-validation on 1500 images, final head on all of them).
func TestConformalCoverageFashionMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: trains on Fashion-MNIST (-short)")
	}
	tr := fashion(t, "train", 4500)
	te := fashion(t, "t10k", 5000)
	cfg := DefaultConfig(KindLinear)
	cfg.C, cfg.MaxIter = 0.05, 150 // a quick, decent head: coverage does not need a good one
	cfg.Classes = fashionmnist.Classes
	pos := func(a, b int) []int {
		p := make([]int, b-a)
		for i := range p {
			p[i] = a + i
		}
		return p
	}
	k := 10
	labels := te.Y
	check := func(name string, m *Model) {
		t.Helper()
		probs := make([]float32, te.N*k)
		if err := m.PredictBatch(te.X, te.N, probs); err != nil {
			t.Fatal(err)
		}
		for _, cov := range []float64{0.8, 0.9, 0.95} {
			st, err := m.Conformal.Evaluate(probs, labels, k, cov)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: coverage %.2f: empirical %.4f, mean set size %.2f", name, cov, st.Empirical, st.MeanSize)
			if math.Abs(st.Empirical-cov) > 0.02 {
				t.Errorf("%s: coverage %.2f: empirical %.4f (mean set size %.2f)", name, cov, st.Empirical, st.MeanSize)
			}
			if st.MeanSize <= 0.5 || st.MeanSize >= float64(k) {
				t.Errorf("%s: mean set size %.2f says nothing", name, st.MeanSize)
			}
		}
	}
	split, err := Fit(context.Background(), tr.Subset(pos(0, 1500)), tr.Subset(pos(1500, 4500)), cfg, FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if split.Model.Conformal.Source != CalibValidation || len(split.Model.Conformal.Scores) != 3000 {
		t.Fatalf("split conformal from %s with %d scores", split.Model.Conformal.Source, len(split.Model.Conformal.Scores))
	}
	check("split", split.Model)
	cross, err := Fit(context.Background(), tr.Subset(pos(0, 1500)), Data{}, cfg, FitOptions{CVFolds: 5, CVSeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if cross.Model.Conformal.Source != CalibCV || len(cross.Model.Conformal.Scores) != 1500 {
		t.Fatalf("cross-conformal from %s with %d scores", cross.Model.Conformal.Source, len(cross.Model.Conformal.Scores))
	}
	check("cross", cross.Model)
}
