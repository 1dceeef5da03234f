package quantize_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/quantize"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
)

// needORT loads ONNX Runtime, or skips saying why (fails under CI=true,
// where the runtime is part of the setup).
func needORT(t testing.TB) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		if !errors.Is(err, ort.ErrLibraryMissing) {
			t.Fatalf("ONNX Runtime: %v", err)
		}
		testasset.Skip(t, "ONNX Runtime is not available (%v): run `make setup`", err)
	}
}

// runModel runs m on n samples of x (per-sample shape shape) and returns
// each output, batch-major.
func runModel(t testing.TB, m *onnxpb.ModelProto, input string, shape []int64, outputs []string, sizes []int, x []float32, n int) [][]float32 {
	t.Helper()
	data, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape, Outputs: outputs, OutputSizes: sizes}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatalf("ONNX Runtime refused the model: %v", err)
	}
	defer s.Close()
	outs := make([][]float32, len(outputs))
	for k := range outs {
		outs[k] = make([]float32, n*sizes[k])
	}
	if err := s.Run(context.Background(), x, n, outs...); err != nil {
		t.Fatal(err)
	}
	return outs
}

// images returns n deterministic random inputs in [0, 1).
func images(seed uint64, n int, shape []int64) []float32 {
	per := 1
	for _, d := range shape {
		per *= int(d)
	}
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*per)
	for i := range x {
		x[i] = r.Float32()
	}
	return x
}

// calibrated prepares and calibrates m on calib images, returning the plan
// and the ranges.
func calibrated(t testing.TB, m *onnxpb.ModelProto, feature string, shape []int64, opt quantize.Options, method string, seed uint64, calib []float32, n int) (*quantize.Plan, map[string]quantize.Range) {
	t.Helper()
	p, err := quantize.Prepare(m, feature, opt)
	if err != nil {
		t.Fatal(err)
	}
	outs := runModel(t, p.CalibrationModel(), p.Input, shape, p.CalibrationOutputs(), p.Sizes, calib, n)
	st := quantize.NewStats(p, n, seed, 0)
	if err := st.Add(outs, n); err != nil {
		t.Fatal(err)
	}
	r, err := st.Ranges(method, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}

// features runs the model cut at choice on x.
func features(t testing.TB, m *onnxpb.ModelProto, choice *backbone.FeatureChoice, shape []int64, x []float32, n int) []float32 {
	t.Helper()
	cut, err := backbone.CutAtFeature(m, choice)
	if err != nil {
		t.Fatal(err)
	}
	info, err := backbone.ImageInput(cut)
	if err != nil {
		t.Fatal(err)
	}
	return runModel(t, cut, info.Name, shape, []string{backbone.FeatureOutput}, []int{int(choice.Dim)}, x, n)[0]
}

func inputShape(t testing.TB, m *onnxpb.ModelProto) []int64 {
	info, err := backbone.ImageInput(m)
	if err != nil {
		t.Fatal(err)
	}
	layout, c, h, w := info.Layout, info.Channels, info.Height, info.Width
	if layout == "NHWC" {
		return []int64{int64(h), int64(w), int64(c)}
	}
	return []int64{int64(c), int64(h), int64(w)}
}

// cosine returns the mean cosine similarity of n rows of a and b.
func cosine(a, b []float32, n int) float64 {
	d := len(a) / n
	sum := 0.0
	for i := 0; i < n; i++ {
		var ab, aa, bb float64
		for j := i * d; j < (i+1)*d; j++ {
			ab += float64(a[j]) * float64(b[j])
			aa += float64(a[j]) * float64(a[j])
			bb += float64(b[j]) * float64(b[j])
		}
		if aa == 0 && bb == 0 {
			sum++
			continue
		}
		sum += ab / math.Sqrt(aa*bb)
	}
	return sum / float64(n)
}

// TestQuantizeTestModels quantizes every test-model shape (ResNet, VGG,
// MobileNet with unfolded BatchNorm and Relu6, SqueezeNet, a YOLO classifier
// with SiLU, a Keras NHWC model, feature maps) and compares its features
// with the float model's on images it was not calibrated on.
func TestQuantizeTestModels(t *testing.T) {
	needORT(t)
	for _, kind := range testmodels.Kinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, 32)
			choice, err := backbone.FindFeatureTensor(m, "")
			if err != nil {
				t.Fatal(err)
			}
			shape := inputShape(t, m)
			p, r := calibrated(t, m, choice.Tensor, shape, quantize.Options{}, quantize.MinMax, 1, images(1, 32, shape), 32)
			q, rep, err := p.Quantize(r)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Nodes == 0 || rep.Tensors == 0 {
				t.Fatalf("nothing quantized: %+v", rep)
			}
			x := images(2, 8, shape)
			want := features(t, m, choice, shape, x, 8)
			got := features(t, q, choice, shape, x, 8)
			if c := cosine(want, got, 8); c < 0.99 {
				t.Errorf("feature cosine %.4f < 0.99", c)
			}
			if bytes.Equal(mustMarshal(t, q), mustMarshal(t, m)) {
				t.Error("quantized model equals the original")
			}
			assertFeatureFloat(t, q, choice.Tensor)
		})
	}
}

