package head

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/headtune/headtune/dense"
)

// objective is the full-batch training objective of m on d as Train defines
// it (mean class-weighted smoothed cross-entropy + λ/2·Σ||W||²), computed
// independently of the trainers.
func objective(m *Model, d Data, eps, lambda float64) float64 {
	k := m.NumClasses()
	logits := make([]float32, d.Rows()*k)
	m.logitsData(d, logits, 1)
	g := make([]float32, k)
	e := make([]float64, k)
	f := 0.0
	for i := 0; i < d.Rows(); i++ {
		f += ceGrad(logits[i*k:(i+1)*k], int(d.Label(i)), eps, 1, g, e)
	}
	f /= float64(d.Rows())
	for _, l := range m.Layers {
		for _, w := range l.W {
			f += 0.5 * lambda * float64(w) * float64(w)
		}
	}
	return f
}

func TestLBFGSGradientMatchesFiniteDifferences(t *testing.T) {
	d := mixture(300, 7, 3, 1, 11)
	for _, tc := range []struct {
		name   string
		eps, c float64
		bal    bool
	}{
		{"plain", 0, 1, false},
		{"smoothing", 0.1, 1, false},
		{"strong-l2", 0, 0.01, false},
		{"balanced", 0, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checked := false
			lbfgsTestHook = func(eval func([]float64) (float64, []float64), x0 []float64) {
				rng := rand.New(rand.NewPCG(1, 2))
				x := make([]float64, len(x0))
				for i := range x {
					x[i] = rng.NormFloat64() * 0.3
				}
				_, g := eval(x)
				grad := append([]float64(nil), g...)
				const h = 1e-3
				for i := range x {
					xi := x[i]
					x[i] = xi + h
					fp, _ := eval(x)
					x[i] = xi - h
					fm, _ := eval(x)
					x[i] = xi
					fd := (fp - fm) / (2 * h)
					if math.Abs(fd-grad[i]) > 1e-4+1e-3*math.Abs(fd) {
						t.Errorf("param %d: analytic %.6g, finite difference %.6g", i, grad[i], fd)
					}
				}
				checked = true
			}
			defer func() { lbfgsTestHook = nil }()
			cfg := DefaultConfig(KindLinear)
			cfg.LabelSmoothing, cfg.C, cfg.Balance, cfg.MaxIter = tc.eps, tc.c, tc.bal, 1
			if _, _, err := Train(context.Background(), d, Data{}, cfg, nil); err != nil {
				t.Fatal(err)
			}
			if !checked {
				t.Fatal("hook not called")
			}
		})
	}
}

// TestBackpropMatchesFiniteDifferences recovers the mini-batch gradient
// from one plain SGD step over the whole set (ΔW = -lr·g) and compares it
// with finite differences of the objective, for every layer kind.
var hStep = 1e-3 // finite-difference step: larger steps cross ReLU kinks

