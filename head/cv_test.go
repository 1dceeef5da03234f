package head

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestStratifiedFoldsBalanced(t *testing.T) {
	y := labelsOf(13, 7, 22, 5)
	fold, err := StratifiedFolds(y, 5, 9)
	if err != nil {
		t.Fatal(err)
	}
	per := make([][]int, 4)
	tot := make([]int, 5)
	for c := range per {
		per[c] = make([]int, 5)
	}
	for i, f := range fold {
		per[y[i]][f]++
		tot[f]++
	}
	for c, row := range per {
		lo, hi := row[0], row[0]
		for _, v := range row {
			lo, hi = min(lo, v), max(hi, v)
		}
		if hi-lo > 1 {
			t.Errorf("class %d spread over folds as %v", c, row)
		}
	}
	lo, hi := tot[0], tot[0]
	for _, v := range tot {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi-lo > 1 {
		t.Errorf("fold sizes %v", tot)
	}
	if _, err := StratifiedFolds(y[:3], 5, 1); err == nil {
		t.Error("3 rows in 5 folds accepted")
	}
}

func TestCrossValidateReport(t *testing.T) {
	all := mixture(300, 8, 3, 1.0, 5)
	cfg := DefaultConfig(KindLinear)
	res, err := CrossValidate(context.Background(), all, cfg, CVOptions{Folds: 4, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.PerFold) != 4 || res.Pooled.N != 300 || len(res.OOFLogits) != 900 {
		t.Fatalf("%d folds, pooled over %d rows, %d logits", len(res.PerFold), res.Pooled.N, len(res.OOFLogits))
	}
	var accs []float64
	rows := 0
	for _, f := range res.PerFold {
		accs = append(accs, f.Accuracy)
		rows += f.TestRows
		if f.TrainRows+f.TestRows != 300 {
			t.Errorf("fold %d: %d + %d rows", f.Fold, f.TrainRows, f.TestRows)
		}
	}
	if ms := NewMeanStd(accs); rows != 300 || math.Abs(ms.Mean-res.Accuracy.Mean) > 1e-12 || math.Abs(ms.Std-res.Accuracy.Std) > 1e-12 {
		t.Errorf("mean±std %v, per fold %v", res.Accuracy, accs)
	}
	cm := 0
	for _, r := range res.Pooled.Confusion {
		for _, v := range r {
			cm += v
		}
	}
	if cm != 300 || res.Accuracy.Mean < 0.8 {
		t.Errorf("pooled confusion counts %d rows, accuracy %v", cm, res.Accuracy)
	}
	if _, err := CrossValidate(context.Background(), all.Subset([]int{0, 1, 2, 3, 4, 5}), cfg, CVOptions{Folds: 5}); err == nil ||
		!strings.Contains(err.Error(), "fewer than the 5 folds") {
		t.Errorf("a class smaller than the fold count: %v", err)
	}
	if k, why := CVFoldsFor([]int{9, 1}, []string{"a", "b"}, 5); k != 0 || !strings.Contains(why, `"b" has 1 image`) {
		t.Errorf("CVFoldsFor with a single image: %d %q", k, why)
	}
	if k, _ := CVFoldsFor([]int{9, 3}, []string{"a", "b"}, 5); k != 3 {
		t.Errorf("CVFoldsFor with 3 images: %d folds", k)
	}
}

// TestCrossValidateViewsDoNotLeak: on pure noise with random labels a
// linear head with more features than rows memorises its training rows.
// If a held-out row's augmented view (here an exact copy) were trained on,
// out-of-fold accuracy would be near 1 instead of chance.
func TestCrossValidateViewsDoNotLeak(t *testing.T) {
	const n, d, k = 60, 200, 3
	rng := rand.New(rand.NewPCG(4, 4))
	X := make([]float32, 2*n*d)
	Y := make([]int32, 2*n)
	for i := 0; i < n; i++ {
		Y[i] = int32(i % k)
		for j := 0; j < d; j++ {
			X[i*d+j] = float32(rng.NormFloat64())
		}
		copy(X[(n+i)*d:(n+i+1)*d], X[i*d:(i+1)*d]) // the view
		Y[n+i] = Y[i]
	}
	all := Data{X: X, N: 2 * n, D: d, Y: Y}
	orig := make([]int, n)
	views, viewOf := make([]int, n), make([]int, n)
	for i := range orig {
		orig[i], views[i], viewOf[i] = i, n+i, i
	}
	cfg := DefaultConfig(KindLinear)
	cfg.C = 100
	res, err := CrossValidate(context.Background(), all.Subset(orig), cfg, CVOptions{Folds: 5, Seed: 1, Views: views, ViewOf: viewOf})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accuracy.Mean > 0.6 {
		t.Errorf("out-of-fold accuracy %v on noise: views of held-out rows leaked into training", res.Accuracy)
	}
	if res.PerFold[0].TrainRows != 2*(n-res.PerFold[0].TestRows) {
		t.Errorf("fold 1 trains on %d rows, want originals and their views (%d)", res.PerFold[0].TrainRows, 2*(n-res.PerFold[0].TestRows))
	}
	// the control: leak on purpose (views as plain rows) and accuracy jumps
	leaky := all
	leakIdx := make([]int, 2*n)
	for i := range leakIdx {
		leakIdx[i] = i
	}
	leaky.Idx = leakIdx
	res2, err := CrossValidate(context.Background(), leaky, cfg, CVOptions{Folds: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Accuracy.Mean < 0.8 {
		t.Errorf("control: copies in different folds give %v, the test cannot see a leak", res2.Accuracy)
	}
}

// TestTemperatureOnSeparableSplit: the collapse. Four validation
// rows, all classified correctly with large margins: plain temperature
// scaling runs to its bound (T = 0.02) and every prediction reads 1.000.
// FitTemperature keeps the mean confidence at what four correct rows
// support, 5/6.
func TestTemperatureOnSeparableSplit(t *testing.T) {
	logits := []float32{
		9, 1, 0, 0, 8, 2, 1, 0, 7, 8, 0, 1,
	}
	labels := []int32{0, 1, 2, 0}
	plain, err := FitTemperatureNLL(logits, labels, 3)
	if err != nil {
		t.Fatal(err)
	}
	if plain > 0.021 {
		t.Fatalf("plain temperature scaling gives %.3f; the test no longer shows the collapse", plain)
	}
	T, err := FitTemperature(logits, labels, 3)
	if err != nil {
		t.Fatal(err)
	}
	if T <= 1 {
		t.Errorf("temperature %.3f on 4 separable rows: collapsed", T)
	}
	if conf := meanConfidence(logits, 3, 1/T); math.Abs(conf-5.0/6) > 1e-6 {
		t.Errorf("mean confidence %.6f, want 5/6", conf)
	}
	c, _ := Calibrate(logits, labels, 3, CalibValidation)
	if c.Temperature != T || !strings.Contains(c.Describe(), "by log loss would pick 0.020") {
		t.Errorf("%s", c.Describe())
	}
	// One wrong row among 16 whose error has a tiny margin: mean confidence
	// stays at (15+1)/(16+2).
	var z []float32
	var y []int32
	for i := 0; i < 16; i++ {
		z = append(z, 6, 0, float32(i%3))
		y = append(y, 0)
	}
	y[15] = 1
	z[45], z[46] = 6, 5.99
	if T, _ := FitTemperature(z, y, 3); meanConfidence(z, 3, 1/T) > 0.97 {
		t.Errorf("16 rows, one error: T %.3f, mean confidence %.4f", T, meanConfidence(z, 3, 1/T))
	}
}

// TestFitSmallDataCalibratesOutOfFold: 36 rows split 30/3/3 as the issue's
// user had it. With three validation rows Fit must calibrate on
// cross-validation, say so, and record conformal scores for all 30.
func TestFitSmallDataCalibratesOutOfFold(t *testing.T) {
	all := mixture(36, 64, 3, 0.9, 8)
	plan, err := PlanSplit(all.Y, []string{"a", "b", "c"}, SplitOptions{ValFrac: 0.1, TestFrac: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Fit(context.Background(), all.Subset(plan.Train), all.Subset(plan.Val), DefaultConfig(KindLinear), FitOptions{CVSeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Model
	if m.Calibration.Source != CalibCV || res.CV == nil || m.Calibration.Rows != len(plan.Train) {
		t.Fatalf("calibration %+v", m.Calibration)
	}
	if m.Temperature < 0.5 || m.Conformal == nil || len(m.Conformal.Scores) != len(plan.Train) {
		t.Errorf("temperature %.3f, conformal %v", m.Temperature, m.Conformal)
	}
	if len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "out-of-fold") {
		t.Errorf("notes %q", res.Notes)
	}
	// one image of a class: no cross-validation, no calibration, a reason
	tiny := Data{X: all.X[:6*64], N: 6, D: 64, Y: []int32{0, 0, 1, 1, 2, 0}}
	r2, err := Fit(context.Background(), tiny, Data{}, DefaultConfig(KindLinear), FitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Model.Calibration.Source != CalibNone || r2.Model.Conformal != nil || r2.Model.Temperature != 1 ||
		!strings.Contains(r2.Model.Calibration.Reason, `class "2" has 1 image`) {
		t.Errorf("calibration %+v, conformal %v", r2.Model.Calibration, r2.Model.Conformal)
	}
}