func mustMarshal(t testing.TB, m *onnxpb.ModelProto) []byte {
	b, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertFeatureFloat checks that no QuantizeLinear reads the feature tensor
// and that it is not written by a DequantizeLinear.
func assertFeatureFloat(t testing.TB, m *onnxpb.ModelProto, feature string) {
	t.Helper()
	for _, n := range m.Graph.Node {
		if n.GetOpType() == "QuantizeLinear" && n.Input[0] == feature {
			t.Errorf("feature tensor %s is quantized by %s", feature, n.GetName())
		}
		if n.GetOpType() == "DequantizeLinear" && n.Output[0] == feature {
			t.Errorf("feature tensor %s is written by %s", feature, n.GetName())
		}
	}
}

// convModel is x [1,C,S,S] -> Conv(k3, pad 1) -> Relu -> features output
// (kept float) through a second Conv 1x1, so the first Conv's output is a
// quantized activation.
func convModel(seed uint64, cin, cout, s int) (*onnxpb.ModelProto, []float32, []float32) {
	b := backbone.NewBuilder("conv")
	x := b.Input("x", -1, int64(cin), int64(s), int64(s))
	r := rand.New(rand.NewPCG(seed, 2))
	w := make([]float32, cout*cin*9)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.3)
	}
	bias := make([]float32, cout)
	for i := range bias {
		bias[i] = float32(r.NormFloat64() * 0.1)
	}
	y := b.Op("Conv", "conv", []string{x, b.Initializer("w", []int64{int64(cout), int64(cin), 3, 3}, w), b.Initializer("b", []int64{int64(cout)}, bias)},
		backbone.AttrInts("pads", 1, 1, 1, 1), backbone.AttrInts("kernel_shape", 3, 3))
	y = b.Op("Relu", "relu", []string{y})
	b.Node("GlobalAveragePool", []string{y}, []string{"pooled"})
	b.Node("Flatten", []string{"pooled"}, []string{"feat"}, backbone.AttrInt("axis", 1))
	b.Output("feat", -1, int64(cout))
	return b.Model(0), w, bias
}