func TestBackpropMatchesFiniteDifferences(t *testing.T) {
	d := mixture(64, 6, 3, 1, 5)
	teacher := []dense.Layer{newDense(6, 5, dense.ActReLU, rand.New(rand.NewPCG(3, 3)))}
	for _, tc := range []struct {
		name   string
		hidden []int
		init   []dense.Layer
		eps    float64
		wd     float64
	}{
		{"linear", nil, nil, 0, 0},
		{"linear-l2-smooth", nil, nil, 0.1, 0.01},
		{"mlp", []int{8, 5}, nil, 0, 0.001},
		{"tuned", []int{4}, teacher, 0.05, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind := KindLinear
			if tc.hidden != nil {
				kind = KindMLP
			}
			cfg := DefaultConfig(kind)
			cfg.Optimizer, cfg.Hidden, cfg.InitLayers = OptSGD, tc.hidden, tc.init
			cfg.LabelSmoothing, cfg.WeightDecay = tc.eps, tc.wd
			cfg.Momentum, cfg.Dropout, cfg.Warmup, cfg.Schedule = 0, 0, 0, ScheduleConstant
			cfg.Epochs, cfg.BatchSize, cfg.Patience, cfg.TunedLRScale = 1, d.N, 0, 1
			const lr = 1e-3
			cfg.LR = lr
			// The initial weights: a zero-step run (lr is tiny but not zero,
			// so run with the same seed and read the layers before the step
			// by training with an lr of 1e-30).
			c0 := cfg
			c0.LR = 1e-30
			m0, _, err := Train(context.Background(), d, Data{}, c0, nil)
			if err != nil {
				t.Fatal(err)
			}
			m1, _, err := Train(context.Background(), d, Data{}, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			m0.Temperature, m1.Temperature = 1, 1
			rng := rand.New(rand.NewPCG(7, 7))
			for li := range m0.Layers {
				for trial := 0; trial < 6; trial++ {
					i := rng.IntN(len(m0.Layers[li].W))
					g := float64(m0.Layers[li].W[i]-m1.Layers[li].W[i]) / lr
					w := m0.Layers[li].W[i]
					h := float32(hStep)
					m0.Layers[li].W[i] = w + h
					fp := objective(m0, d, tc.eps, tc.wd)
					m0.Layers[li].W[i] = w - h
					fm := objective(m0, d, tc.eps, tc.wd)
					m0.Layers[li].W[i] = w
					fd := (fp - fm) / (2 * float64(h))
					if math.Abs(fd-g) > 2e-4+2e-2*math.Abs(fd) {
						t.Errorf("layer %d weight %d: backprop %.6g, finite difference %.6g", li, i, g, fd)
					}
				}
			}
		})
	}
}

func TestLinearHeadSeparableMixture(t *testing.T) {
	all := mixture(4000, 32, 6, 1.5, 21)
	tr, _, te, err := StratifiedSplit(all.Y, 0, 0.25, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{OptLBFGS, OptAdam, OptSGD} {
		t.Run(opt, func(t *testing.T) {
			cfg := DefaultConfig(KindLinear)
			cfg.Optimizer, cfg.Epochs = opt, 15
			cfg.LR = map[string]float64{OptAdam: 1e-2, OptSGD: 5e-2, OptLBFGS: 0}[opt]
			m, rep, err := Train(context.Background(), all.Subset(tr), Data{}, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if acc := accuracy(m, all.Subset(te)); acc < 0.98 {
				t.Errorf("test accuracy %.4f after %d iterations (%s), want >= 0.98", acc, rep.Iters, rep.Stopped)
			}
		})
	}
}

func TestMLPLearnsXOR(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	const n, dim = 3000, 6
	X := make([]float32, n*dim)
	Y := make([]int32, n)
	for i := 0; i < n; i++ {
		a, b := rng.Float64()*2-1, rng.Float64()*2-1
		X[i*dim], X[i*dim+1] = float32(a), float32(b)
		for j := 2; j < dim; j++ {
			X[i*dim+j] = float32(rng.NormFloat64())
		}
		if a*b > 0 {
			Y[i] = 1
		}
	}
	all := Data{X: X, N: n, D: dim, Y: Y}
	tr, va, te, _ := StratifiedSplit(Y, 0.15, 0.15, 2)
	lin, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), DefaultConfig(KindLinear), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(KindMLP)
	cfg.Hidden, cfg.Epochs, cfg.LR, cfg.Dropout = []int{32}, 60, 1e-2, 0
	mlp, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	la, ma := accuracy(lin, all.Subset(te)), accuracy(mlp, all.Subset(te))
	if la > 0.65 || ma < 0.93 {
		t.Errorf("XOR test accuracy: linear %.3f (want <= 0.65), mlp %.3f (want >= 0.93)", la, ma)
	}
}

func TestDeterministicAcrossRunsAndThreads(t *testing.T) {
	all := mixture(1500, 24, 4, 0.4, 4)
	tr, va, _, _ := StratifiedSplit(all.Y, 0.2, 0, 3)
	for _, kind := range []string{KindLinear, KindMLP} {
		t.Run(kind, func(t *testing.T) {
			run := func(seed int64, threads int) *Model {
				cfg := DefaultConfig(kind)
				cfg.Seed, cfg.Threads, cfg.Epochs = seed, threads, 4
				if kind == KindMLP {
					cfg.Hidden = []int{40, 20} // several phase-2 parts per layer
				}
				m, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			a, b, c := run(1, 1), run(1, 2), run(1, 3)
			for _, o := range []*Model{b, c} {
				if !sameWeights(a, o) || a.Temperature != o.Temperature {
					t.Fatalf("weights differ between thread counts 1 and %d", o.Train.Threads)
				}
			}
			if kind == KindMLP && sameWeights(a, run(2, 2)) {
				t.Error("seeds 1 and 2 gave identical weights")
			}
		})
	}
}

func sameWeights(a, b *Model) bool {
	if len(a.Layers) != len(b.Layers) {
		return false
	}
	eq := func(x, y []float32) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				return false
			}
		}
		return true
	}
	for i := range a.Layers {
		if !eq(a.Layers[i].W, b.Layers[i].W) || !eq(a.Layers[i].B, b.Layers[i].B) {
			return false
		}
	}
	return eq(a.Mean, b.Mean) && eq(a.Std, b.Std)
}

