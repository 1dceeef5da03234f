// Command smalldata measures headtune's small-data machinery on
// Fashion-MNIST (Debian dataset-fashion-mnist): the figures of the README's
// small-data section come from it.
//
//	go run ./scripts/smalldata -exp calib               # raw pixels
//	go run ./scripts/smalldata -exp calib -cache DIR    # features of the last extract under DIR
//	go run ./scripts/smalldata -exp doctor -cache DIR
//	go run ./scripts/smalldata -exp augment -cache DIR  # after headtune extract --augment N
//
// calib: for 10, 20 and 50 training images per class and several seeds, a
// stratified 10% validation split is held out (as `train` does), and the
// head is calibrated two ways: "plain" is plain temperature scaling on the
// validation split (what headtune did before), "fit" is head.Fit (a
// pseudo-observation prior, out-of-fold logits when validation has fewer
// than 50 rows). Log loss, ECE, mean confidence and accuracy are measured
// on test images never used for training or calibration; mean ± std over
// seeds.
//
// doctor: 5% of the labels of a training subset are flipped at random and
// the precision and recall of audit.Check's suspects list at its default
// cut-off are measured; then 20 test images are copied into train (their
// feature rows duplicated, which is what the content-addressed cache gives
// for a copied file) and every copy must be reported as a leak.
//
// augment: heads trained on n images per class with and without the
// augmented views `extract --augment` cached for them, test accuracy with
// and without, and the paired gain; mean ± std over seeds.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/head/audit"
	"github.com/headtune/headtune/internal/fashionmnist"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

type dataset struct {
	X       []float32
	N, D    int
	Y       []int32
	Classes []string
	Train   []int // pool rows to draw training subsets from
	Test    []int // held-out rows
	what    string
	// views and viewOf: augmented view rows and their source rows (extract --augment)
	views, viewOf []int
}

func main() {
	exp := flag.String("exp", "calib", "calib, doctor, all (both), or augment (needs -cache of an extract with --augment)")
	cache := flag.String("cache", "", "cache folder of an extract of a Fashion-MNIST class-folder tree (train/ and test/); empty: raw pixels")
	seeds := flag.Int("seeds", 5, "seeds per setting")
	nTest := flag.Int("test", 2000, "test images")
	kinds := flag.String("kinds", "linear,mlp", "head kinds")
	perClass := flag.String("per-class", "10,20,50", "training images per class (calib)")
	flag.Parse()
	ds, err := load(*cache, *nTest)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smalldata:", err)
		os.Exit(1)
	}
	fmt.Printf("data: %s, %d pool rows, %d test rows, %d features\n", ds.what, len(ds.Train), len(ds.Test), ds.D)
	if *exp == "calib" || *exp == "all" {
		for _, kind := range strings.Split(*kinds, ",") {
			for _, s := range strings.Split(*perClass, ",") {
				var n int
				fmt.Sscan(s, &n)
				calib(ds, kind, n, *seeds)
			}
		}
	}
	if *exp == "doctor" || *exp == "all" {
		doctor(ds, *seeds)
	}
	if *exp == "augment" {
		for _, kind := range strings.Split(*kinds, ",") {
			for _, s := range strings.Split(*perClass, ",") {
				var n int
				fmt.Sscan(s, &n)
				augment(ds, kind, n, *seeds)
			}
		}
	}
}

// augment compares heads trained on n images per class with and without
// their augmented views (extract --augment), on the test images.
func augment(ds *dataset, kind string, perClass, seeds int) {
	if len(ds.views) == 0 {
		fmt.Fprintln(os.Stderr, "smalldata: -exp augment needs -cache of an extract with --augment")
		os.Exit(1)
	}
	viewsOf := map[int][]int{}
	for i, v := range ds.views {
		viewsOf[ds.viewOf[i]] = append(viewsOf[ds.viewOf[i]], v)
	}
	var plain, aug, gain []float64
	start := time.Now()
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 77))
		rows := sample(ds, ds.Train, perClass, rng)
		withViews := append([]int(nil), rows...)
		for _, r := range rows {
			withViews = append(withViews, viewsOf[r]...)
		}
		cfg := head.DefaultConfig(kind)
		cfg.Classes, cfg.Seed = ds.Classes, int64(seed)
		all := head.Data{X: ds.X, N: ds.N, D: ds.D, Y: ds.Y}
		var acc [2]float64
		for j, idx := range [][]int{rows, withViews} {
			m, _, err := head.Train(context.Background(), all.Subset(idx), head.Data{}, cfg, nil)
			if err != nil {
				panic(err)
			}
			acc[j] = testMetrics(m, ds).acc
		}
		plain, aug, gain = append(plain, acc[0]), append(aug, acc[1]), append(gain, acc[1]-acc[0])
	}
	fmt.Printf("%s head, %d per class (%d seeds, %.0fs): test accuracy %s without views, %s with %d views each; gain %s\n",
		kind, perClass, seeds, time.Since(start).Seconds(), head.NewMeanStd(plain), head.NewMeanStd(aug), len(viewsOf[ds.Train[0]]), head.NewMeanStd(gain))
}

