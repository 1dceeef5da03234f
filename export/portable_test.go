package export

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	onnxruntime "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/models/tfjs"
)

// TestPortableSameBits checks that the consumer-neutral form changes
// nothing in ONNX Runtime: an export of a ReLU6 backbone (written at opset
// 10) gives features bit for bit equal to the cut backbone's, and every
// Clip in it has attribute bounds.
func TestPortableSameBits(t *testing.T) {
	ortReady(t)
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB) *fixture
		clips   int
	}{
		{"mobilenet-relu6", testModel("mobilenet", 0), 3},
		{"mobilenetv2-block10", registry(tfjs.ArchMobileNetV2), 22},
		{"torchvision-mobilenet_v2", torchvision("mobilenet_v2"), 35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fixture(t)
			m, err := Build(f.cut, f.spec, handHead(f, nil, 1), Options{WithFeatures: true, WithPreprocessing: true})
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := defaultOpset(m); v != portableOpset {
				t.Errorf("export opset %d, want %d", v, portableOpset)
			}
			if v, _ := defaultOpset(f.cut); v == portableOpset {
				t.Fatalf("the cut is already at opset %d: the test proves nothing", v)
			}
			clips := 0
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "Clip" {
					clips++
					if len(n.Input) != 1 || attrOf(n, "min") == nil || attrOf(n, "max") == nil {
						t.Errorf("Clip %s: inputs %q, attributes %v", n.GetName(), n.Input, n.Attribute)
					}
				}
			}
			if clips != tc.clips {
				t.Errorf("%d Clip nodes, want %d", clips, tc.clips)
			}
			data, err := backbone.MarshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := runModel(data, InputPixels, f.spec, f.raw, f.n, []string{OutputFeatures}, []int{f.d})
			if err != nil {
				t.Fatal(err)
			}
			// The preprocessing in the graph may round differently from
			// imaging's; feed the cut's input through the graph instead.
			m2, err := Build(f.cut, f.spec, handHead(f, nil, 1), Options{WithFeatures: true})
			if err != nil {
				t.Fatal(err)
			}
			data2, _ := backbone.MarshalModel(m2)
			outs2, err := runModel(data2, f.input, f.spec, f.norm, f.n, []string{OutputFeatures}, []int{f.d})
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(outs2[0], f.feats); d != 0 {
				t.Errorf("opset-10 export's features differ from the cut's by %.3g, want bit-identical", d)
			}
			if d := maxAbsDiff(outs[0], f.feats); d > 1e-5 {
				t.Errorf("raw-pixel export's features differ by %.3g", d)
			}
		})
	}
}