// TestConvErrorWithinScaleBound checks a quantized Conv+Relu against a
// bound computed from its scales alone: per output element, with input
// step sx, weight steps sw[c] and output step sy,
//
//	|y' - y| <= sum_k (|w_k| sx/2 + |x_k| sw/2 + sx sw/4) + sx sw/2 + sy/2
//
// (input rounding, weight rounding, their product, bias rounding at scale
// sx*sw, output rounding). The pooled feature error is bounded by the mean
// of the element bounds. The test reproduces the convolution in float64.
func TestConvErrorWithinScaleBound(t *testing.T) {
	needORT(t)
	const cin, cout, s = 3, 4, 8
	m, w, bias := convModel(7, cin, cout, s)
	shape := []int64{cin, s, s}
	calib := images(3, 16, shape)
	p, r := calibrated(t, m, "feat", shape, quantize.Options{}, quantize.MinMax, 1, calib, 16)
	q, rep, err := p.Quantize(r)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fused != 1 {
		t.Errorf("Relu not folded into the Conv: %+v", rep)
	}
	sx := rep.Params["x"].Scale
	sy := rep.Params["relu"].Scale
	if sx == 0 || sy == 0 {
		t.Fatalf("missing parameters: %v", rep.Params)
	}
	sw := quantize.WeightScales(w, []int64{cout, cin, 3, 3}, 0, false)
	// The test images are inside the calibrated range (same generator).
	x := images(4, 4, shape)
	got := runModel(t, q, "x", shape, []string{"feat"}, []int{cout}, x, 4)[0]
	want := runModel(t, m, "x", shape, []string{"feat"}, []int{cout}, x, 4)[0]
	for img := 0; img < 4; img++ {
		for c := 0; c < cout; c++ {
			bound := 0.0
			for oy := 0; oy < s; oy++ {
				for ox := 0; ox < s; ox++ {
					e := float64(sx)*float64(sw[c])/2 + float64(sy)/2
					for ci := 0; ci < cin; ci++ {
						for ky := 0; ky < 3; ky++ {
							for kx := 0; kx < 3; kx++ {
								iy, ix := oy+ky-1, ox+kx-1
								if iy < 0 || ix < 0 || iy >= s || ix >= s {
									continue
								}
								wk := math.Abs(float64(w[((c*cin+ci)*3+ky)*3+kx]))
								xk := math.Abs(float64(x[((img*cin+ci)*s+iy)*s+ix]))
								e += wk*float64(sx)/2 + xk*float64(sw[c])/2 + float64(sx)*float64(sw[c])/4
							}
						}
					}
					bound += e
				}
			}
			bound /= s * s
			k := img*cout + c
			if d := math.Abs(float64(got[k] - want[k])); d > bound+1e-6 {
				t.Errorf("image %d channel %d: |%g - %g| = %g exceeds the scale bound %g", img, c, got[k], want[k], d, bound)
			}
		}
	}
	if cosine(want, got, 4) > 0.999999 && bytes.Equal(f32bytes(want), f32bytes(got)) {
		t.Error("int8 features are bit-identical to float ones: the model was not quantized")
	}
	_ = bias
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// TestCalibrationDeterministic: the same images and seed give the same
// ranges and the same model bytes, for both methods.
func TestCalibrationDeterministic(t *testing.T) {
	needORT(t)
	m := testmodels.Model("resnet", 32)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	shape := inputShape(t, m)
	calib := images(5, 24, shape)
	for _, method := range []string{quantize.MinMax, quantize.Percentile} {
		var models [][]byte
		for run := 0; run < 2; run++ {
			p, r := calibrated(t, m, choice.Tensor, shape, quantize.Options{}, method, 42, calib, 24)
			q, _, err := p.Quantize(r)
			if err != nil {
				t.Fatal(err)
			}
			models = append(models, mustMarshal(t, q))
		}
		if !bytes.Equal(models[0], models[1]) {
			t.Errorf("%s: two calibrations with seed 42 gave different models", method)
		}
	}
}

// TestPercentileClipsOutliers: one huge value among many small ones sets
// the min-max range but not the percentile one.
func TestPercentileClipsOutliers(t *testing.T) {
	m, _, _ := convModel(1, 1, 1, 4)
	p, err := quantize.Prepare(m, "feat", quantize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := quantize.NewStats(p, 100, 1, 1<<12)
	outs := make([][]float32, len(p.Tensors))
	for img := 0; img < 100; img++ {
		for k := range outs {
			outs[k] = make([]float32, p.Sizes[k])
			for i := range outs[k] {
				outs[k][i] = float32(i%10) / 10
			}
			if img == 50 {
				outs[k][3] = 1000
			}
		}
		if err := st.Add(outs, 1); err != nil {
			t.Fatal(err)
		}
	}
	mm, err := st.Ranges(quantize.MinMax, 0)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := st.Ranges(quantize.Percentile, 99)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range p.Tensors {
		if mm[tn].Max != 1000 {
			t.Errorf("%s: min-max range %v, want max 1000", tn, mm[tn])
		}
		if pc[tn].Max > 1 || pc[tn].Min != 0 {
			t.Errorf("%s: percentile range %v, want [0, 0.9]", tn, pc[tn])
		}
	}
	if _, err := st.Ranges("entropy", 0); err == nil || !strings.Contains(err.Error(), "entropy") {
		t.Errorf("unknown method accepted: %v", err)
	}
}

// TestUnsupportedOps: ops without int8 kernels stay float and are named
// (the model still runs and stays close); SiLU's Sigmoid and Mul are
// quantized; a model with nothing quantizable is refused in one line naming
// its ops.
func TestUnsupportedOps(t *testing.T) {
	needORT(t)
	m := testmodels.Model("yolo-cls", 32)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := quantize.Prepare(m, choice.Tensor, quantize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range p.Left {
		if l.Op == "Sigmoid" || l.Op == "Mul" {
			t.Errorf("SiLU part left float: %+v", l)
		}
	}

	b := backbone.NewBuilder("tanh")
	x := b.Input("x", -1, 3, 8, 8)
	r := rand.New(rand.NewPCG(4, 4))
	w := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.3)
		}
		return v
	}
	y := b.Op("Conv", "c1", []string{x, b.Initializer("w1", []int64{4, 3, 3, 3}, w(108))}, backbone.AttrInts("pads", 1, 1, 1, 1))
	y = b.Op("Tanh", "tanh", []string{y})
	y = b.Op("Conv", "c2", []string{y, b.Initializer("w2", []int64{4, 4, 1, 1}, w(16))})
	y = b.Op("GlobalAveragePool", "gap", []string{y})
	b.Node("Flatten", []string{y}, []string{"feat"}, backbone.AttrInt("axis", 1))
	b.Output("feat", -1, 4)
	sm := b.Model(0)
	shape := []int64{3, 8, 8}
	p, rg := calibrated(t, sm, "feat", shape, quantize.Options{}, quantize.MinMax, 1, images(1, 8, shape), 8)
	if len(p.Left) != 1 || p.Left[0].Op != "Tanh" || !strings.Contains(p.Left[0].Reason, "Tanh") {
		t.Errorf("Tanh not reported as left float: %+v", p.Left)
	}
	q, _, err := p.Quantize(rg)
	if err != nil {
		t.Fatal(err)
	}
	xs := images(2, 4, shape)
	want := runModel(t, sm, "x", shape, []string{"feat"}, []int{4}, xs, 4)[0]
	got := runModel(t, q, "x", shape, []string{"feat"}, []int{4}, xs, 4)[0]
	if c := cosine(want, got, 4); c < 0.99 {
		t.Errorf("with Tanh left float: cosine %.4f", c)
	}

	b = backbone.NewBuilder("nothing")
	x = b.Input("x", -1, 3, 8, 8)
	y = b.Op("Tanh", "tanh", []string{x})
	y = b.Op("Softsign", "soft", []string{y})
	y = b.Op("GlobalAveragePool", "gap", []string{y})
	b.Node("Flatten", []string{y}, []string{"feat"}, backbone.AttrInt("axis", 1))
	b.Output("feat", -1, 3)
	_, err = quantize.Prepare(b.Model(0), "feat", quantize.Options{})
	if err == nil {
		t.Fatal("a model without Conv/Gemm/MatMul was accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "Tanh") || !strings.Contains(msg, "Softsign") {
		t.Errorf("refusal should be one line naming Tanh and Softsign: %q", msg)
	}
}

// TestKeepFloat: a node named in Options.Float keeps its float weights, and
// an unknown name is refused.
func TestKeepFloat(t *testing.T) {
	m := testmodels.Model("resnet", 32)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	convName := ""
	for _, n := range m.Graph.Node {
		if n.Output[0] == "block_conv2" {
			convName = n.GetName()
		}
	}
	p, err := quantize.Prepare(m, choice.Tensor, quantize.Options{Float: []string{"block_conv2"}}) // an output tensor name
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		if n == convName {
			t.Fatal("block_conv2 quantized despite Float")
		}
	}
	found := false
	for _, l := range p.Left {
		found = found || l.Node == convName
	}
	if !found {
		t.Errorf("block_conv2 not listed as left float: %+v", p.Left)
	}
	if _, err := quantize.Prepare(m, choice.Tensor, quantize.Options{Float: []string{"no_such_node"}}); err == nil || !strings.Contains(err.Error(), "no_such_node") {
		t.Errorf("unknown node accepted: %v", err)
	}
}

