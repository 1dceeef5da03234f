package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/quantize"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
	"github.com/headtune/headtune/models"
)

// quantizeFixture installs test model kind in a fresh store as "base" and
// writes n calibration images.
func quantizeFixture(t *testing.T, kind string, n int) (*models.Store, string) {
	t.Helper()
	return quantizeFixtureModel(t, kind, testmodels.Model(kind, 32), n)
}

// quantizeFixtureModel is quantizeFixture for any model m (named name in
// its temporary file).
func quantizeFixtureModel(t *testing.T, name string, m *onnxpb.ModelProto, n int) (*models.Store, string) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		if !errors.Is(err, ort.ErrLibraryMissing) {
			t.Fatalf("ONNX Runtime: %v", err)
		}
		testasset.Skip(t, "ONNX Runtime is not available (%v): run `make setup`", err)
	}
	dir := t.TempDir()
	store, err := models.OpenStore(filepath.Join(dir, "models"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".onnx")
	if err := backbone.WriteModelFile(path, m); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Add(context.Background(), "base", path, models.AddOptions{Preset: "imagenet"}); err != nil {
		t.Fatal(err)
	}
	imgs := filepath.Join(dir, "calib")
	os.MkdirAll(imgs, 0o755)
	writeImages(t, imgs, n, 0)
	return store, imgs
}

// TestQuantizeInstallsDerivedModel: the int8 model is installed under its
// own name with its own cache identity, records its source and
// calibration, lists as derived, and refuses to overwrite or to be
// quantized again.
func TestQuantizeInstallsDerivedModel(t *testing.T) {
	store, imgs := quantizeFixture(t, "resnet", 12)
	ctx := context.Background()
	res, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 8, CheckImages: 4, Seed: 3, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Installed.Meta.Name != "base-int8" {
		t.Fatalf("installed as %q, want base-int8", res.Installed.Meta.Name)
	}
	d := res.Installed.Meta.Derived
	if d == nil || d.From != "base" || d.Kind != "int8" || d.Calibration == nil {
		t.Fatalf("derivation not recorded: %+v", d)
	}
	c := d.Calibration
	if c.Images != 8 || c.Seed != 3 || c.Method != "percentile" || c.CheckImages != 4 || c.QuantizedNodes == 0 {
		t.Errorf("calibration record %+v", c)
	}
	if c.FeatureCosine < 0.99 || c.FeatureCosine > 1.0000001 {
		t.Errorf("feature cosine %.5f on the check images", c.FeatureCosine)
	}
	// The speed check is a measurement shown to the user: it must be there
	// and positive, its value is the CPU's business.
	if sp := c.Speed; sp == nil || sp.Speedup <= 0 || sp.FloatMillis <= 0 || sp.Int8Millis <= 0 || sp.Runs != speedRounds*4 || sp.Threads != 1 {
		t.Errorf("speed check %+v, want positive times over %d runs", sp, speedRounds*4)
	}
	got, err := store.Get("base-int8")
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta.Source != models.SourceDerived || got.Meta.Derived == nil || got.Meta.Derived.Calibration.Images != 8 || got.Meta.Derived.Calibration.Speed == nil {
		t.Errorf("meta.json does not say derived: %+v", got.Meta)
	}
	if err := store.Verify("base-int8"); err != nil {
		t.Error(err)
	}
	fl, err := OpenBackbone("base", BackboneOptions{Store: store, NoSession: true})
	if err != nil {
		t.Fatal(err)
	}
	q, err := OpenBackbone("base-int8", BackboneOptions{Store: store, NoSession: true})
	if err != nil {
		t.Fatal(err)
	}
	if fl.Identity.ID() == q.Identity.ID() {
		t.Fatal("float and int8 models share a cache identity")
	}
	if q.Dim != fl.Dim || q.Choice.Tensor != fl.Choice.Tensor || string(q.Spec.Canonical()) != string(fl.Spec.Canonical()) {
		t.Errorf("int8 model reads other features: %s %d-d vs %s %d-d", q.Choice.Tensor, q.Dim, fl.Choice.Tensor, fl.Dim)
	}
	hasQ := false
	for _, n := range q.Cut.Graph.Node {
		hasQ = hasQ || n.GetOpType() == "QuantizeLinear"
	}
	if !hasQ {
		t.Error("the installed int8 model's cut has no QuantizeLinear")
	}

	if _, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 8}); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Errorf("second quantize over base-int8: %v", err)
	}
	if _, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base-int8", Dataset: imgs, Samples: 8, Name: "again"}); err == nil || !strings.Contains(err.Error(), "already int8") {
		t.Errorf("quantizing an int8 model: %v", err)
	}
	if _, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Name: "base"}); err == nil {
		t.Error("int8 model allowed to replace its source")
	}
	if _, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: filepath.Join(imgs, "nope"), Name: "x"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing calibration folder: %v", err)
	}
	list, err := store.Listing()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if l.Name == "base-int8" && l.Installed != nil && l.Installed.Meta.Derived != nil {
			found = true
		}
	}
	if !found {
		t.Error("listing does not show base-int8 as derived")
	}
}