// TestLowerNode checks the opset-10 spellings and the refusals.
func TestLowerNode(t *testing.T) {
	g := &onnxpb.GraphProto{}
	b := backbone.EditGraph(g)
	lo := b.Initializer("lo", nil, []float32{0})
	hi := b.Initializer("hi", nil, []float32{6})
	pads := b.Int64Initializer("pads", []int64{8}, []int64{0, 0, 1, 1, 0, 0, 1, 1})
	axes := b.Int64Initializer("axes", []int64{2}, []int64{2, 3})
	idx := b.Int64Initializer("idx", nil, []int64{0})
	neg := b.Int64Initializer("neg", nil, []int64{-1})
	c := newConstIndex(g)
	ranks := map[string]int{"x": 4, "v": 2}
	node := func(op string, in []string, at ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String("n"), Input: in, Output: []string{"y"}, Attribute: at}
	}
	tests := []struct {
		name   string
		n      *onnxpb.NodeProto
		opset  int64
		op     string
		inputs int
		attrs  []string
		err    string
	}{
		{"clip", node("Clip", []string{"x", lo, hi}), 13, "Clip", 1, []string{"min", "max"}, ""},
		{"clip max only", node("Clip", []string{"x", "", hi}), 13, "Clip", 1, []string{"max"}, ""},
		{"clip computed", node("Clip", []string{"x", "x", hi}), 13, "", 0, nil, "computed min"},
		{"pad", node("Pad", []string{"x", pads}, backbone.AttrString("mode", "constant")), 13, "Pad", 1, []string{"mode", "pads"}, ""},
		{"unsqueeze", node("Unsqueeze", []string{"v", axes}), 13, "Unsqueeze", 1, []string{"axes"}, ""},
		{"squeeze 11", node("Squeeze", []string{"x"}, backbone.AttrInts("axes", 2, 3)), 11, "Squeeze", 1, []string{"axes"}, ""},
		{"dropout", node("Dropout", []string{"x"}), 13, "Identity", 1, nil, ""},
		{"softmax last", node("Softmax", []string{"v"}, backbone.AttrInt("axis", 1)), 13, "Softmax", 1, []string{"axis"}, ""},
		{"softmax -1", node("Softmax", []string{"x"}), 13, "Softmax", 1, []string{"axis"}, ""},
		{"softmax channel", node("Softmax", []string{"x"}, backbone.AttrInt("axis", 1)), 13, "", 0, nil, "not known to be the last"},
		{"gemm no C", node("Gemm", []string{"v", "w"}), 13, "", 0, nil, "no C input"},
		{"negative axis", node("Concat", []string{"x", "x"}, backbone.AttrInt("axis", -1)), 13, "", 0, nil, "negative axis"},
		{"unknown op", node("Resize", []string{"x"}), 13, "", 0, nil, "no opset-10 form"},
		{"other domain", &onnxpb.NodeProto{OpType: proto.String("FusedConv"), Domain: proto.String("com.microsoft")}, 13, "", 0, nil, "domain"},
		{"conv unchanged", node("Conv", []string{"x", "w"}), 13, "Conv", 2, nil, ""},
		{"shape", node("Shape", []string{"x"}), 13, "Shape", 1, nil, ""},
		{"shape start", node("Shape", []string{"x"}, backbone.AttrInt("start", 1)), 15, "", 0, nil, "opset 15"},
		{"gather", node("Gather", []string{"s", idx}, backbone.AttrInt("axis", 0)), 13, "Gather", 2, []string{"axis"}, ""},
		{"gather negative", node("Gather", []string{"s", neg}), 13, "", 0, nil, "negative indices"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.n)
			got, err := lowerNode(tc.n, tc.opset, c, ranks)
			if !proto.Equal(before, tc.n) {
				t.Error("lowerNode modified its input node")
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, a := range got.Attribute {
				names = append(names, a.GetName())
			}
			if got.GetOpType() != tc.op || len(got.Input) != tc.inputs || !slices.Equal(names, tc.attrs) {
				t.Errorf("got %s %q %v, want %s with %d inputs and attributes %v", got.GetOpType(), got.Input, names, tc.op, tc.inputs, tc.attrs)
			}
		})
	}
}

