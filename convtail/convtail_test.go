package convtail

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

func randLayer(rng *rand.Rand, inC, h, w, outC, k, stride, pad, groups int, act string) Layer {
	l := Layer{InC: inC, InH: h, InW: w, OutC: outC, K: k, Stride: stride, Pad: pad, Groups: groups, Act: act}
	l.W = make([]float32, outC*inC/groups*k*k)
	l.B = make([]float32, outC)
	for i := range l.W {
		l.W[i] = float32(rng.NormFloat64() * 0.5)
	}
	for i := range l.B {
		l.B[i] = float32(rng.NormFloat64() * 0.1)
	}
	return l
}

// naive is the convolution by its definition.
func naive(l *Layer, x []float32) []float32 {
	oh, ow := l.OutH(), l.OutW()
	y := make([]float32, l.OutLen())
	cg, og := l.InC/l.Groups, l.OutC/l.Groups
	for o := 0; o < l.OutC; o++ {
		g := o / og
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				s := float64(l.B[o])
				for c := 0; c < cg; c++ {
					for ky := 0; ky < l.K; ky++ {
						for kx := 0; kx < l.K; kx++ {
							iy, ix := oy*l.Stride-l.Pad+ky, ox*l.Stride-l.Pad+kx
							if iy < 0 || iy >= l.InH || ix < 0 || ix >= l.InW {
								continue
							}
							s += float64(l.W[((o*cg+c)*l.K+ky)*l.K+kx]) * float64(x[((g*cg+c)*l.InH+iy)*l.InW+ix])
						}
					}
				}
				y[(o*oh+oy)*ow+ox] = act(l.Act, float32(s))
			}
		}
	}
	return y
}

var geometries = []struct {
	name                                    string
	inC, h, w, outC, k, stride, pad, groups int
	act                                     string
}{
	{"3x3 same leaky", 4, 5, 6, 6, 3, 1, 1, 1, ActLeaky},
	{"3x3 stride 2", 4, 7, 7, 3, 3, 2, 1, 1, ActReLU},
	{"1x1", 8, 3, 3, 5, 1, 1, 0, 1, ActNone},
	{"1x1 grouped", 8, 3, 4, 4, 1, 1, 0, 2, ActLeaky},
	{"depthwise 3x3 relu6", 6, 5, 5, 6, 3, 1, 1, 6, ActReLU6},
}

func TestForwardMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, g := range geometries {
		l := randLayer(rng, g.inC, g.h, g.w, g.outC, g.k, g.stride, g.pad, g.groups, g.act)
		if err := l.Validate(); err != nil {
			t.Fatal(err)
		}
		x := make([]float32, l.InLen())
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		y := make([]float32, l.OutLen())
		var s Scratch
		l.Forward(x, y, &s)
		want := naive(&l, x)
		for i := range y {
			if math.Abs(float64(y[i]-want[i])) > 1e-4 {
				t.Fatalf("%s: y[%d] = %v, definition gives %v", g.name, i, y[i], want[i])
			}
		}
	}
}

// TestBackwardMatchesFiniteDifferences checks dW, dB and dx of
// L = sum(r .* y) against central differences in float64 terms.
func TestBackwardMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, g := range geometries {
		l := randLayer(rng, g.inC, g.h, g.w, g.outC, g.k, g.stride, g.pad, g.groups, g.act)
		x := make([]float32, l.InLen())
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		r := make([]float32, l.OutLen())
		for i := range r {
			r[i] = float32(rng.NormFloat64())
		}
		loss := func() float64 {
			y := naive(&l, x)
			var s float64
			for i := range y {
				s += float64(r[i]) * float64(y[i])
			}
			return s
		}
		y := make([]float32, l.OutLen())
		var s Scratch
		l.Forward(x, y, &s)
		dy := append([]float32(nil), r...)
		dW, dB, dx := make([]float32, len(l.W)), make([]float32, len(l.B)), make([]float32, len(x))
		l.Backward(x, y, dy, dW, dB, dx, &s)
		check := func(what string, p []float32, grad []float32) {
			for _, i := range []int{0, len(p) / 3, len(p) / 2, len(p) - 1} {
				const eps = 1e-3
				old := p[i]
				p[i] = old + eps
				up := loss()
				p[i] = old - eps
				down := loss()
				p[i] = old
				num := (up - down) / (2 * eps)
				if d := math.Abs(num - float64(grad[i])); d > 2e-2*max(1, math.Abs(num)) {
					t.Errorf("%s: d%s[%d] = %v, finite differences %v", g.name, what, i, grad[i], num)
				}
			}
		}
		check("W", l.W, dW)
		check("B", l.B, dB)
		check("x", x, dx)
	}
}