// TestQuantizeDeterministic: the same seed gives the same model bytes.
func TestQuantizeDeterministic(t *testing.T) {
	store, imgs := quantizeFixture(t, "mobilenet", 16)
	ctx := context.Background()
	var sums []string
	for i, name := range []string{"a", "b"} {
		res, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 10, CheckImages: 2, Seed: 7, Name: name, Threads: 1 + i})
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, res.Installed.Meta.SHA256)
	}
	if sums[0] != sums[1] {
		t.Errorf("same seed, different int8 models: %s vs %s", sums[0], sums[1])
	}
	res, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 10, CheckImages: 2, Seed: 8, Name: "c", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Installed.Meta.SHA256 == sums[0] {
		t.Log("seed 8 picked calibration images with the same ranges (possible, not an error)")
	}
}

// TestQuantizeThenTuneLayers: a VGG-shaped classifier quantized keeps its
// dense layers float, so --tune-layers 2 opens on the int8 model with the
// same pretrained weights as on the float one.
func TestQuantizeThenTuneLayers(t *testing.T) {
	store, imgs := quantizeFixture(t, "vgg", 10)
	if _, err := Quantize(context.Background(), QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 8, CheckImages: 2, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	fl, err := OpenBackbone("base", BackboneOptions{Store: store, NoSession: true, TuneLayers: 2})
	if err != nil {
		t.Fatal(err)
	}
	q, err := OpenBackbone("base-int8", BackboneOptions{Store: store, TuneLayers: 2, Session: ort.SessionOptions{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if len(q.Tuned) != 2 || q.Choice.Tensor != fl.Choice.Tensor {
		t.Fatalf("int8 tune cut at %s with %d layers, float at %s", q.Choice.Tensor, len(q.Tuned), fl.Choice.Tensor)
	}
	for i := range fl.Tuned {
		a, b := fl.Tuned[i], q.Tuned[i]
		if len(a.W) != len(b.W) {
			t.Fatalf("layer %d: %d vs %d weights", i, len(a.W), len(b.W))
		}
		for k := range a.W {
			if a.W[k] != b.W[k] {
				t.Fatalf("layer %s weight %d differs: %g vs %g", a.Name, k, a.W[k], b.W[k])
			}
		}
	}
}

// TestQuantizeMinCosineKeepsLayersFloat: with an unreachable target, the
// most sensitive layers are ranked and kept float up to MaxFloat.
func TestQuantizeMinCosineKeepsLayersFloat(t *testing.T) {
	store, imgs := quantizeFixture(t, "resnet", 10)
	res, err := Quantize(context.Background(), QuantizeOptions{Store: store, Model: "base", Dataset: imgs, Samples: 6, CheckImages: 4,
		Threads: 1, MinCosine: 1.01, MaxFloat: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sensitivity) == 0 {
		t.Fatal("no sensitivity ranking")
	}
	for i := 1; i < len(res.Sensitivity); i++ {
		if res.Sensitivity[i].Gain > res.Sensitivity[i-1].Gain {
			t.Fatalf("ranking not sorted: %+v", res.Sensitivity)
		}
	}
	f := res.Installed.Meta.Derived.Calibration.Float
	if len(f) == 0 || len(f) > 2 {
		t.Fatalf("kept float %v, want 1-2 layers", f)
	}
	if f[0] != res.Sensitivity[0].Node {
		t.Errorf("first layer kept float %s, most sensitive %s", f[0], res.Sensitivity[0].Node)
	}
}

// TestQuantizeTextSaysWhenInt8BuysLittle: the measured speed-up is printed,
// and under SlowInt8Speedup the user is told float32 may be the better
// choice; at or above it, not.
func TestQuantizeTextSaysWhenInt8BuysLittle(t *testing.T) {
	for _, tc := range []struct {
		speedup float64
		advice  bool
	}{{1.2, true}, {SlowInt8Speedup, false}, {2.4, false}} {
		r := &QuantizeResult{Report: &quantize.Report{}, Calibration: models.Calibration{Method: "percentile", CheckImages: 32,
			Speed: &models.SpeedCheck{Speedup: tc.speedup, FloatMillis: 4.2, Int8Millis: 4.2 / tc.speedup, Runs: 96, Threads: 1}}}
		var b strings.Builder
		if err := r.WriteText(&b, "mnv2"); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if want := fmt.Sprintf("%.2fx faster (median of 96 runs each)", tc.speedup); !strings.Contains(out, want) {
			t.Errorf("speed-up %v: no %q in\n%s", tc.speedup, want, out)
		}
		if got := strings.Contains(out, "float32 may be the better choice"); got != tc.advice {
			t.Errorf("speed-up %v: advice printed %v, want %v:\n%s", tc.speedup, got, tc.advice, out)
		}
	}
}

// TestQuantizeFloatLayerRunsFloat: a Conv kept float (--float) between
// quantized neighbours runs as a float Conv in the graph ONNX Runtime
// optimises, not as a QLinearConv with weights ONNX Runtime quantized
// itself (its WeightBiasQuantization transformer, disabled by
// backbone/ort).
func TestQuantizeFloatLayerRunsFloat(t *testing.T) {
	store, imgs := quantizeFixture(t, "mobilenet", 10)
	ctx := context.Background()
	full, err := OpenBackbone("base", BackboneOptions{Store: store, NoSession: true})
	if err != nil {
		t.Fatal(err)
	}
	// A Conv in the middle of the cut: quantized layers before and after.
	var convs []string
	for _, n := range full.Cut.Graph.Node {
		if n.GetOpType() == "Conv" {
			convs = append(convs, n.GetName())
		}
	}
	if len(convs) < 3 {
		t.Fatalf("test model has %d convolutions, want 3 or more", len(convs))
	}
	mid := convs[len(convs)/2]
	floatConvs := func(name string, float []string) int {
		if _, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Name: name, Dataset: imgs, Samples: 8, CheckImages: 2, Threads: 1, Float: float}); err != nil {
			t.Fatal(err)
		}
		opt := filepath.Join(t.TempDir(), "optimized.onnx")
		bb, err := OpenBackbone(name, BackboneOptions{Store: store, Session: ort.SessionOptions{Threads: 1, OptimizedModelPath: opt}})
		if err != nil {
			t.Fatal(err)
		}
		bb.Close()
		m, err := backbone.ReadModelFile(opt)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, node := range m.Graph.Node {
			switch node.GetOpType() {
			case "Conv", "FusedConv", "NhwcFusedConv":
				n++
			}
		}
		return n
	}
	all, kept := floatConvs("all-int8", nil), floatConvs("mid-float", []string{mid})
	if kept != all+1 {
		t.Errorf("%s kept float: %d float convolutions in ONNX Runtime's graph, want %d (%d with none kept)", mid, kept, all+1, all)
	}
}

// poolBranchClassifier is a small Inception-style classifier: a 3x3 stem,
// then a pool branch (AveragePool 3x3, stride 1, count_include_pad 0 ->
// 1x1 Conv -> Relu) concatenated with a 1x1 branch, global average pool,
// Gemm and Softmax.
func poolBranchClassifier() *onnxpb.ModelProto {
	b := backbone.NewBuilder("poolbranch")
	r := rand.New(rand.NewPCG(5, 5))
	weights := func(name string, dims ...int64) string {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.3)
		}
		return b.Initializer(name, dims, w)
	}
	conv := func(name, x string, cin, cout, k int64) string {
		p := (k - 1) / 2
		return b.Op("Relu", name+"_relu", []string{b.Op("Conv", name, []string{x, weights(name+"_w", cout, cin, k, k), weights(name+"_b", cout)},
			backbone.AttrInts("kernel_shape", k, k), backbone.AttrInts("pads", p, p, p, p))})
	}
	x := b.Input("input", -1, 3, 32, 32)
	stem := conv("stem", x, 3, 12, 3)
	pool := b.Op("AveragePool", "branch_pool", []string{stem}, backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 1, 1),
		backbone.AttrInts("pads", 1, 1, 1, 1), backbone.AttrInt("count_include_pad", 0))
	cat := b.Op("Concat", "mixed", []string{conv("branch_pool_proj", pool, 12, 4, 1), conv("branch_1x1", stem, 12, 4, 1)}, backbone.AttrInt("axis", 1))
	flat := b.Op("Flatten", "flatten", []string{b.Op("GlobalAveragePool", "gap", []string{cat})}, backbone.AttrInt("axis", 1))
	logits := b.Op("Gemm", "fc", []string{flat, weights("fc_w", 5, 8), weights("fc_b", 5)}, backbone.AttrInt("transB", 1))
	b.Node("Softmax", []string{logits}, []string{"probs"}, backbone.AttrInt("axis", 1))
	b.Output("probs", -1, 5)
	return b.Model(0)
}

