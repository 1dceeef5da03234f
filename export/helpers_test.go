package export

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/dense"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
)

// parityTol is the largest absolute probability difference allowed between
// an exported model run in ONNX Runtime and head.PredictBatch on the same
// features (the bar).
const parityTol = 1e-5

// ortReady loads ONNX Runtime or skips the test, loudly.
func ortReady(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		if errors.Is(err, ort.ErrLibraryMissing) {
			testasset.Skip(t, "ONNX Runtime is not available (%v); exported models were not run (set %s)", err, ort.LibraryEnv)
		}
		t.Fatal(err)
	}
}

// fixture is a cut test backbone with a batch of random images, their
// normalised and raw-pixel tensors, and the features ONNX Runtime computes
// for them.
type fixture struct {
	kind   string
	full   *onnxpb.ModelProto
	cut    *onnxpb.ModelProto
	choice *backbone.FeatureChoice
	tuned  []dense.Layer // pretrained dense layers for --tune-layers fixtures
	spec   imaging.Spec
	input  string
	n, d   int
	norm   []float32 // [n * TensorLen] what the backbone takes
	raw    []float32 // [n * TensorLen] raw 0..255 pixels, same geometry
	feats  []float32 // [n * d]
	labels []int32   // [n] a learnable labelling of feats
	k      int
	// synthetic is true when ONNX Runtime was absent and feats are
	// stand-ins rather than the backbone's output.
	synthetic bool
}

var (
	fixMu    sync.Mutex
	fixtures = map[string]*fixture{}
)

// getFixture builds (once per test binary) the fixture for a testmodels.Model kind
// at size x size with n images and k classes, cut before the last tune
// dense layers when tune > 0. The features come from ONNX Runtime; where it
// is absent they are pseudo-random stand-ins (fixture.synthetic), good for
// structural tests only: tests that compare numbers call ortReady first.
func getFixture(t testing.TB, kind string, size, tune, n, k int) *fixture {
	t.Helper()
	key := fmt.Sprint(kind, size, tune, n, k)
	fixMu.Lock()
	defer fixMu.Unlock()
	if f := fixtures[key]; f != nil {
		return f
	}
	full := testmodels.Model(kind, size)
	f, err := newFixture(full, kind, "imagenet", tune, n, k)
	if err != nil {
		t.Fatal(err)
	}
	fixtures[key] = f
	return f
}

// newFixture builds a fixture for any single-input backbone, with the named
// imaging preset adapted to its input.
func newFixture(full *onnxpb.ModelProto, kind, preset string, tune, n, k int) (*fixture, error) {
	spec, err := imaging.Preset(preset)
	if err != nil {
		return nil, err
	}
	return newFixtureSpec(full, kind, "", spec, false, tune, n, k)
}