func load(cache string, nTest int) (*dataset, error) {
	if cache == "" {
		X, y, err := fashionmnist.Load(fashionmnist.Dir, "train", 6000)
		if err != nil {
			return nil, err
		}
		Xt, yt, err := fashionmnist.Load(fashionmnist.Dir, "t10k", nTest)
		if err != nil {
			return nil, err
		}
		ds := &dataset{X: append(X, Xt...), N: len(y) + len(yt), D: 784, Y: append(y, yt...), Classes: fashionmnist.Classes, what: "raw pixels (784)"}
		for i := range y {
			ds.Train = append(ds.Train, i)
		}
		for i := range yt {
			ds.Test = append(ds.Test, len(y)+i)
		}
		return ds, nil
	}
	f, err := pipeline.LoadFeatures(cache, "")
	if err != nil {
		return nil, err
	}
	X, n, views, viewOf, _, err := job.AugmentedFeatures(cache, f)
	if err != nil {
		return nil, err
	}
	Y := make([]int32, n)
	copy(Y, f.Labels)
	for i, v := range views {
		Y[v] = f.Labels[viewOf[i]]
	}
	ds := &dataset{X: X, N: n, D: f.D, Y: Y, Classes: f.Classes, what: fmt.Sprintf("%s features (%d)", f.Run.Model, f.D), views: views, viewOf: viewOf}
	for i, s := range f.Splits {
		switch s {
		case "test":
			if len(ds.Test) < nTest {
				ds.Test = append(ds.Test, i)
			}
		default:
			ds.Train = append(ds.Train, i)
		}
	}
	if len(ds.Test) == 0 {
		return nil, fmt.Errorf("%s: the extract has no test/ split", cache)
	}
	return ds, nil
}

// sample draws n rows per class from pool.
func sample(ds *dataset, pool []int, n int, rng *rand.Rand) []int {
	by := map[int32][]int{}
	for _, r := range pool {
		by[ds.Y[r]] = append(by[ds.Y[r]], r)
	}
	var out []int
	for c := range ds.Classes {
		rows := by[int32(c)]
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		out = append(out, rows[:min(n, len(rows))]...)
	}
	return out
}

type metrics struct{ nll, ece, conf, acc float64 }

func testMetrics(m *head.Model, ds *dataset) metrics {
	k := len(ds.Classes)
	probs := make([]float32, len(ds.Test)*k)
	labels := make([]int32, len(ds.Test))
	p := make([]float32, k)
	var s head.Scratch
	for i, r := range ds.Test {
		m.Predict(ds.X[r*ds.D:(r+1)*ds.D], p, &s)
		copy(probs[i*k:], p)
		labels[i] = ds.Y[r]
	}
	ev, _ := head.EvaluateProbs(probs, labels, ds.Classes)
	conf := 0.0
	for i := range labels {
		mx := float32(0)
		for _, v := range probs[i*k : (i+1)*k] {
			mx = max(mx, v)
		}
		conf += float64(mx)
	}
	return metrics{ev.LogLoss, ev.ECE, conf / float64(len(labels)), ev.Accuracy}
}