// TestQuantizeRecordsPoolConvSwaps: an Inception-style pool branch is
// rewritten before quantizing and the calibration record says so (and
// what it says is in the text); NoRewrite leaves it and records that.
func TestQuantizeRecordsPoolConvSwaps(t *testing.T) {
	m := poolBranchClassifier()
	proj := ""
	for _, n := range m.Graph.Node {
		if n.GetOpType() == "Conv" && n.Input[1] == "branch_pool_proj_w" {
			proj = n.GetName()
		}
	}
	store, imgs := quantizeFixtureModel(t, "poolbranch", m, 10)
	ctx := context.Background()
	for _, off := range []bool{false, true} {
		name := fmt.Sprintf("base-int8-%v", off)
		res, err := Quantize(ctx, QuantizeOptions{Store: store, Model: "base", Name: name, Dataset: imgs, Samples: 8, CheckImages: 2, Threads: 1, NoRewrite: off})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Installed.Meta.Derived.Calibration
		want := 1
		if off {
			want = 0
		}
		if c.PoolConvSwaps != want || c.NoRewrite != off || res.Report.PoolConvSwaps != want {
			t.Errorf("NoRewrite %v: calibration records %d swaps (no_rewrite %v), report %d; want %d", off, c.PoolConvSwaps, c.NoRewrite, res.Report.PoolConvSwaps, want)
		}
		if c.FeatureCosine < 0.99 {
			t.Errorf("NoRewrite %v: feature cosine %.4f", off, c.FeatureCosine)
		}
		q, err := OpenBackbone(name, BackboneOptions{Store: store, NoSession: true})
		if err != nil {
			t.Fatal(err)
		}
		// Which of the pool and the projection comes first in the
		// installed graph.
		order := ""
		for _, n := range q.Cut.Graph.Node {
			switch {
			case n.GetOpType() == "AveragePool":
				order += "pool "
			case n.GetName() == proj:
				order += "proj "
			}
		}
		if wantOrder := map[bool]string{false: "proj pool ", true: "pool proj "}[off]; order != wantOrder {
			t.Errorf("NoRewrite %v: installed graph runs %q, want %q", off, order, wantOrder)
		}
		var b strings.Builder
		if err := res.WriteText(&b, "base"); err != nil {
			t.Fatal(err)
		}
		if says := strings.Contains(b.String(), "1 average pools moved"); says == off {
			t.Errorf("NoRewrite %v: text:\n%s", off, b.String())
		}
	}
}