// TestLimits checks the one-line note for a ReLU6 model that cannot be
// lowered, and that lowerOpset leaves such a model alone.
func TestLimits(t *testing.T) {
	f := getFixture(t, "mobilenet", testSize, 0, testImages, testClasses)
	m, err := Build(f.cut, f.spec, handHead(f, nil, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l := Limits(m); l != nil {
		t.Fatalf("limits %q for a model every consumer reads", l)
	}
	cut := proto.Clone(f.cut).(*onnxpb.ModelProto)
	b := backbone.EditGraph(cut.Graph)
	// A HardSwish (opset 14) on the features keeps the model at its opset.
	cut.OpsetImport[0].Version = proto.Int64(14)
	cut.Graph.Node[len(cut.Graph.Node)-1].Output[0] = "pre_features"
	b.Node("HardSwish", []string{"pre_features"}, []string{OutputFeatures})
	m, err = Build(cut, f.spec, handHead(f, nil, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := defaultOpset(m); v != 14 {
		t.Errorf("opset %d, want 14 kept", v)
	}
	l := Limits(m)
	if len(l) != 1 || !strings.Contains(l[0], "OpenCV DNN 4.6 cannot read") || !strings.Contains(l[0], "HardSwish") || strings.Contains(l[0], "\n") {
		t.Errorf("limits %q, want one line naming OpenCV and HardSwish", l)
	}
}

// BenchmarkPortable measures ONNX Runtime on exports written as the
// backbone had them and in the consumer-neutral form, interleaved in one
// run (batch 6, 2 threads): MobileNetV2 block 10 (ReLU6 Clip -> opset 10)
// and an NHWC backbone with in-graph normalisation (per-channel constants
// between Transposes). Metrics: the fastest iteration's ms per image for
// each form, and the portable form's difference in percent.
func BenchmarkPortable(b *testing.B) {
	const batch = registryImages
	ortReady(b)
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB) *fixture
		opt     Options
	}{
		{"mobilenetv2-block10", registry(tfjs.ArchMobileNetV2), Options{}},
		{"keras-nhwc-224/pixels", func(t testing.TB) *fixture { return getFixture(t, "keras", 224, 0, batch, 4) }, Options{WithPreprocessing: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := tc.fixture(b)
			shape := f.spec.InputShape()
			x := f.norm
			if tc.opt.WithPreprocessing {
				x = f.raw
			}
			x = x[:batch*f.spec.TensorLen()]
			h := handHead(f, nil, 1.5)
			var sessions [2]*ort.Session
			var outs [2][]float32
			for i, portable := range []bool{false, true} {
				rewriteForConsumers = portable
				m, err := Build(f.cut, f.spec, h, tc.opt)
				rewriteForConsumers = true
				if err != nil {
					b.Fatal(err)
				}
				data, meta := marshalExport(b, m)
				s, err := ort.NewSession(data, ort.SessionSpec{Input: meta.InputName, InputShape: shape, Outputs: []string{OutputProbabilities}, OutputSizes: []int{f.k}}, ort.SessionOptions{Threads: 2})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				sessions[i], outs[i] = s, make([]float32, batch*f.k)
			}
			best := alternate(b, sessions, x, batch, outs)
			if d := maxAbsDiff(outs[0], outs[1]); d > 1e-6 {
				b.Errorf("the two forms' probabilities differ by %.3g", d)
			}
			per := func(i int) float64 { return best[i].Seconds() * 1000 / batch }
			b.ReportMetric(per(0), "as_written_min_ms/image")
			b.ReportMetric(per(1), "portable_min_ms/image")
			b.ReportMetric(100*(per(1)/per(0)-1), "portable_diff_%")
		})
	}
}

// TestPortableSameKernels checks, without timing, that ONNX Runtime runs
// the portable form with the same kernels as the graph as the backbone
// wrote it: the graphs ONNX Runtime optimises them into (all levels, its
// NCHWc layout included) have the same nodes, counted by domain, operator
// and fused activation.
func TestPortableSameKernels(t *testing.T) {
	ortReady(t)
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB) *fixture
		opt     Options
	}{
		{"mobilenetv2-block10", registry(tfjs.ArchMobileNetV2), Options{}},
		{"keras-nhwc/pixels", testModel("keras", 0), Options{WithPreprocessing: true}},
		{"resnet/pixels", testModel("resnet", 0), Options{WithPreprocessing: true}},
		{"torchvision-mobilenet_v2", torchvision("mobilenet_v2"), Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fixture(t)
			h := handHead(f, nil, 1.5)
			var counts [2]map[string]int
			for i, portable := range []bool{false, true} {
				rewriteForConsumers = portable
				m, err := Build(f.cut, f.spec, h, tc.opt)
				rewriteForConsumers = true
				if err != nil {
					t.Fatal(err)
				}
				data, meta := marshalExport(t, m)
				optimised := filepath.Join(t.TempDir(), "optimised.onnx")
				opts, err := onnxruntime.NewSessionOptions()
				if err != nil {
					t.Fatal(err)
				}
				opts.SetIntraOpNumThreads(1)
				if err := opts.SetOptimizedModelFilePath(optimised); err != nil {
					t.Fatal(err)
				}
				s, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(data, []string{meta.InputName}, []string{OutputProbabilities}, opts)
				opts.Destroy()
				if err != nil {
					t.Fatal(err)
				}
				s.Destroy()
				om, err := backbone.ReadModelFile(optimised)
				if err != nil {
					t.Fatal(err)
				}
				counts[i] = map[string]int{}
				for _, n := range om.Graph.Node {
					key := n.GetDomain() + ":" + n.GetOpType()
					if a := attrOf(n, "activation"); a != nil {
						key += "+" + string(a.GetS())
					}
					counts[i][key]++
				}
			}
			if !maps.Equal(counts[0], counts[1]) {
				t.Errorf("ONNX Runtime optimises the two forms differently:\nas written: %v\nportable:   %v", counts[0], counts[1])
			}
			t.Logf("optimised graph: %v", counts[1])
		})
	}
}