// TestTrainingLearns: on maps whose class sets the sign of one channel's
// centre, tuning a conv tail that starts from weights blind to that
// channel beats the frozen tail.
func TestTrainingLearns(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	l := randLayer(rng, 4, 5, 5, 8, 3, 1, 1, 1, ActReLU)
	for o := 0; o < l.OutC; o++ { // blind to channel 3
		for k := 0; k < 9; k++ {
			l.W[(o*4+3)*9+k] = 0
		}
	}
	n := 400
	d := Data{X: make([]float32, n*l.InLen()), N: n, Y: make([]int32, n)}
	for i := 0; i < n; i++ {
		for j := 0; j < l.InLen(); j++ {
			d.X[i*l.InLen()+j] = float32(rng.NormFloat64())
		}
		d.Y[i] = int32(i % 2)
		sign := float32(1 - 2*(i%2))
		d.X[i*l.InLen()+3*25+12] = 3 * sign
	}
	cfg := Config{Epochs: 30, BatchSize: 32, LR: 1e-2, Seed: 1, Threads: 2}
	acc := func(m *Model) float64 {
		p := m.Predict(d, 2)
		ok := 0
		for i := range p {
			if p[i] == d.Y[i] {
				ok++
			}
		}
		return float64(ok) / float64(n)
	}
	frozen, _, err := Train(context.Background(), []Layer{l}, 2, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TailLRScale = 1
	tuned, rep, err := Train(context.Background(), []Layer{l}, 2, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fa, ta := acc(frozen), acc(tuned)
	t.Logf("frozen %.3f tuned %.3f (train loss %.3f)", fa, ta, rep.TrainLoss)
	if fa > 0.7 || ta < 0.9 {
		t.Fatalf("frozen %.3f tuned %.3f: want the frozen tail near chance and the tuned one above 0.9", fa, ta)
	}
	if tuned.Tail[0].W[3*9+4] == 0 || l.W[3*9+4] != 0 {
		t.Fatal("tuning left the blind weights at zero, or modified the caller's layer")
	}
}

func TestTrainStartsFromGivenHead(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	l := randLayer(rng, 2, 3, 3, 3, 1, 1, 0, 1, ActNone)
	d := Data{X: make([]float32, 4*l.InLen()), N: 4, Y: []int32{0, 1, 0, 1}}
	w := []float32{1, 2, 3, 4, 5, 6}
	m, _, err := Train(context.Background(), []Layer{l}, 2, d, Config{InitW: w, InitB: []float32{7, 8}})
	if err != nil {
		t.Fatal(err)
	}
	if m.HeadW[5] != 6 || m.HeadB[1] != 8 {
		t.Fatalf("head %v %v, want the given one after 0 epochs", m.HeadW, m.HeadB)
	}
	if _, _, err := Train(context.Background(), []Layer{l}, 2, d, Config{InitW: w[:5], InitB: []float32{7, 8}}); err == nil {
		t.Fatal("a head of the wrong size was accepted")
	}
}

// TestStandardisedHead: a head on standardised pooled features computes
// what the same head folded onto raw features computes, and the tail's
// first Adam step (the sign of its gradient) is the same in both
// parameterisations, so the gradient goes through the standardisation.
func TestStandardisedHead(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := randLayer(rng, 3, 4, 4, 4, 3, 1, 1, 1, ActLeaky)
	// Two layers: the first one's gradient mixes the channels that the
	// standardisation scales differently.
	l1 := randLayer(rng, 4, 4, 4, 4, 1, 1, 0, 1, ActNone)
	tail := []Layer{l, l1}
	n := 16
	d := Data{X: make([]float32, n*l.InLen()), N: n, Y: make([]int32, n)}
	for i := range d.X {
		d.X[i] = float32(rng.NormFloat64())
	}
	for i := range d.Y {
		d.Y[i] = int32(i % 3)
	}
	mean, std := []float32{0.1, -0.2, 0.3, 0}, []float32{0.5, 2, 0.25, 1}
	w := make([]float32, 3*4)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	b := []float32{0.1, 0.2, -0.3}
	fw, fb := make([]float32, len(w)), append([]float32(nil), b...)
	for j := 0; j < 3; j++ {
		for i := 0; i < 4; i++ {
			fw[j*4+i] = w[j*4+i] / std[i]
			fb[j] -= w[j*4+i] * mean[i] / std[i]
		}
	}
	cfg := Config{Epochs: 1, BatchSize: n, LR: 1e-3, TailLRScale: 1, Seed: 1, Threads: 1, InitW: w, InitB: b, Mean: mean, Std: std}
	folded := cfg
	folded.InitW, folded.InitB, folded.Mean, folded.Std = fw, fb, nil, nil
	zero := cfg
	zero.Epochs = 0
	zeroF := folded
	zeroF.Epochs = 0
	ms, _, err := Train(context.Background(), tail, 3, d, zero)
	if err != nil {
		t.Fatal(err)
	}
	mf, _, err := Train(context.Background(), tail, 3, d, zeroF)
	if err != nil {
		t.Fatal(err)
	}
	f := ms.Features(d, 1)
	a, c := make([]float32, 3), make([]float32, 3)
	for i := 0; i < n; i++ {
		ms.Logits(f[i*4:(i+1)*4], a)
		mf.Logits(f[i*4:(i+1)*4], c)
		for j := range a {
			if math.Abs(float64(a[j]-c[j])) > 1e-5 {
				t.Fatalf("image %d: standardised logits %v, folded %v", i, a, c)
			}
		}
	}
	ts, _, err := Train(context.Background(), tail, 3, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tf, _, err := Train(context.Background(), tail, 3, d, folded)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range l.W {
		if math.Abs(float64(ts.Tail[0].W[i]-tf.Tail[0].W[i])) < 1e-6 && ts.Tail[0].W[i] != l.W[i] {
			same++
		}
	}
	if same < len(l.W)*95/100 {
		t.Fatalf("%d of %d tail weights took the same first step in both parameterisations", same, len(l.W))
	}
}

// TestTrainOnRowSubset: Data.Idx trains on those rows of a larger set
// exactly as on a copy of them.
func TestTrainOnRowSubset(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	l := randLayer(rng, 2, 3, 3, 4, 3, 1, 1, 1, ActReLU)
	n := 20
	d := Data{X: make([]float32, n*l.InLen()), N: n, Y: make([]int32, n)}
	for i := range d.X {
		d.X[i] = float32(rng.NormFloat64())
	}
	for i := range d.Y {
		d.Y[i] = int32(i % 2)
	}
	idx := []int{1, 4, 5, 8, 11, 12, 17, 19}
	sub := Data{N: len(idx)}
	for _, i := range idx {
		sub.X = append(sub.X, d.X[i*l.InLen():(i+1)*l.InLen()]...)
		sub.Y = append(sub.Y, d.Y[i])
	}
	cfg := Config{Epochs: 3, BatchSize: 3, LR: 1e-2, TailLRScale: 1, Seed: 2, Threads: 1}
	d.Idx = idx
	a, _, err := Train(context.Background(), []Layer{l}, 2, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Train(context.Background(), []Layer{l}, 2, sub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Tail[0].W {
		if a.Tail[0].W[i] != b.Tail[0].W[i] {
			t.Fatalf("weight %d: %g on the rows of Idx, %g on their copy", i, a.Tail[0].W[i], b.Tail[0].W[i])
		}
	}
	d.Idx = []int{0, n}
	if _, _, err := Train(context.Background(), []Layer{l}, 2, d, cfg); err == nil {
		t.Fatal("a row index out of range was accepted")
	}
}