// newFixtureSpec builds a fixture cut at featureTensor ("" picks it as
// headtune does) with the given spec, adapted to the model's input unless
// exact is true.
func newFixtureSpec(full *onnxpb.ModelProto, kind, featureTensor string, spec imaging.Spec, exact bool, tune, n, k int) (*fixture, error) {
	f := &fixture{kind: kind, full: full, n: n, k: k}
	choice, err := backbone.FindFeatureTensor(full, featureTensor)
	if err != nil {
		return nil, err
	}
	if tune > 0 {
		layers, err := backbone.DenseChainN(full, choice.Tensor, tune)
		if err != nil {
			return nil, err
		}
		if len(layers) != tune {
			return nil, fmt.Errorf("%s: %d dense layers, want %d", kind, len(layers), tune)
		}
		for _, l := range layers {
			f.tuned = append(f.tuned, l.Layer)
		}
		if choice, err = backbone.FindFeatureTensor(full, layers[0].Input); err != nil {
			return nil, err
		}
	}
	f.choice = choice
	if f.cut, err = backbone.CutAtFeature(full, choice); err != nil {
		return nil, err
	}
	inp, err := backbone.ImageInput(f.cut)
	if err != nil {
		return nil, err
	}
	name, layout, ch, hgt, wid := inp.Name, inp.Layout, inp.Channels, inp.Height, inp.Width
	f.input = name
	f.spec = spec
	if !exact {
		f.spec = spec.WithInput(wid, hgt, ch, layout)
	}
	if err := f.spec.Validate(); err != nil {
		return nil, err
	}
	f.d = int(choice.Dim)

	// Random images with some low-frequency structure.
	rng := rand.New(rand.NewPCG(uint64(len(kind)), uint64(n)))
	tl := f.spec.TensorLen()
	f.norm = make([]float32, n*tl)
	f.raw = make([]float32, n*tl)
	rawSpec := (&Meta{Spec: f.spec, WithPreprocessing: true}).FeedSpec()
	var sc imaging.Scratch
	img := imaging.NewRGB(wid, hgt)
	for i := 0; i < n; i++ {
		base := [3]float64{rng.Float64() * 255, rng.Float64() * 255, rng.Float64() * 255}
		for p := 0; p < wid*hgt; p++ {
			x, y := p%wid, p/wid
			for c := 0; c < 3; c++ {
				v := base[c] + 60*math.Sin(float64(x*(c+1))/5+float64(i)) + 40*math.Cos(float64(y)/7) + rng.NormFloat64()*20
				img.Pix[3*p+c] = uint8(min(255, max(0, v)))
			}
		}
		if err := f.spec.Fill(img, f.norm[i*tl:(i+1)*tl], &sc); err != nil {
			return nil, err
		}
		if err := rawSpec.Fill(img, f.raw[i*tl:(i+1)*tl], &sc); err != nil {
			return nil, err
		}
	}
	if _, err := ort.Init(""); errors.Is(err, ort.ErrLibraryMissing) {
		f.synthetic = true
		f.feats = make([]float32, n*f.d)
		for i := range f.feats {
			f.feats[i] = float32(rng.ExpFloat64())
		}
	} else {
		data, err := backbone.MarshalModel(f.cut)
		if err != nil {
			return nil, err
		}
		outs, err := runModel(data, f.input, f.spec, f.norm, n, []string{OutputFeatures}, []int{f.d})
		if err != nil {
			return nil, err
		}
		f.feats = outs[0]
	}

	// Labels: argmax of a fixed random projection of the centred features.
	mean := make([]float64, f.d)
	for i := 0; i < n; i++ {
		for j := 0; j < f.d; j++ {
			mean[j] += float64(f.feats[i*f.d+j]) / float64(n)
		}
	}
	proj := make([]float64, k*f.d)
	for i := range proj {
		proj[i] = rng.NormFloat64()
	}
	f.labels = make([]int32, n)
	for i := 0; i < n; i++ {
		best, arg := math.Inf(-1), 0
		for c := 0; c < k; c++ {
			s := 0.0
			for j := 0; j < f.d; j++ {
				s += proj[c*f.d+j] * (float64(f.feats[i*f.d+j]) - mean[j])
			}
			if s > best {
				best, arg = s, c
			}
		}
		f.labels[i] = int32(arg)
	}
	return f, nil
}

// runModel runs serialised ONNX bytes on n samples in the spec's layout and
// returns the named outputs (sizes values per sample each).
func runModel(data []byte, input string, spec imaging.Spec, x []float32, n int, outputs []string, sizes []int) ([][]float32, error) {
	s, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: spec.InputShape(), Outputs: outputs, OutputSizes: sizes}, ort.SessionOptions{Threads: 1})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res := make([][]float32, len(outputs))
	for i := range res {
		res[i] = make([]float32, n*sizes[i])
	}
	if err := s.Run(context.Background(), x, n, res...); err != nil {
		return nil, err
	}
	return res, nil
}

// marshalExport returns the export m's bytes and its metadata.
func marshalExport(t testing.TB, m *onnxpb.ModelProto) ([]byte, *Meta) {
	t.Helper()
	data, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := ReadMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	return data, meta
}

// runExport runs the export m, built from f's cut with opt, in ONNX Runtime
// on f's images (raw 0..255 pixels when opt has preprocessing, else the
// normalised tensor) and returns the outputs its metadata's session spec
// names (probabilities, then features when opt has them), and want, head
// h's probabilities on f's features: what the export must reproduce.
func runExport(t testing.TB, f *fixture, h *head.Model, m *onnxpb.ModelProto, opt Options) (outs [][]float32, want []float32) {
	t.Helper()
	data, meta := marshalExport(t, m)
	ss, err := meta.SessionSpec(opt.WithFeatures)
	if err != nil {
		t.Fatal(err)
	}
	x := f.norm
	if opt.WithPreprocessing {
		x = f.raw
	}
	outs, err = runModel(data, meta.InputName, f.spec, x, f.n, ss.Outputs, ss.OutputSizes)
	if err != nil {
		t.Fatalf("run export: %v", err)
	}
	want = make([]float32, f.n*f.k)
	if err := h.PredictBatch(f.feats, f.n, want); err != nil {
		t.Fatal(err)
	}
	return outs, want
}