func TestEarlyStoppingKeepsBestWeights(t *testing.T) {
	// Few noisy rows and a wide MLP without regularisation: overfits fast.
	all := mixture(400, 30, 3, 0.15, 8)
	tr, va, _, _ := StratifiedSplit(all.Y, 0.5, 0, 1)
	cfg := DefaultConfig(KindMLP)
	cfg.Hidden, cfg.Dropout, cfg.WeightDecay, cfg.LR = []int{256}, 0, 0, 1e-2
	cfg.Epochs, cfg.Patience, cfg.Schedule, cfg.Warmup = 300, 3, ScheduleConstant, 0
	m, rep, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != "early-stop" || rep.Epochs >= cfg.Epochs {
		t.Fatalf("stopped %q after %d epochs, want early stop", rep.Stopped, rep.Epochs)
	}
	if rep.Epochs != rep.BestEpoch+cfg.Patience {
		t.Errorf("stopped at epoch %d, best %d, patience %d", rep.Epochs, rep.BestEpoch, cfg.Patience)
	}
	best := math.Inf(1)
	for _, h := range rep.History {
		best = math.Min(best, h.ValLoss)
	}
	tm := &trainer{m: m, val: all.Subset(va), k: 3, threads: 2, cw: []float64{1, 1, 1}}
	got, _ := tm.valLoss(make([]float32, all.Subset(va).Rows()*3))
	if math.Abs(got-best) > 1e-9 {
		t.Errorf("returned model has validation loss %.6f, best epoch had %.6f", got, best)
	}
	if last := rep.History[len(rep.History)-1].ValLoss; !(last > best) {
		t.Errorf("last epoch val loss %.6f not worse than best %.6f", last, best)
	}
}

