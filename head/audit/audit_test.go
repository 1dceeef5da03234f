package audit

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// blobs returns n rows of k well-separated Gaussian classes in d dims.
func blobs(n, d, k int, sep float64, seed uint64) ([]float32, []int32) {
	rng := rand.New(rand.NewPCG(seed, 2))
	c := make([]float64, k*d)
	for i := range c {
		c[i] = rng.NormFloat64() * sep
	}
	X := make([]float32, n*d)
	y := make([]int32, n)
	for i := 0; i < n; i++ {
		y[i] = int32(i % k)
		for j := 0; j < d; j++ {
			X[i*d+j] = float32(c[int(y[i])*d+j] + rng.NormFloat64())
		}
	}
	return X, y
}

func TestLabelIssuesFindsFlips(t *testing.T) {
	// Out-of-fold probabilities of a decent classifier: the true class gets
	// most of the mass, with noise. 5% of labels are then flipped.
	const n, k = 1000, 5
	rng := rand.New(rand.NewPCG(7, 7))
	truth := make([]int32, n)
	probs := make([]float32, n*k)
	for i := range truth {
		truth[i] = int32(rng.IntN(k))
		s := 0.0
		row := make([]float64, k)
		for j := range row {
			row[j] = rng.ExpFloat64() * 0.3
			if j == int(truth[i]) {
				row[j] += 1 + 2*rng.Float64()
			}
			s += row[j]
		}
		for j := range row {
			probs[i*k+j] = float32(row[j] / s)
		}
	}
	given := append([]int32(nil), truth...)
	flipped := map[int]bool{}
	for len(flipped) < n/20 {
		i := rng.IntN(n)
		if !flipped[i] {
			flipped[i] = true
			given[i] = (truth[i] + 1 + int32(rng.IntN(k-1))) % k
		}
	}
	sus, err := LabelIssues(probs, given, k)
	if err != nil {
		t.Fatal(err)
	}
	hit := 0
	for _, s := range sus {
		if flipped[s.Row] {
			hit++
			if s.Suggested != truth[s.Row] {
				t.Errorf("row %d: suggested %d, truth %d", s.Row, s.Suggested, truth[s.Row])
			}
		}
	}
	prec, rec := float64(hit)/float64(len(sus)), float64(hit)/float64(len(flipped))
	t.Logf("%d suspects: precision %.3f, recall %.3f", len(sus), prec, rec)
	if rec < 0.8 || prec < 0.5 {
		t.Errorf("precision %.3f, recall %.3f", prec, rec)
	}
	for i := 1; i < len(sus); i++ {
		if sus[i].PSuggest-sus[i].PGiven > sus[i-1].PSuggest-sus[i-1].PGiven+1e-12 {
			t.Fatal("suspects not most confident first")
		}
	}
	if _, err := LabelIssues(probs[:7], given, k); err == nil {
		t.Error("shape mismatch accepted")
	}
}

func TestNearDuplicatesAndLeaks(t *testing.T) {
	const n, d, k = 300, 32, 3
	X, y := blobs(n, d, k, 1, 3)
	splits := make([]string, n)
	for i := range splits {
		splits[i] = "train"
		if i >= 250 {
			splits[i] = "test"
		}
	}
	// three planted pairs: a test image copied into train, a same-class
	// copy with a little noise, and a copy carrying another label
	copy(X[10*d:11*d], X[260*d:261*d])
	y[10] = y[260]
	for j := 0; j < d; j++ {
		X[20*d+j] = X[21*d+j] * 1.0001
	}
	y[20] = y[21]
	copy(X[30*d:31*d], X[31*d:32*d])
	y[30] = (y[31] + 1) % k
	Z := Normalized(X, n, d)
	pairs := NearDuplicates(Z, n, d, y, splits, 0.995)
	want := map[[2]int]string{{10, 260}: DupLeak, {20, 21}: DupSameClass, {30, 31}: DupCrossClass}
	if len(pairs) != len(want) {
		t.Fatalf("pairs %+v, want %v", pairs, want)
	}
	for _, p := range pairs {
		if want[[2]int{p.A, p.B}] != p.Kind || p.Cosine < 0.995 {
			t.Errorf("pair %+v", p)
		}
	}
}

func TestOutliersAndBalance(t *testing.T) {
	const n, d, k = 200, 16, 4
	X, y := blobs(n, d, k, 3, 9)
	// row 5 points away from every class: the negated mean direction
	for j := 0; j < d; j++ {
		X[5*d+j] = float32(40 * math.Pow(-1, float64(j)))
	}
	Z := Normalized(X, n, d)
	out := Outliers(Z, n, d, y, k, DefaultOutlierZ)
	if len(out) == 0 || out[0].Row != 5 || len(out) > 4 {
		t.Errorf("outliers %+v, want row 5 first and few others", out)
	}
	b := ClassBalance([]int32{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2}, []string{"a", "b", "c"}, 3)
	if b.Ratio != 10 || len(b.Tiny) != 2 || !strings.Contains(strings.Join(b.Notes, "\n"), "--balance") {
		t.Errorf("balance %+v", b)
	}
}

func TestCheckReportTextAndHTML(t *testing.T) {
	const n, d, k = 240, 24, 3
	X, y := blobs(n, d, k, 2, 11)
	splits := make([]string, n)
	for i := range splits {
		splits[i] = "train"
		if i >= 200 {
			splits[i] = "test"
		}
	}
	y[7] = (y[7] + 1) % k              // a flipped label
	copy(X[40*d:41*d], X[210*d:211*d]) // a test image copied into train
	y[40] = y[210]
	classes := []string{"cat", "dog", "owl"}
	r, err := Check(context.Background(), Input{X: X, N: n, D: d, Labels: y, Classes: classes, Splits: splits}, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range r.Suspects {
		found = found || s.Row == 7
	}
	if !found || r.Counts.Leaks != 1 || r.Duplicates[0].A != 40 || r.Duplicates[0].B != 210 || r.CV == nil {
		t.Fatalf("suspects %+v, duplicates %+v, cv %+v", r.Suspects, r.Duplicates, r.CV)
	}
	var txt, page bytes.Buffer
	if err := r.WriteText(&txt, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(txt.String(), "1 train/test leaks") || !strings.Contains(txt.String(), "row 7\tlabelled") {
		t.Errorf("text report:\n%s", txt.String())
	}
	thumb := func(i int) string { return "data:image/png;base64,AAAA" }
	if err := r.WriteHTML(&page, func(i int) string { return fmt.Sprintf("img/%d.png", i) }, thumb); err != nil {
		t.Fatal(err)
	}
	h := page.String()
	if strings.Count(h, `<img src="data:image/png;base64,AAAA"`) < 3 || strings.Contains(h, "http") || strings.Contains(h, "ZgotmplZ") ||
		!strings.Contains(h, "img/7.png") {
		t.Errorf("page is not self-contained or misses thumbnails:\n%s", h)
	}
	// one image per class is too few for cross-validation: the report says
	// so and still runs the checks that need no training
	r2, err := Check(context.Background(), Input{X: X[:4*d], N: 4, D: d, Labels: []int32{0, 1, 2, 2}, Classes: classes}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.CV != nil || !strings.Contains(strings.Join(r2.Notes, "\n"), "no label check") {
		t.Errorf("notes %q", r2.Notes)
	}
}