// alternate times two sessions on the same batch of batch images x (their
// outputs written to outs): one warm-up run each, then b.N rounds that run
// both, taking turns at going first so that they meet the same machine
// load. It returns each session's fastest run, the one least disturbed by
// other processes.
func alternate(b *testing.B, sessions [2]*ort.Session, x []float32, batch int, outs [2][]float32) [2]time.Duration {
	b.Helper()
	ctx := context.Background()
	best := [2]time.Duration{time.Hour, time.Hour}
	run := func(i int) {
		t0 := time.Now()
		if err := sessions[i].Run(ctx, x, batch, outs[i]); err != nil {
			b.Fatal(err)
		}
		best[i] = min(best[i], time.Since(t0))
	}
	run(0)
	run(1)
	best = [2]time.Duration{time.Hour, time.Hour}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		run(it % 2)
		run(1 - it%2)
	}
	b.StopTimer()
	return best
}

// headFor trains a head of the given kind on the fixture's features (the
// last quarter is the validation split that fits the temperature), with
// the fixture's pretrained layers in front when it has them.
func headFor(t testing.TB, f *fixture, kind string) *head.Model {
	t.Helper()
	cfg := head.DefaultConfig(kind)
	cfg.Seed = 7
	cfg.Threads = 1
	cfg.InitLayers = f.tuned
	if kind == head.KindMLP {
		cfg.Hidden = []int{12}
		cfg.Epochs = 25
		cfg.BatchSize = 16
		cfg.Patience = 0
		cfg.LR = 1e-2
	}
	if len(f.tuned) > 0 && kind == head.KindLinear {
		cfg.Optimizer = head.OptAdam
		cfg.Epochs = 15
		cfg.BatchSize = 16
		cfg.LR = 1e-2
	}
	for c := 0; c < f.k; c++ {
		cfg.Classes = append(cfg.Classes, fmt.Sprintf("class \"%c\"/%d", 'a'+c, c))
	}
	nt := f.n * 3 / 4
	all := head.Data{X: f.feats, N: f.n, D: f.d, Y: f.labels}
	tr, va := make([]int, nt), make([]int, f.n-nt)
	for i := range tr {
		tr[i] = i
	}
	for i := range va {
		va[i] = nt + i
	}
	h, _, err := head.Train(context.Background(), all.Subset(tr), all.Subset(va), cfg, nil)
	if err != nil {
		t.Fatalf("train %s head on %s: %v", kind, f.kind, err)
	}
	h.Backbone = f.ref()
	return h
}

// ref is the BackboneRef a head trained on this fixture records.
func (f *fixture) ref() head.BackboneRef {
	data, _ := backbone.MarshalModel(f.full)
	r := head.BackboneRef{ID: "test-" + f.kind, ModelHash: backbone.ModelHash(data), FeatureTensor: f.choice.Tensor, Preprocess: f.spec.Canonical()}
	if len(f.tuned) > 0 {
		r.TuneCut = f.choice.Tensor
	}
	return r
}

// handHead makes a head with deterministic random weights, the fixture's
// feature statistics as standardisation and an explicit temperature.
func handHead(f *fixture, hidden []int, temperature float64) *head.Model {
	rng := rand.New(rand.NewPCG(99, uint64(f.d)))
	h := &head.Model{Version: head.FormatVersion, Kind: head.KindLinear, Temperature: temperature, Backbone: f.ref()}
	if len(hidden) > 0 {
		h.Kind = head.KindMLP
	}
	for c := 0; c < f.k; c++ {
		h.Classes = append(h.Classes, fmt.Sprint("c", c))
	}
	h.Mean = make([]float32, f.d)
	h.Std = make([]float32, f.d)
	for j := 0; j < f.d; j++ {
		var s, s2 float64
		for i := 0; i < f.n; i++ {
			v := float64(f.feats[i*f.d+j])
			s += v
			s2 += v * v
		}
		m := s / float64(f.n)
		h.Mean[j] = float32(m)
		h.Std[j] = float32(math.Sqrt(max(s2/float64(f.n)-m*m, 0)) + 1e-3)
	}
	in := f.d
	widths := append(append([]int(nil), hidden...), f.k)
	for i, out := range widths {
		l := dense.Layer{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		if i < len(widths)-1 {
			l.Act = dense.ActReLU
		}
		for j := range l.W {
			l.W[j] = float32(rng.NormFloat64() / math.Sqrt(float64(in)))
		}
		for j := range l.B {
			l.B[j] = float32(rng.NormFloat64() * 0.1)
		}
		h.Layers = append(h.Layers, l)
		in = out
	}
	h.Metrics = map[string]float64{"val_accuracy": 0.5, "val_ece": math.NaN()}
	return h
}

// maxAbsDiff returns max |a-b| and whether all values are finite.
func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}
