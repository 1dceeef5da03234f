package tfjs

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	onnxruntime "github.com/yalue/onnxruntime_go"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testasset"
)

// synthGraph builds TF.js graph-model JSON by hand, for operators and
// attributes the human-models networks do not use.
type synthGraph struct {
	nodes   []map[string]any
	weights []WeightEntry
	data    []byte
	rnd     uint64
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func listI(v ...int) map[string]any {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return map[string]any{"list": map[string]any{"i": s}}
}

func (g *synthGraph) node(name, op string, inputs []string, attr map[string]any) string {
	n := map[string]any{"name": name, "op": op, "input": inputs, "attr": attr}
	if attr == nil {
		n["attr"] = map[string]any{}
	}
	if attr != nil {
		attr["T"] = map[string]any{"type": "DT_FLOAT"}
	}
	g.nodes = append(g.nodes, n)
	return name
}

// constant adds a Const with deterministic values in [-s, s) (float32) or
// the given ints (int32).
func (g *synthGraph) constant(name string, shape []int, s float32, ints ...int) string {
	dtype := "DT_FLOAT"
	n := 1
	for _, d := range shape {
		n *= d
	}
	if ints != nil {
		dtype = "DT_INT32"
		for _, v := range ints {
			g.data = binary.LittleEndian.AppendUint32(g.data, uint32(int32(v)))
		}
		g.weights = append(g.weights, WeightEntry{Name: name, Shape: shape, DType: "int32"})
	} else {
		for range n {
			g.rnd = g.rnd*6364136223846793005 + 1442695040888963407
			v := (float32(g.rnd>>40)/float32(1<<24)*2 - 1) * s
			g.data = binary.LittleEndian.AppendUint32(g.data, math.Float32bits(v))
		}
		g.weights = append(g.weights, WeightEntry{Name: name, Shape: shape, DType: "float32"})
	}
	dims := []map[string]string{}
	for _, d := range shape {
		dims = append(dims, map[string]string{"size": fmt.Sprint(d)})
	}
	g.nodes = append(g.nodes, map[string]any{"name": name, "op": "Const", "attr": map[string]any{
		"value": map[string]any{"tensor": map[string]any{"dtype": dtype, "tensorShape": map[string]any{"dim": dims}}},
		"dtype": map[string]any{"type": dtype}}})
	return name
}

func convAttrs(stride int, padding string, fused ...string) map[string]any {
	f := make([]string, len(fused))
	for i, s := range fused {
		f[i] = b64(s)
	}
	nargs := 0
	if len(fused) > 0 {
		nargs = 1
	}
	for _, s := range fused {
		if s == "Prelu" {
			nargs = 2
		}
	}
	return map[string]any{"strides": listI(1, stride, stride, 1), "padding": map[string]any{"s": b64(padding)},
		"dilations": listI(1, 1, 1, 1), "data_format": map[string]any{"s": b64("NHWC")}, "explicit_paddings": map[string]any{"list": map[string]any{}},
		"fused_ops": map[string]any{"list": map[string]any{"s": f}}, "num_args": map[string]any{"i": fmt.Sprint(nargs)}, "epsilon": map[string]any{"f": 0}}
}

// TestGraphOpsMatchTFJS runs a hand-made graph model using the translator's
// other operators (Pad, MirrorPad, Relu6 and Prelu fused into convolutions,
// AvgPool, LeakyRelu, ConcatV2, Mean with keep_dims, Reshape,
// _FusedMatMul, RealDiv, Tanh, Softmax) in ONNX Runtime and in TF.js:
// every output must agree within 1e-4 (|a-b| / (1+|b|)).
func TestGraphOpsMatchTFJS(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		testasset.Skip(t, "node not found: the TF.js reference cannot run")
	}
	orttest.Init(t)
	g := &synthGraph{rnd: 7}
	dims := []map[string]string{{"size": "-1"}, {"size": "9"}, {"size": "9"}, {"size": "3"}}
	g.nodes = append(g.nodes, map[string]any{"name": "image", "op": "Placeholder", "attr": map[string]any{
		"shape": map[string]any{"shape": map[string]any{"dim": dims}}, "dtype": map[string]any{"type": "DT_FLOAT"}}})
	x := g.node("pad", "Pad", []string{"image", g.constant("pads", []int{4, 2}, 0, 0, 0, 1, 1, 2, 0, 0, 0)}, map[string]any{})
	x = g.node("conv", "_FusedConv2D", []string{x, g.constant("conv_w", []int{3, 3, 3, 8}, 0.5), g.constant("conv_b", []int{8}, 0.5)}, convAttrs(2, "SAME", "BiasAdd", "Relu6"))
	x = g.node("dw", "FusedDepthwiseConv2dNative", []string{x, g.constant("dw_w", []int{3, 3, 8, 2}, 0.5), g.constant("dw_b", []int{16}, 0.5), g.constant("dw_alpha", []int{16}, 0.3)}, convAttrs(1, "VALID", "BiasAdd", "Prelu"))
	pool := g.node("pool", "AvgPool", []string{x}, map[string]any{"ksize": listI(1, 2, 2, 1), "strides": listI(1, 1, 1, 1), "padding": map[string]any{"s": b64("SAME")}, "data_format": map[string]any{"s": b64("NHWC")}})
	mp := g.node("mirror", "MirrorPad", []string{pool, g.constant("mpads", []int{4, 2}, 0, 0, 0, 1, 1, 1, 1, 0, 0)}, map[string]any{"mode": map[string]any{"s": b64("REFLECT")}})
	lr := g.node("leaky", "LeakyRelu", []string{mp}, map[string]any{"alpha": map[string]any{"f": 0.2}})
	th := g.node("tanh", "Tanh", []string{mp}, map[string]any{})
	cat := g.node("cat", "ConcatV2", []string{lr, th, g.constant("axis", []int{}, 0, 3)}, map[string]any{"N": map[string]any{"i": "2"}})
	mean := g.node("mean", "Mean", []string{cat, g.constant("axes", []int{2}, 0, 1, 2)}, map[string]any{"keep_dims": map[string]any{"b": true}})
	flat := g.node("flat", "Reshape", []string{mean, g.constant("shape", []int{2}, 0, -1, 32)}, map[string]any{})
	div := g.node("div", "RealDiv", []string{flat, g.constant("divisor", []int{32}, 1)}, map[string]any{})
	fc := g.node("fc", "_FusedMatMul", []string{div, g.constant("fc_w", []int{32, 5}, 0.5), g.constant("fc_b", []int{5}, 0.5)},
		map[string]any{"transpose_a": map[string]any{"b": false}, "transpose_b": map[string]any{"b": false},
			"fused_ops": map[string]any{"list": map[string]any{"s": []string{b64("BiasAdd"), b64("Relu")}}}, "num_args": map[string]any{"i": "1"}, "epsilon": map[string]any{"f": 0}})
	sm := g.node("probs", "Softmax", []string{fc}, map[string]any{})
	outs := []string{"conv", "dw", cat, div, sm}

	topo, err := json.Marshal(map[string]any{"format": "graph-model", "modelTopology": map[string]any{"node": g.nodes, "versions": map[string]any{"producer": 440}, "library": map[string]any{}},
		"weightsManifest": []WeightGroup{{Paths: []string{"w.bin"}, Weights: g.weights}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.json"), topo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), g.data, 0o644); err != nil {
		t.Fatal(err)
	}
	var gm GraphModelJSON
	if err := json.Unmarshal(topo, &gm); err != nil {
		t.Fatal(err)
	}
	w, err := IndexWeights(gm.WeightsManifest, func(string) ([]byte, error) { return g.data, nil })
	if err != nil {
		t.Fatal(err)
	}
	var gouts []GraphOutput
	for _, o := range outs {
		gouts = append(gouts, GraphOutput{TF: o, Name: "out_" + o})
	}
	conv, err := ConvertGraph(&gm, w, GraphOptions{InputName: "image", GraphName: "ops", Outputs: gouts})
	if err != nil {
		t.Fatal(err)
	}
	m := conv.Builder.Model(0)
	data, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2
	x0 := randomInput(3, n*9*9*3, 2)
	for i := range x0 {
		x0[i]--
	}
	var names []string
	var widths []int
	for i, o := range gouts {
		names = append(names, o.Name)
		wd := 1
		for _, d := range conv.Shapes[i][1:] {
			wd *= d
		}
		widths = append(widths, wd)
	}
	got := runFlat(t, data, "image", n, 9, 9, 3, names, widths, x0)
	in := filepath.Join(dir, "input.f32")
	writeF32(t, in, x0)
	tfPath := tfjsBundle(t, dir)
	script, _ := filepath.Abs("testdata/graph_reference.js")
	cmd := exec.Command(nodeBin, append([]string{script, tfPath, filepath.Join(dir, "model.json"), in, fmt.Sprint(n), "9", "9", "3", filepath.Join(dir, "ref")}, outs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("TF.js reference: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "probs") {
		t.Fatalf("TF.js reference printed %s", out)
	}
	for i, o := range outs {
		ref := readF32(t, filepath.Join(dir, fmt.Sprintf("ref%d.f32", i)))
		if len(ref) != len(got[i]) {
			t.Fatalf("%s: %d values (shape %v), TF.js gives %d", o, len(got[i]), conv.Shapes[i], len(ref))
		}
		worst := 0.0
		for j, v := range got[i] {
			worst = max(worst, math.Abs(float64(v)-float64(ref[j]))/(1+math.Abs(float64(ref[j]))))
		}
		t.Logf("%s %v: max relative difference to TF.js %.3g", o, conv.Shapes[i], worst)
		if worst > 1e-4 {
			t.Errorf("%s differs from TF.js by %.3g > 1e-4", o, worst)
		}
	}
}

// runFlat runs data once on x ([n,h,w,c]) and returns each output's values
// flattened, letting ONNX Runtime allocate outputs of any rank.
func runFlat(t *testing.T, data []byte, input string, n, h, w, c int, outputs []string, widths []int, x []float32) [][]float32 {
	t.Helper()
	s, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(data, []string{input}, outputs, nil)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	defer s.Destroy()
	in, err := onnxruntime.NewTensor(onnxruntime.NewShape(int64(n), int64(h), int64(w), int64(c)), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := make([]onnxruntime.Value, len(outputs))
	if err := s.Run([]onnxruntime.Value{in}, outs); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		ft := o.(*onnxruntime.Tensor[float32])
		res[i] = append([]float32(nil), ft.GetData()...)
		if len(res[i]) != n*widths[i] {
			t.Errorf("output %s: %d values, declared %d per image", outputs[i], len(res[i]), widths[i])
		}
		o.Destroy()
	}
	return res
}