// TestDenseLayersStayFloat: the dense layers before a VGG's features keep
// their float weights, so --tune-layers reads the same layers from the
// int8 model; with QuantizeDense they are quantized too (Gemm path).
func TestDenseLayersStayFloat(t *testing.T) {
	needORT(t)
	m := testmodels.Model("vgg", 32)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	shape := inputShape(t, m)
	p, r := calibrated(t, m, choice.Tensor, shape, quantize.Options{}, quantize.MinMax, 1, images(1, 16, shape), 16)
	q, _, err := p.Quantize(r)
	if err != nil {
		t.Fatal(err)
	}
	want, err := backbone.DenseChainN(m, choice.Tensor, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := backbone.DenseChainN(q, choice.Tensor, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("dense chain of the int8 model: %d layers, want 2", len(got))
	}
	for i := range want {
		if !slices.Equal(want[i].W, got[i].W) || !slices.Equal(want[i].B, got[i].B) {
			t.Errorf("dense layer %s changed", want[i].Name)
		}
	}

	pd, rd := calibrated(t, m, choice.Tensor, shape, quantize.Options{QuantizeDense: true}, quantize.MinMax, 1, images(1, 16, shape), 16)
	qd, _, err := pd.Quantize(rd)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := backbone.DenseChainN(qd, choice.Tensor, 2); len(l) == 2 {
		t.Error("QuantizeDense left the dense layers float")
	}
	x := images(9, 8, shape)
	wantF := features(t, m, choice, shape, x, 8)
	gotF := features(t, qd, choice, shape, x, 8)
	if c := cosine(wantF, gotF, 8); c < 0.99 {
		t.Errorf("int8 Gemm features: cosine %.4f < 0.99", c)
	}
}

// TestOldOpsetPerTensor: opset 11 cannot express per-channel scales, so
// weights get one scale each and the model still runs.
func TestOldOpsetPerTensor(t *testing.T) {
	needORT(t)
	m, _, _ := convModel(3, 3, 4, 8)
	m.OpsetImport[0].Version = ptr(int64(11))
	shape := []int64{3, 8, 8}
	p, r := calibrated(t, m, "feat", shape, quantize.Options{}, quantize.MinMax, 1, images(1, 8, shape), 8)
	if !p.PerTensor {
		t.Fatal("opset 11 planned per-channel")
	}
	q, _, err := p.Quantize(r)
	if err != nil {
		t.Fatal(err)
	}
	x := images(2, 4, shape)
	want := runModel(t, m, "x", shape, []string{"feat"}, []int{4}, x, 4)[0]
	got := runModel(t, q, "x", shape, []string{"feat"}, []int{4}, x, 4)[0]
	if c := cosine(want, got, 4); c < 0.99 {
		t.Errorf("cosine %.4f", c)
	}
	m.OpsetImport[0].Version = ptr(int64(9))
	if _, err := quantize.Prepare(m, "feat", quantize.Options{}); err == nil || !strings.Contains(err.Error(), "opset 9") {
		t.Errorf("opset 9 accepted: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
