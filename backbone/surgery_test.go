package backbone_test

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/headtune/headtune/backbone"
	backboneort "github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone/onnxpb"
)

func TestCutAtFeatureStructure(t *testing.T) {
	for _, kind := range testmodels.Kinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, 32)
			before, err := backbone.MarshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			c, cut := findAndCut(t, m)
			after, _ := backbone.MarshalModel(m)
			if !bytes.Equal(before, after) {
				t.Fatal("CutAtFeature modified its input model")
			}
			g := cut.Graph
			if len(g.Output) != 1 || g.Output[0].GetName() != backbone.FeatureOutput {
				t.Fatalf("outputs %v, want only %q", g.Output, backbone.FeatureOutput)
			}
			dims, names, _ := backbone.DeclaredShape(g.Output[0])
			if len(dims) != 2 || dims[1] != c.Dim || names[0] != "N" {
				t.Errorf("output shape %v, want [N %d]", names, c.Dim)
			}
			if et := g.Output[0].Type.GetTensorType().GetElemType(); et != int32(onnxpb.TensorProto_FLOAT) {
				t.Errorf("output element type %s", backbone.ElemTypeName(et))
			}
			// The cut model's own detection sees a feature extractor of the same width.
			c2, err := backbone.FindFeatureTensor(cut, "")
			if err != nil {
				t.Fatal(err)
			}
			if c2.Rule != backbone.RuleOutput || c2.Dim != c.Dim || c2.Pool != backbone.PoolNone || len(c2.Removed) != 0 {
				t.Errorf("re-detection on the cut model: %+v", c2)
			}
			// No removed node survives; every initializer is read.
			removed := map[string]bool{}
			for _, r := range c.Removed {
				removed[r] = true
			}
			reads := map[string]bool{}
			for _, n := range g.Node {
				if label := n.GetOpType() + " " + backbone.NodeLabel(n); removed[label] && slices.Contains(m.Graph.Node, n) {
					t.Errorf("removed node %s is still in the cut model", label)
				}
				for _, r := range backbone.NodeReads(n) {
					reads[r] = true
				}
			}
			for _, init := range g.Initializer {
				if !reads[init.GetName()] {
					t.Errorf("initializer %s is unused", init.GetName())
				}
			}
			if cut.GetOpsetImport()[0].GetVersion() != m.GetOpsetImport()[0].GetVersion() || cut.GetDocString() != m.GetDocString() || len(cut.MetadataProps) != len(m.MetadataProps) {
				t.Error("opset, doc string or metadata not kept")
			}
			// Weights are shared, not copied.
			for _, init := range g.Initializer {
				if !slices.Contains(m.Graph.Initializer, init) {
					t.Errorf("initializer %s was copied", init.GetName())
				}
			}
			data, err := backbone.MarshalModel(cut)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := backbone.ParseModel(data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCutAtFeatureRename: a kept tensor already called "features" is
// renamed, and a model whose output is "features" keeps it as is.
func TestCutAtFeatureRename(t *testing.T) {
	b := backbone.NewBuilder("clash")
	x := b.Input("input", -1, 3, 8, 8)
	b.Node("Relu", []string{x}, []string{backbone.FeatureOutput})
	y := b.Op("GlobalAveragePool", "gap", []string{backbone.FeatureOutput})
	y = b.Op("Flatten", "flat", []string{y})
	b.Node("Gemm", []string{y, b.Initializer("w", []int64{3, 4}, make([]float32, 12))}, []string{"logits"})
	b.Output("logits", -1, 4)
	m := b.Model(0)
	c, err := backbone.FindFeatureTensor(m, backbone.FeatureOutput)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := backbone.CutAtFeature(m, c)
	if err != nil {
		t.Fatal(err)
	}
	if m.Graph.Node[0].Output[0] != backbone.FeatureOutput {
		t.Fatal("input model's node was renamed in place")
	}
	producers := map[string]int{}
	for _, n := range cut.Graph.Node {
		for _, o := range n.Output {
			producers[o]++
		}
	}
	if producers[backbone.FeatureOutput] != 1 || cut.Graph.Node[0].Output[0] == backbone.FeatureOutput {
		t.Fatalf("nodes after rename: %v", cut.Graph.Node)
	}

	c, err = backbone.FindFeatureTensor(m, "flat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backbone.CutAtFeature(m, c); err != nil {
		t.Fatal(err)
	}
	if _, err := backbone.CutAtFeature(m, &backbone.FeatureChoice{Tensor: "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %v for an absent tensor", err)
	}
	if _, err := backbone.CutAtFeature(m, nil); err == nil {
		t.Error("no error for a nil choice")
	}
}

// ortReadyForGraphTests loads ONNX Runtime or skips the test, saying why.
func ortReadyForGraphTests(t testing.TB) {
	t.Helper()
	if _, err := backboneort.Init(""); err != nil {
		if errors.Is(err, backboneort.ErrLibraryMissing) {
			testasset.Skip(t, "ONNX Runtime is not available (%v); the cut models were not run", err)
		}
		t.Fatal(err)
	}
}

// graphRunORT runs model data on one float32 input and returns the named
// outputs as flat float32 slices with their shapes.
func graphRunORT(t testing.TB, data []byte, input string, shape []int64, x []float32, outputs ...string) ([][]float32, [][]int64) {
	t.Helper()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{input}, outputs, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime refused the model: %v", err)
	}
	defer sess.Destroy()
	in, err := ort.NewTensor(ort.NewShape(shape...), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := make([]ort.Value, len(outputs))
	if err := sess.Run([]ort.Value{in}, outs); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := make([][]float32, len(outs))
	shapes := make([][]int64, len(outs))
	for i, o := range outs {
		ft, ok := o.(*ort.Tensor[float32])
		if !ok {
			t.Fatalf("output %s is %T, want float32 tensor", outputs[i], o)
		}
		res[i] = slices.Clone(ft.GetData())
		shapes[i] = slices.Clone([]int64(ft.GetShape()))
		o.Destroy()
	}
	return res, shapes
}

// graphPoolReference reduces an intermediate tensor as CutAtFeature's pooling
// should, in float64.
func graphPoolReference(x []float32, shape []int64, pool string) ([]float64, error) {
	n := int(shape[0])
	switch pool {
	case backbone.PoolNone, backbone.PoolFlatten:
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		return out, nil
	case backbone.PoolGlobalAvgNCHW:
		c := int(shape[1])
		hw := len(x) / (n * c)
		out := make([]float64, n*c)
		for i := range out {
			s := 0.0
			for _, v := range x[i*hw : (i+1)*hw] {
				s += float64(v)
			}
			out[i] = s / float64(hw)
		}
		return out, nil
	case backbone.PoolGlobalAvgNHWC:
		c := int(shape[3])
		hw := len(x) / (n * c)
		out := make([]float64, n*c)
		for b := 0; b < n; b++ {
			for p := 0; p < hw; p++ {
				for ch := 0; ch < c; ch++ {
					out[b*c+ch] += float64(x[(b*hw+p)*c+ch]) / float64(hw)
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("pool %q", pool)
}

// TestCutAtFeatureRunsInORT checks, for every test model kind, that the cut
// model runs and that its output equals the chosen intermediate tensor of
// the full model (exposed as an extra output of a copy), pooled.
func TestCutAtFeatureRunsInORT(t *testing.T) {
	ortReadyForGraphTests(t)
	const size, batch = 32, 3
	for _, kind := range testmodels.Kinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, size)
			exp := testmodels.ExpectFor(kind, size)
			c, cut := findAndCut(t, m)
			cutData, err := backbone.MarshalModel(cut)
			if err != nil {
				t.Fatal(err)
			}
			full := proto.Clone(m).(*onnxpb.ModelProto)
			if c.Tensor != full.Graph.Output[0].GetName() {
				full.Graph.Output = append(full.Graph.Output, floatOutput(c.Tensor))
			}
			fullData, err := backbone.MarshalModel(full)
			if err != nil {
				t.Fatal(err)
			}
			shape := []int64{batch, 3, size, size}
			if exp.Layout == "NHWC" {
				shape = []int64{batch, size, size, 3}
			}
			x := make([]float32, batch*3*size*size)
			tb := testmodels.NewRand(42)
			for i := range x {
				x[i] = tb.Float32()
			}
			got, gotShape := graphRunORT(t, cutData, exp.Input, shape, x, backbone.FeatureOutput)
			ref, refShape := graphRunORT(t, fullData, exp.Input, shape, x, c.Tensor)
			if !slices.Equal(gotShape[0], []int64{batch, c.Dim}) {
				t.Fatalf("cut output shape %v, want [%d %d]", gotShape[0], batch, c.Dim)
			}
			want, err := graphPoolReference(ref[0], refShape[0], c.Pool)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != len(got[0]) {
				t.Fatalf("%d features, reference has %d", len(got[0]), len(want))
			}
			worst := 0.0
			for i, v := range got[0] {
				worst = math.Max(worst, math.Abs(float64(v)-want[i])/(1+math.Abs(want[i])))
			}
			if worst > 1e-5 {
				t.Errorf("cut output differs from the full model's %s by %g (relative)", c.Tensor, worst)
			}
		})
	}
}

// BenchmarkCutAtFeature compares the cut, which shares weights with its
// input, against the baseline a naive implementation would pay: a deep
// copy of the model (proto.Clone). The model is the "vgg" test model at
// 256x256 (fc6 holds 1M float32, 4 MiB).
func BenchmarkCutAtFeature(b *testing.B) {
	m := testmodels.Model("vgg", 256)
	c, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline=proto.Clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = proto.Clone(m)
		}
	})
	b.Run("CutAtFeature", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := backbone.CutAtFeature(m, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FindFeatureTensor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := backbone.FindFeatureTensor(m, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCutNHWCOpset18 checks the NHWC pooling under opset 18, where
// ReduceMean takes its axes as an input instead of an attribute.
func TestCutNHWCOpset18(t *testing.T) {
	for _, opset := range []int64{13, 18} {
		t.Run(fmt.Sprint(opset), func(t *testing.T) {
			m := testmodels.Model("features4d-nhwc", 16)
			m.OpsetImport[0].Version = ptr(opset)
			_, cut := findAndCut(t, m)
			last := cut.Graph.Node[len(cut.Graph.Node)-1]
			if last.GetOpType() != "ReduceMean" || (opset >= 18) != (len(last.Input) == 2) {
				t.Fatalf("opset %d: pooling node %v", opset, last)
			}
			ortReadyForGraphTests(t)
			data, _ := backbone.MarshalModel(cut)
			x := make([]float32, 2*16*16*3)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			out, shapes := graphRunORT(t, data, "input_1", []int64{2, 16, 16, 3}, x, backbone.FeatureOutput)
			if !slices.Equal(shapes[0], []int64{2, 12}) || len(out[0]) != 24 {
				t.Fatalf("output shape %v", shapes[0])
			}
		})
	}
}

// TestCutInitializersAsInputs: old PyTorch exports (keep_initializers_as_inputs)
// list every weight as a graph input too; the cut keeps only the inputs it
// still reads and still runs.
func TestCutInitializersAsInputs(t *testing.T) {
	m := testmodels.Model("vgg", 16)
	for _, init := range m.Graph.Initializer {
		m.Graph.Input = append(m.Graph.Input, backbone.ValueInfo(init.GetName(), onnxpb.TensorProto_FLOAT, init.Dims))
	}
	c, cut := findAndCut(t, m)
	inits := map[string]bool{}
	for _, init := range cut.Graph.Initializer {
		inits[init.GetName()] = true
	}
	for _, in := range cut.Graph.Input[1:] {
		if !inits[in.GetName()] {
			t.Errorf("input %s kept although its initializer was dropped", in.GetName())
		}
	}
	if len(cut.Graph.Input) != 1+len(cut.Graph.Initializer) || inits["fc8.weight"] {
		t.Errorf("%d inputs for %d initializers; fc8 kept: %v", len(cut.Graph.Input), len(cut.Graph.Initializer), inits["fc8.weight"])
	}
	ortReadyForGraphTests(t)
	data, _ := backbone.MarshalModel(cut)
	_, shapes := graphRunORT(t, data, "input", []int64{1, 3, 16, 16}, make([]float32, 3*16*16), backbone.FeatureOutput)
	if !slices.Equal(shapes[0], []int64{1, c.Dim}) {
		t.Errorf("output shape %v", shapes[0])
	}
}

// TestCutModelsPassONNXChecker validates the cut test models with the
// reference implementation's checker (onnx.checker with full_check, which
// also runs ONNX shape inference). Skipped when /usr/bin/python3 with the
// onnx package is not installed.
func TestCutModelsPassONNXChecker(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testasset.Skip(t, "%s with the onnx package is not available (%v); cut models not checked by onnx.checker", py, err)
	}
	dir := t.TempDir()
	for _, kind := range testmodels.Kinds {
		m := testmodels.Model(kind, 16)
		_, cut := findAndCut(t, m)
		if err := backbone.WriteModelFile(filepath.Join(dir, kind+".onnx"), cut); err != nil {
			t.Fatal(err)
		}
	}
	script := `
import glob, sys, onnx
bad = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.onnx")):
    try:
        onnx.checker.check_model(onnx.load(f), full_check=True)
    except Exception as e:
        bad += 1
        print(f, str(e).splitlines()[0])
sys.exit(1 if bad else 0)
`
	out, err := exec.Command(py, "-c", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker rejected cut models: %v\n%s", err, out)
	}
}
