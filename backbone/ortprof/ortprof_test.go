package ortprof

import (
	"bytes"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// testdata/resnet-float.json is the profile ONNX Runtime 1.24.1 wrote for
// three runs of internal/testmodels' "resnet" model cut at its features
// (1 thread; see backbone/ort TestSessionProfileAndOptimizedModel).
func TestParseRealProfile(t *testing.T) {
	f, err := os.Open("testdata/resnet-float.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Runs) != 3 || len(p.Kernels) != 24 {
		t.Fatalf("%d runs, %d kernel events; want 3, 24", len(p.Runs), len(p.Kernels))
	}
	times, runs, err := p.PerRun(1)
	if err != nil {
		t.Fatal(err)
	}
	// The last two runs: the stem took 4 µs each, block_relu1 8 µs each,
	// GlobalAveragePool 1 µs each (5 µs in the first run, left out).
	for node, want := range map[string]NodeTime{
		"stem_relu_nchwc":   {Op: "Conv", Micros: 4},
		"block_relu1_nchwc": {Op: "Conv", Micros: 8},
		"GlobalAveragePool": {Op: "GlobalAveragePool", Micros: 1},
	} {
		if got := times[node]; got != want {
			t.Errorf("%s: %+v per run, want %+v", node, got, want)
		}
	}
	if runs != 2 || len(times) != 8 {
		t.Errorf("%d runs, %d nodes; want 2, 8", runs, len(times))
	}
	if _, _, err := p.PerRun(3); err == nil {
		t.Error("PerRun(3) of a 3-run profile: no error")
	}
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":         `{"cat":`,
		"not an array":     `{"cat":"Node"}`,
		"negative time":    `[{"cat":"Node","name":"a_kernel_time","ts":-1,"dur":2}]`,
		"negative dur":     `[{"cat":"Session","name":"model_run","ts":1,"dur":-2}]`,
		"nameless kernel":  `[{"cat":"Node","name":"_kernel_time","ts":1,"dur":2}]`,
		"string for a dur": `[{"cat":"Node","name":"a_kernel_time","ts":1,"dur":"2"}]`,
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// graph builds a graph with one node per case below, named after it.
func testGraph() *onnxpb.GraphProto {
	b := backbone.NewBuilder("g")
	init := func(name string, dims ...int64) string {
		b.Graph.Initializer = append(b.Graph.Initializer, &onnxpb.TensorProto{Name: &name, Dims: dims})
		return name
	}
	node := func(name, op string, inputs []string, attrs ...*onnxpb.AttributeProto) {
		n := b.Node(op, inputs, []string{name + "_out"}, attrs...)
		n.Name = &name
	}
	node("stem", "Conv", []string{"x", init("w_stem", 32, 3, 3, 3)})
	node("stem_rgba", "FusedConv", []string{"x", init("w_rgba", 32, 4, 3, 3)})
	node("dw", "Conv", []string{"x", init("w_dw", 32, 1, 3, 3)}, backbone.AttrInt("group", 32))
	node("grouped", "Conv", []string{"x", init("w_g", 64, 2, 3, 3)}, backbone.AttrInt("group", 32))
	node("pw", "Conv", []string{"x", init("w_pw", 96, 16, 1, 1)})
	node("qdw", "QLinearConv", []string{"x", "xs", "xz", init("qw_dw", 144, 1, 3, 3), "ws", "wz", "ys", "yz"}, backbone.AttrInt("group", 144))
	node("qstem", "QLinearConv", []string{"x", "xs", "xz", init("qw_stem", 32, 3, 3, 3), "ws", "wz", "ys", "yz"})
	node("qpw", "QLinearConv", []string{"x", "xs", "xz", init("qw_pw", 24, 144, 1, 1), "ws", "wz", "ys", "yz"})
	node("deq", "DequantizeLinear", []string{init("w8", 16, 1, 3, 3), "s", "z"})
	node("dqdw", "Conv", []string{"x", "deq_out"}, backbone.AttrInt("group", 16))
	node("unknown_w", "Conv", []string{"x", "computed"})
	node("gemm", "Gemm", []string{"x", init("w_fc", 10, 64)})
	node("add", "Add", []string{"a", "b"})
	node("qadd", "QLinearAdd", []string{"a"})
	node("silu", "QuickGelu", []string{"x"}) // ONNX Runtime's fused x*sigmoid(x)
	node("transpose", "Transpose", []string{"x"})
	node("reorder", "ReorderInput", []string{"x"})
	node("q", "QuantizeLinear", []string{"x"})
	node("pool", "MaxPool", []string{"x"})
	return b.Graph
}

func TestClassifyGraph(t *testing.T) {
	got := ClassifyGraph(testGraph())
	for node, want := range map[string]Class{
		"stem": Stem, "stem_rgba": Stem, "dw": Depthwise, "grouped": Conv, "pw": Conv,
		"qdw": Depthwise, "qstem": Stem, "qpw": Conv, "dqdw": Depthwise, "unknown_w": Conv, "gemm": Conv,
		"deq": Layout, "add": Elementwise, "qadd": Elementwise, "silu": Elementwise, "transpose": Layout, "reorder": Layout, "q": Layout, "pool": Other,
	} {
		if got[node] != want {
			t.Errorf("%s: %q, want %q", node, got[node], want)
		}
	}
}

func TestCompare(t *testing.T) {
	fc := map[string]Class{"stem": Stem, "pw": Conv, "reorder": Layout}
	qc := map[string]Class{"qstem": Stem, "qpw": Conv, "q": Layout}
	ft := map[string]NodeTime{"stem": {"Conv", 100}, "pw": {"Conv", 600}, "reorder": {"ReorderOutput", 20}, "pool": {"MaxPool", 10}}
	qt := map[string]NodeTime{"qstem": {"QLinearConv", 200}, "qpw": {"QLinearConv", 200}, "q": {"QuantizeLinear", 30},
		"pool": {"MaxPool", 10}, "qadd": {"QLinearAdd", 40}}
	c := Compare(ft, qt, fc, qc)
	var classes []Class
	for _, r := range c.Rows {
		classes = append(classes, r.Class)
	}
	if want := []Class{Stem, Conv, Elementwise, Layout, Other}; !slices.Equal(classes, want) {
		t.Fatalf("rows %v, want %v", classes, want)
	}
	r := c.Rows[1]
	if r.FloatUS != 600 || r.Int8US != 200 || r.Speedup != 3 || r.FloatNodes != 1 || r.Int8Ops["QLinearConv"] != 200 {
		t.Errorf("conv row %+v", r)
	}
	if c.Rows[2].FloatNodes != 0 || c.Rows[2].Int8Nodes != 1 || c.Rows[2].Speedup != 0 {
		t.Errorf("element-wise row (int8 only, unclassed node) %+v", c.Rows[2])
	}
	if c.FloatUS != 730 || c.Int8US != 480 {
		t.Errorf("totals %v, %v; want 730, 480", c.FloatUS, c.Int8US)
	}
	// Faster precision per class: stem float 100, conv int8 200, element-
	// wise none (0, float has no such node), layout float 20, other 10.
	if want := 730.0 / 330; math.Abs(c.Bound-want) > 1e-12 {
		t.Errorf("bound %v, want %v", c.Bound, want)
	}
}

func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/resnet-float.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`[{"cat":"Session","name":"model_run","ts":1,"dur":5},{"cat":"Node","name":"a_kernel_time","ts":2,"dur":1,"args":{"op_name":"Conv"}}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		times, runs, err := p.PerRun(0)
		if err != nil {
			return
		}
		if runs != len(p.Runs) {
			t.Fatalf("%d runs averaged of %d", runs, len(p.Runs))
		}
		for node, nt := range times {
			if nt.Micros < 0 || math.IsNaN(nt.Micros) {
				t.Fatalf("%s: %v µs", node, nt.Micros)
			}
		}
	})
}