func calib(ds *dataset, kind string, perClass, seeds int) {
	var before, plain, fit []metrics
	var temps [3][]float64
	var notes string
	start := time.Now()
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		rows := sample(ds, ds.Train, perClass, rng)
		labels := make([]int32, len(rows))
		for i, r := range rows {
			labels[i] = ds.Y[r]
		}
		plan, err := head.PlanSplit(labels, ds.Classes, head.SplitOptions{ValFrac: 0.1, Seed: int64(seed)})
		if err != nil {
			panic(err)
		}
		all := head.Data{X: ds.X, N: ds.N, D: ds.D, Y: ds.Y, Idx: rows}
		tr, va := all.Subset(plan.Train), all.Subset(plan.Val)
		cfg := head.DefaultConfig(kind)
		cfg.Classes, cfg.Seed = ds.Classes, int64(seed)
		res, err := head.Fit(context.Background(), tr, va, cfg, head.FitOptions{CVSeed: int64(seed)})
		if err != nil {
			panic(err)
		}
		m := res.Model
		fit = append(fit, testMetrics(m, ds))
		temps[2] = append(temps[2], m.Temperature)
		if len(res.Notes) > 0 {
			notes = res.Notes[0]
		}
		t := m.Temperature
		m.Temperature = 1
		before = append(before, testMetrics(m, ds))
		temps[0] = append(temps[0], 1)
		if va.Rows() > 0 {
			k := len(ds.Classes)
			lg := make([]float32, va.Rows()*k)
			yl := make([]int32, va.Rows())
			for i := 0; i < va.Rows(); i++ {
				m.Logits(va.Row(i), lg[i*k:(i+1)*k], nil)
				yl[i] = va.Label(i)
			}
			tp, _ := head.FitTemperatureNLL(lg, yl, k)
			m.Temperature = tp
			plain = append(plain, testMetrics(m, ds))
			temps[1] = append(temps[1], tp)
		}
		m.Temperature = t
	}
	fmt.Printf("\n%s head, %d per class (%d seeds, %.0fs): %s\n", kind, perClass, seeds, time.Since(start).Seconds(), notes)
	row := func(name string, ms []metrics, ts []float64) {
		if len(ms) == 0 {
			fmt.Printf("  %-34s (no validation split)\n", name)
			return
		}
		get := func(f func(metrics) float64) head.MeanStd {
			v := make([]float64, len(ms))
			for i, m := range ms {
				v[i] = f(m)
			}
			return head.NewMeanStd(v)
		}
		fmt.Printf("  %-34s T %-16s log loss %-16s ECE %-16s confidence %-16s accuracy %s\n", name, head.NewMeanStd(ts),
			get(func(m metrics) float64 { return m.nll }), get(func(m metrics) float64 { return m.ece }),
			get(func(m metrics) float64 { return m.conf }), get(func(m metrics) float64 { return m.acc }))
	}
	row("uncalibrated (T=1)", before, temps[0])
	row("plain scaling on validation split", plain, temps[1])
	row("head.Fit", fit, temps[2])
}

func doctor(ds *dataset, seeds int) {
	const perClass = 100
	var precs, recs, tops []float64
	leaksFound, leaksWant := 0, 0
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 5))
		rows := sample(ds, ds.Train, perClass, rng)
		n := len(rows)
		k := len(ds.Classes)
		// the subset, then 20 distinct test images copied into train, then
		// the test images (the originals of the copies among them)
		testRows := ds.Test[:min(len(ds.Test), 500)]
		leakSrc := make([]int, 20)
		for i, p := range rng.Perm(len(testRows))[:20] {
			leakSrc[i] = testRows[p]
		}
		all := append(append(append([]int(nil), rows...), leakSrc...), testRows...)
		X := make([]float32, len(all)*ds.D)
		y := make([]int32, len(all))
		splits := make([]string, len(all))
		for i, r := range all {
			copy(X[i*ds.D:], ds.X[r*ds.D:(r+1)*ds.D])
			y[i] = ds.Y[r]
			splits[i] = "train"
			if i >= n+len(leakSrc) {
				splits[i] = "test"
			}
		}
		// flip 5% of the subset's labels
		flipped := map[int]bool{}
		for len(flipped) < n/20 {
			i := rng.IntN(n)
			if !flipped[i] {
				flipped[i] = true
				y[i] = (y[i] + 1 + int32(rng.IntN(k-1))) % int32(k)
			}
		}
		r, err := audit.Check(context.Background(), audit.Input{X: X, N: len(y), D: ds.D, Labels: y, Classes: ds.Classes, Splits: splits}, audit.Options{Seed: int64(seed)})
		if err != nil {
			panic(err)
		}
		hit := 0
		for _, s := range r.Suspects {
			if flipped[s.Row] {
				hit++
			}
		}
		p, rc := float64(hit)/math.Max(1, float64(len(r.Suspects))), float64(hit)/float64(len(flipped))
		precs, recs = append(precs, p), append(recs, rc)
		top := 0 // precision of the first len(flipped) suspects (the list is most confident first)
		for _, s := range r.Suspects[:min(len(r.Suspects), len(flipped))] {
			if flipped[s.Row] {
				top++
			}
		}
		tops = append(tops, float64(top)/float64(len(flipped)))
		// every copied image must pair with its test original as a leak
		for i := range leakSrc {
			leaksWant++
			a := n + i
			for _, pr := range r.Duplicates {
				if pr.Kind == audit.DupLeak && (pr.A == a || pr.B == a) {
					leaksFound++
					break
				}
			}
		}
		fmt.Printf("doctor seed %d: %d rows, %d flipped, %d suspects: precision %.3f recall %.3f; leaks %d, cross-class %d, same-class %d pairs; %d outliers; cv accuracy %s\n",
			seed, n, len(flipped), len(r.Suspects), p, rc, r.Counts.Leaks, r.Counts.CrossClass, r.Counts.SameClass, r.Counts.Outliers, r.CV.Accuracy)
	}
	fmt.Printf("\ndoctor (%s, %d per class, 5%% flipped, %d seeds): precision %s, recall %s, precision of the first 50 suspects %s; copied test images reported as leaks: %d of %d\n",
		ds.what, perClass, seeds, head.NewMeanStd(precs), head.NewMeanStd(recs), head.NewMeanStd(tops), leaksFound, leaksWant)
}
