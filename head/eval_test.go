package head

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestEvaluateAgreesWithDefinitions(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 1))
	const n, k = 500, 4
	probs := make([]float32, n*k)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.IntN(k))
		s := float32(0)
		for j := 0; j < k; j++ {
			v := rng.Float32()
			if j == int(labels[i]) {
				v += 0.6 // mostly right
			}
			probs[i*k+j] = v
			s += v
		}
		for j := 0; j < k; j++ {
			probs[i*k+j] /= s
		}
	}
	e, err := EvaluateProbs(probs, labels, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	// Recompute independently: accuracy, top-2, per-class recall, log loss.
	correct, top2, loss := 0, 0, 0.0
	tp, sup, pred := make([]int, k), make([]int, k), make([]int, k)
	for i, y := range labels {
		p := probs[i*k : (i+1)*k]
		better := 0
		for _, v := range p {
			if v > p[y] {
				better++
			}
		}
		if better == 0 {
			correct++
			tp[y]++
		}
		if better < 2 {
			top2++
		}
		sup[y]++
		pred[argmax(p)]++
		loss -= math.Log(float64(p[y]))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(e.Accuracy, float64(correct)/n) || !near(e.TopK[1], float64(top2)/n) || !near(e.LogLoss, loss/n) || e.TopK[3] != 1 {
		t.Errorf("accuracy %v top-k %v log loss %v; want %v %v %v", e.Accuracy, e.TopK, e.LogLoss, float64(correct)/n, float64(top2)/n, loss/n)
	}
	f1 := 0.0
	for c := 0; c < k; c++ {
		r, p := float64(tp[c])/float64(sup[c]), float64(tp[c])/float64(pred[c])
		if !near(e.Recall[c], r) || !near(e.Precision[c], p) || e.Support[c] != sup[c] {
			t.Errorf("class %d: recall %v precision %v, want %v %v", c, e.Recall[c], e.Precision[c], r, p)
		}
		f1 += 2 * p * r / (p + r) / k
	}
	if !near(e.MacroF1, f1) {
		t.Errorf("macro-F1 %v want %v", e.MacroF1, f1)
	}
	if len(e.Errors) != n-correct {
		t.Errorf("%d errors listed, want %d", len(e.Errors), n-correct)
	}
	for i, m := range e.Errors {
		if m.True == m.Pred || (i > 0 && m.Confidence > e.Errors[i-1].Confidence) || labels[m.Index] != m.True {
			t.Fatalf("error entry %d inconsistent: %+v", i, m)
		}
	}
	var b bytes.Buffer
	if err := e.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	found := 0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != k+1 || f[0] != "c" || strings.Contains(l, ".") {
			continue
		}
		sum := 0
		for _, x := range f[1:] {
			v, err := strconv.Atoi(x)
			if err != nil {
				t.Fatalf("confusion cell %q: %v", x, err)
			}
			sum += v
		}
		if sum == sup[2] {
			found++
		}
	}
	if found != 1 || !strings.Contains(b.String(), "macro-F1") {
		t.Errorf("text report lacks the confusion row for class c:\n%s", b.String())
	}
	if _, err := EvaluateProbs(probs[:10], labels, []string{"a", "b", "c", "d"}); err == nil {
		t.Error("mismatched probabilities accepted")
	}
}

func TestConfusionPNG(t *testing.T) {
	e, err := EvaluateProbs([]float32{0.9, 0.1, 0.2, 0.8, 0.6, 0.4}, []int32{0, 1, 1}, []string{"cat", "dog"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cm.png")
	if err := ConfusionPNG(path, e, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() < 200 {
		t.Errorf("image %v too small", b)
	}
	if err := ConfusionPNG(path, e, []string{"one"}); err == nil {
		t.Error("wrong number of class names accepted")
	}
}

func TestTemperatureScalingLowersNLL(t *testing.T) {
	all := mixture(3000, 20, 5, 0.5, 17)
	tr, va, _, _ := StratifiedSplit(all.Y, 0.3, 0, 1)
	cfg := DefaultConfig(KindLinear)
	m, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	val := all.Subset(va)
	logits := make([]float32, val.Rows()*5)
	m.logitsData(val, logits, 2)
	labels := make([]int32, val.Rows())
	for i := range labels {
		labels[i] = val.Label(i)
	}
	for _, scale := range []float64{0.3, 1, 4} { // under-, roughly, over-confident
		z := make([]float32, len(logits))
		for i, v := range logits {
			z[i] = float32(float64(v) * scale)
		}
		T, err := FitTemperatureNLL(z, labels, 5)
		if err != nil {
			t.Fatal(err)
		}
		// FitTemperature (confidence matching) must go the same way and
		// help as much, within a little, on 900 rows
		if Tm, _ := FitTemperature(z, labels, 5); math.Abs(math.Log(Tm/T)) > 0.15 {
			t.Errorf("scale %g: temperature %.3f by confidence matching, %.3f by log loss", scale, Tm, T)
		}
		n1, _ := nllAcc(z, labels, 5, 1)
		nT, _ := nllAcc(z, labels, 5, 1/T)
		if nT > n1+1e-12 {
			t.Errorf("scale %g: NLL %.5f at T=%.3f above %.5f at T=1", scale, nT, T, n1)
		}
		if scale != 1 && !(nT < n1-1e-3) {
			t.Errorf("scale %g: T=%.3f barely helps (%.5f vs %.5f)", scale, T, nT, n1)
		}
		if scale == 4 && T < 2 || scale == 0.3 && T > 0.6 {
			t.Errorf("scale %g: T=%.3f goes the wrong way", scale, T)
		}
		if e1, eT := eceOf(z, labels, 5, 1), eceOf(z, labels, 5, 1/T); scale == 4 && !(eT < e1) {
			t.Errorf("scale %g: ECE %.4f after scaling, %.4f before", scale, eT, e1)
		}
	}
	if _, err := FitTemperature(logits, labels[:3], 5); err == nil {
		t.Error("mismatched shapes accepted")
	}
}

func TestPredictMatchesBatchAndChecksShapes(t *testing.T) {
	m, all := trainedMLP(t)
	k := m.NumClasses()
	batch := make([]float32, all.N*k)
	if err := m.PredictBatch(all.X, all.N, batch); err != nil {
		t.Fatal(err)
	}
	var s Scratch
	p := make([]float32, k)
	for i := 0; i < all.N; i += 37 {
		if err := m.Predict(all.Row(i), p, &s); err != nil {
			t.Fatal(err)
		}
		sum := float32(0)
		for j := range p {
			sum += p[j]
			if p[j] != batch[i*k+j] {
				t.Fatalf("row %d: Predict %v, PredictBatch %v", i, p, batch[i*k:(i+1)*k])
			}
		}
		if math.Abs(float64(sum)-1) > 1e-5 {
			t.Fatalf("row %d: probabilities sum to %g", i, sum)
		}
	}
	if err := m.Predict(make([]float32, m.Dim()+1), p, nil); err == nil {
		t.Error("wrong feature length accepted")
	}
	if err := m.PredictBatch(all.X, all.N+1, batch); err == nil {
		t.Error("wrong row count accepted")
	}
}