func TestBalanceRaisesMinorityRecall(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const n, dim = 4000, 4
	X := make([]float32, n*dim)
	Y := make([]int32, n)
	for i := 0; i < n; i++ {
		y := int32(0)
		if rng.Float64() < 0.05 {
			y = 1
		}
		Y[i] = y
		for j := 0; j < dim; j++ {
			X[i*dim+j] = float32(rng.NormFloat64() + float64(y))
		}
	}
	d := Data{X: X, N: n, D: dim, Y: Y}
	recall := func(bal bool) float64 {
		cfg := DefaultConfig(KindLinear)
		cfg.Balance = bal
		m, _, err := Train(context.Background(), d, Data{}, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Evaluate(m, d)
		if err != nil {
			t.Fatal(err)
		}
		return e.Recall[1]
	}
	plain, bal := recall(false), recall(true)
	if !(bal > plain+0.2) {
		t.Errorf("minority recall: %.3f balanced vs %.3f plain, want a clear gain", bal, plain)
	}
}

func TestLabelSmoothingLowersConfidence(t *testing.T) {
	d := mixture(1500, 16, 3, 1.2, 6)
	conf := func(eps float64) float64 {
		cfg := DefaultConfig(KindLinear)
		cfg.LabelSmoothing, cfg.C = eps, 100
		m, _, err := Train(context.Background(), d, Data{}, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Temperature = 1
		p := make([]float32, d.N*3)
		if err := m.PredictBatch(d.X, d.N, p); err != nil {
			t.Fatal(err)
		}
		s := 0.0
		for i := 0; i < d.N; i++ {
			s += float64(p[i*3+argmax(p[i*3:i*3+3])])
		}
		return s / float64(d.N)
	}
	c0, c2 := conf(0), conf(0.2)
	if !(c2 < c0-0.02) || c2 > 1-0.2+0.2/3+0.01 {
		t.Errorf("mean confidence %.4f with smoothing 0.2 vs %.4f without", c2, c0)
	}
}

func TestTrainCancel(t *testing.T) {
	d := mixture(500, 8, 3, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, kind := range []string{KindLinear, KindMLP} {
		_, _, err := Train(ctx, d, Data{}, DefaultConfig(kind), nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %v, want context.Canceled", kind, err)
		}
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	d := mixture(50, 4, 3, 1, 1)
	mod := func(f func(*Config)) Config { c := DefaultConfig(KindLinear); f(&c); return c }
	for _, tc := range []struct {
		name string
		data Data
		val  Data
		cfg  Config
		want string
	}{
		{"kind", d, Data{}, mod(func(c *Config) { c.Kind = "svm" }), "unknown head kind"},
		{"optimizer", d, Data{}, mod(func(c *Config) { c.Optimizer = "rmsprop" }), "unknown optimizer"},
		{"lbfgs-mlp", d, Data{}, func() Config { c := DefaultConfig(KindMLP); c.Optimizer = OptLBFGS; return c }(), "linear heads"},
		{"dropout", d, Data{}, mod(func(c *Config) { c.Dropout = 1 }), "dropout"},
		{"smoothing", d, Data{}, mod(func(c *Config) { c.LabelSmoothing = math.NaN() }), "label smoothing"},
		{"shape", Data{X: d.X[:10], N: 50, D: 4, Y: d.Y}, Data{}, DefaultConfig(KindLinear), "feature values"},
		{"label", Data{X: d.X, N: 50, D: 4, Y: append([]int32{-1}, d.Y[1:]...)}, Data{}, DefaultConfig(KindLinear), "label -1"},
		{"classes", d, Data{}, mod(func(c *Config) { c.Classes = []string{"a", "b"} }), "out of range"},
		{"val-width", d, Data{X: make([]float32, 10), N: 2, D: 5, Y: []int32{0, 1}}, DefaultConfig(KindLinear), "validation rows have 5 features"},
		{"init-width", d, Data{}, func() Config {
			c := DefaultConfig(KindLinear)
			c.Optimizer = OptAdam
			c.InitLayers = []dense.Layer{{In: 5, Out: 2, W: make([]float32, 10), B: make([]float32, 2)}}
			return c
		}(), "takes 5 inputs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Train(context.Background(), tc.data, tc.val, tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTuneLayersFineTunesPretrained(t *testing.T) {
	// A frozen random ReLU layer in front of the head: the classes depend on
	// the raw input, so the pretrained layer must change to help.
	all := standardized(mixture(2000, 12, 4, 0.6, 12))
	tr, va, te, _ := StratifiedSplit(all.Y, 0.15, 0.15, 1)
	pre := newDense(12, 6, dense.ActReLU, rand.New(rand.NewPCG(4, 4)))
	orig := pre.Clone()
	cfg := DefaultConfig(KindLinear)
	cfg.Optimizer, cfg.Epochs, cfg.LR, cfg.TunedLRScale = OptAdam, 30, 1e-2, 1
	cfg.InitLayers = []dense.Layer{pre}
	m, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Tuned != 1 || len(m.Layers) != 2 || m.Mean != nil {
		t.Fatalf("tuned %d, %d layers, standardised %v", m.Tuned, len(m.Layers), m.Mean != nil)
	}
	for i := range pre.W {
		if pre.W[i] != orig.W[i] {
			t.Fatal("Train modified the caller's InitLayers")
		}
	}
	changed := 0
	for i := range pre.W {
		if m.Layers[0].W[i] != pre.W[i] {
			changed++
		}
	}
	frozen := DefaultConfig(KindLinear)
	frozen.Optimizer, frozen.Epochs, frozen.LR, frozen.TunedLRScale = OptAdam, 30, 1e-2, 0
	frozen.InitLayers = []dense.Layer{pre}
	mf, _, err := Train(context.Background(), all.Subset(tr), all.Subset(va), frozen, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pre.W {
		if mf.Layers[0].W[i] != pre.W[i] {
			t.Fatal("TunedLRScale 0 changed the pretrained layer")
		}
	}
	at, af := accuracy(m, all.Subset(te)), accuracy(mf, all.Subset(te))
	t.Logf("test accuracy: tuned %.3f, frozen %.3f", at, af)
	if changed < len(pre.W)/2 || !(at > af+0.02) {
		t.Errorf("tuned: %d/%d weights changed, accuracy %.3f vs %.3f frozen", changed, len(pre.W), at, af)
	}
}

func TestStratifiedSplit(t *testing.T) {
	labels := make([]int32, 1000)
	for i := range labels {
		labels[i] = int32(i % 7 % 3) // uneven classes
	}
	for _, tc := range []struct{ val, test float64 }{{0.1, 0.2}, {0, 0.3}, {0.25, 0}, {0, 0}} {
		tr, va, te, err := StratifiedSplit(labels, tc.val, tc.test, 42)
		if err != nil {
			t.Fatal(err)
		}
		tr2, va2, te2, _ := StratifiedSplit(labels, tc.val, tc.test, 42)
		if !equalInts(tr, tr2) || !equalInts(va, va2) || !equalInts(te, te2) {
			t.Fatal("split is not deterministic")
		}
		seen := make([]int, len(labels))
		for _, s := range [][]int{tr, va, te} {
			for _, i := range s {
				seen[i]++
			}
		}
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("row %d in %d sets", i, c)
			}
		}
		count := func(s []int, c int32) int {
			n := 0
			for _, i := range s {
				if labels[i] == c {
					n++
				}
			}
			return n
		}
		for c := int32(0); c < 3; c++ {
			nc := count(tr, c) + count(va, c) + count(te, c)
			if math.Abs(float64(count(te, c))-tc.test*float64(nc)) > 1 || math.Abs(float64(count(va, c))-tc.val*float64(nc)) > 1 {
				t.Errorf("val %g test %g class %d: %d val, %d test of %d", tc.val, tc.test, c, count(va, c), count(te, c), nc)
			}
		}
	}
	a, _, _, _ := StratifiedSplit(labels, 0.2, 0.2, 1)
	b, _, _, _ := StratifiedSplit(labels, 0.2, 0.2, 2)
	if equalInts(a, b) {
		t.Error("different seeds gave the same split")
	}
	for _, bad := range [][2]float64{{-0.1, 0}, {0.5, 0.5}, {math.NaN(), 0}} {
		if _, _, _, err := StratifiedSplit(labels, bad[0], bad[1], 1); err == nil {
			t.Errorf("fractions %v accepted", bad)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCheckClasses(t *testing.T) {
	found := []string{"cat", "dog", "fox"}
	if err := CheckClasses(3, found); err != nil {
		t.Error(err)
	}
	if err := CheckClasses(0, found); err != nil {
		t.Error(err)
	}
	err := CheckClasses(7, found)
	if err == nil || !strings.Contains(err.Error(), "cat, dog, fox") || !strings.Contains(err.Error(), "7") {
		t.Errorf("error %v should list the classes found", err)
	}
}
