package export

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/head"
)

// parityCase is one exported model: a backbone kind (and tuned layer
// count), a head and the export options.
type parityCase struct {
	name   string
	kind   string
	tune   int
	head   string // "linear", "mlp", or "hand" (random weights, temperature 2.5)
	hidden []int  // hand heads only
	opt    Options
}

var parityCases = []parityCase{
	{name: "resnet/linear", kind: "resnet", head: head.KindLinear},
	{name: "resnet/mlp/features", kind: "resnet", head: head.KindMLP, opt: Options{WithFeatures: true}},
	{name: "resnet/linear/pixels", kind: "resnet", head: head.KindLinear, opt: Options{WithPreprocessing: true}},
	{name: "keras-nhwc/linear", kind: "keras", head: head.KindLinear},
	{name: "keras-nhwc/mlp/pixels/features", kind: "keras", head: head.KindMLP, opt: Options{WithPreprocessing: true, WithFeatures: true}},
	{name: "vgg/linear", kind: "vgg", head: head.KindLinear},
	{name: "vgg/tuned2/linear", kind: "vgg", tune: 2, head: head.KindLinear},
	{name: "vgg/tuned1/mlp/pixels/features", kind: "vgg", tune: 1, head: head.KindMLP, opt: Options{WithPreprocessing: true, WithFeatures: true}},
	{name: "mobilenet/hand-mlp-T2.5/pixels", kind: "mobilenet", head: "hand", hidden: []int{20, 9}, opt: Options{WithPreprocessing: true}},
	{name: "squeezenet/hand-linear-T2.5", kind: "squeezenet", head: "hand"},
	{name: "features4d-nhwc/linear/pixels", kind: "features4d-nhwc", head: head.KindLinear, opt: Options{WithPreprocessing: true}},
}

const (
	testSize    = 32
	testImages  = 48
	testClasses = 4
)

func (c parityCase) build(t *testing.T) (*fixture, *head.Model, *onnxpb.ModelProto) {
	t.Helper()
	f := getFixture(t, c.kind, testSize, c.tune, testImages, testClasses)
	var h *head.Model
	if c.head == "hand" {
		h = handHead(f, c.hidden, 2.5)
	} else {
		h = headFor(t, f, c.head)
	}
	c.opt.Version = "test-1.0"
	m, err := Build(f.cut, f.spec, h, c.opt)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return f, h, m
}

// TestExportParity runs every exported model in ONNX Runtime and compares
// its probabilities with head.PredictBatch on the features the cut backbone
// gives for the same images (and its features output with those features).
// Models with preprocessing are fed raw 0..255 pixels.
func TestExportParity(t *testing.T) {
	ortReady(t)
	worst := 0.0
	for _, c := range parityCases {
		t.Run(c.name, func(t *testing.T) {
			f, h, m := c.build(t)
			if c.tune > 0 && h.Tuned != c.tune {
				t.Fatalf("head has %d tuned layers, want %d", h.Tuned, c.tune)
			}
			if c.head == "hand" && h.Temperature == 1 {
				t.Fatal("hand head should exercise the temperature")
			}
			outs, want := runExport(t, f, h, m, c.opt)
			d := maxAbsDiff(outs[0], want)
			t.Logf("max |probability difference| = %.3g over %d images x %d classes (temperature %.3f, %d layers, %d tuned)", d, f.n, f.k, h.Temperature, len(h.Layers), h.Tuned)
			if d > parityTol {
				t.Errorf("exported probabilities differ from head.PredictBatch by %.3g > %g", d, parityTol)
			}
			worst = max(worst, d)
			for i := 0; i < f.n; i++ {
				s := 0.0
				for _, p := range outs[0][i*f.k : (i+1)*f.k] {
					s += float64(p)
				}
				if math.Abs(s-1) > 1e-5 {
					t.Fatalf("row %d sums to %v", i, s)
				}
			}
			// The probabilities must not be degenerate, or the comparison
			// would prove little.
			if spread := maxAbsDiff(want[:f.k], want[f.k:2*f.k]); spread < 1e-4 {
				t.Errorf("first two rows nearly identical (%.3g): degenerate test data", spread)
			}
			if c.opt.WithFeatures {
				fd := maxAbsDiff(outs[1], f.feats)
				t.Logf("max |feature difference| = %.3g", fd)
				if fd > 1e-5 {
					t.Errorf("features output differs from the cut backbone's by %.3g", fd)
				}
			}
		})
	}
	t.Logf("worst max |probability difference| over all cases: %.3g", worst)
}

// TestPreprocessingEquivalence checks that a model exported with
// preprocessing, fed raw pixels, gives what the model without it gives on
// the normalised tensor imaging.Spec.Fill produces.
func TestPreprocessingEquivalence(t *testing.T) {
	ortReady(t)
	for _, kind := range []string{"resnet", "keras"} {
		t.Run(kind, func(t *testing.T) {
			f := getFixture(t, kind, testSize, 0, testImages, testClasses)
			h := handHead(f, nil, 1)
			run := func(opt Options, x []float32) []float32 {
				m, err := Build(f.cut, f.spec, h, opt)
				if err != nil {
					t.Fatal(err)
				}
				data, meta := marshalExport(t, m)
				outs, err := runModel(data, meta.InputName, f.spec, x, f.n, []string{OutputProbabilities, OutputFeatures}, []int{f.k, f.d})
				if err != nil {
					t.Fatal(err)
				}
				return append(outs[0], outs[1]...)
			}
			plain := run(Options{WithFeatures: true}, f.norm)
			pix := run(Options{WithFeatures: true, WithPreprocessing: true}, f.raw)
			d := maxAbsDiff(plain, pix)
			t.Logf("raw pixels vs normalised input: max |difference| (probabilities and features) = %.3g", d)
			if d > parityTol {
				t.Errorf("raw-pixel model differs from normalised-input model by %.3g", d)
			}
			// Feeding raw pixels to the plain model must differ: otherwise
			// the test inputs do not exercise the normalisation.
			if maxAbsDiff(f.raw, f.norm) < 1 {
				t.Fatal("raw and normalised inputs are the same")
			}
		})
	}
}

// TestBuildDoesNotMutate checks that Build leaves the cut model and the
// head as they were, and that the export shares the backbone's weights.
func TestBuildDoesNotMutate(t *testing.T) {
	f := getFixture(t, "vgg", testSize, 1, testImages, testClasses)
	h := handHead(f, []int{6}, 1.5)
	h.Tuned = 0
	before, err := backbone.MarshalModel(f.cut)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := head.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []Options{{}, {WithPreprocessing: true, WithFeatures: true, ExtraMetadata: map[string]string{"author": "me"}}} {
		m, err := Build(f.cut, f.spec, h, opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := backbone.MarshalModel(m); err != nil {
			t.Fatal(err)
		}
		after, _ := backbone.MarshalModel(f.cut)
		if !bytes.Equal(before, after) {
			t.Fatalf("Build(%+v) modified the cut model", opt)
		}
		ha, _ := head.Marshal(h)
		if !bytes.Equal(hb, ha) {
			t.Fatalf("Build(%+v) modified the head", opt)
		}
		shared := 0
		for _, a := range m.Graph.Initializer {
			for _, b := range f.cut.Graph.Initializer {
				if a == b {
					shared++
				}
			}
		}
		if shared != len(f.cut.Graph.Initializer) {
			t.Errorf("export shares %d of the backbone's %d weight tensors, want all", shared, len(f.cut.Graph.Initializer))
		}
	}
}

// TestBuildDeterministic checks that the same inputs give the same bytes.
func TestBuildDeterministic(t *testing.T) {
	f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
	h := handHead(f, []int{5}, 2)
	opt := Options{WithPreprocessing: true, ExtraMetadata: map[string]string{"b": "2", "a": "1"}}
	var first []byte
	for i := 0; i < 3; i++ {
		m, err := Build(f.cut, f.spec, h, opt)
		if err != nil {
			t.Fatal(err)
		}
		data, err := backbone.MarshalModel(m)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = data
		} else if !bytes.Equal(first, data) {
			t.Fatal("two exports of the same inputs differ")
		}
	}
}

// checkNoDeadParts asserts that every node feeds a graph output, every
// initializer and input is read, and value_info names only live tensors.
func checkNoDeadParts(t *testing.T, m *onnxpb.ModelProto) {
	t.Helper()
	g := m.Graph
	need := map[string]bool{}
	for _, o := range g.Output {
		need[o.GetName()] = true
	}
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		if !slices.ContainsFunc(n.Output, func(o string) bool { return need[o] }) {
			t.Errorf("node %s (%s) feeds no output", n.GetName(), n.GetOpType())
			continue
		}
		for _, in := range n.Input {
			need[in] = true
		}
	}
	for _, init := range g.Initializer {
		if !need[init.GetName()] {
			t.Errorf("initializer %s is unused", init.GetName())
		}
	}
	for _, in := range g.Input {
		if !need[in.GetName()] {
			t.Errorf("input %s is unused", in.GetName())
		}
	}
	produced := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	for _, v := range g.ValueInfo {
		if !produced[v.GetName()] {
			t.Errorf("value_info %s names no tensor", v.GetName())
		}
	}
	// Topological order: every input is a graph input, an initializer or
	// produced earlier.
	known := map[string]bool{"": true}
	for _, in := range g.Input {
		known[in.GetName()] = true
	}
	for _, init := range g.Initializer {
		known[init.GetName()] = true
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			if !known[in] {
				t.Errorf("node %s reads %s before it is produced", n.GetName(), in)
			}
		}
		for _, o := range n.Output {
			known[o] = true
		}
	}
}

// TestBuildPrunes checks the pruning on every export and on a cut model
// with a dead classifier, a dead initializer and a dead input added.
func TestBuildPrunes(t *testing.T) {
	for _, c := range parityCases {
		if c.head != "hand" && c.tune == 0 && c.kind != "resnet" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			_, _, m := c.build(t)
			checkNoDeadParts(t, m)
		})
	}
	t.Run("dead-classifier", func(t *testing.T) {
		f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
		// Put the full model's classifier back into a copy of the cut.
		cut := proto.Clone(f.cut).(*onnxpb.ModelProto)
		b := backbone.EditGraph(cut.Graph)
		w := b.Initializer("old_fc.weight", []int64{10, int64(f.d)}, make([]float32, 10*f.d))
		b.Node("Gemm", []string{OutputFeatures, w}, []string{"old_logits"}, backbone.AttrInt("transB", 1))
		b.Initializer("orphan", []int64{3}, []float32{1, 2, 3})
		cut.Graph.Input = append(cut.Graph.Input, backbone.ValueInfo("unused_input", onnxpb.TensorProto_FLOAT, []int64{1}))
		cut.Graph.ValueInfo = append(cut.Graph.ValueInfo, backbone.ValueInfo("old_logits", onnxpb.TensorProto_FLOAT, []int64{-1, 10}))
		cut.Graph.Output = append(cut.Graph.Output, backbone.ValueInfo("old_logits", onnxpb.TensorProto_FLOAT, []int64{-1, 10}))
		h := handHead(f, nil, 1)
		m, err := Build(cut, f.spec, h, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkNoDeadParts(t, m)
		for _, n := range m.Graph.Node {
			if slices.Contains(n.Output, "old_logits") {
				t.Error("the old classifier survived")
			}
		}
		for _, init := range m.Graph.Initializer {
			if name := init.GetName(); name == "old_fc.weight" || name == "orphan" {
				t.Errorf("initializer %s survived", name)
			}
		}
		if len(m.Graph.Input) != 1 {
			t.Errorf("inputs %d, want 1", len(m.Graph.Input))
		}
		if got := len(m.Graph.Output); got != 1 || m.Graph.Output[0].GetName() != OutputProbabilities {
			t.Errorf("outputs: %v", m.Graph.Output)
		}
	})
}

// TestBuildStructure checks the graph interface and the nodes added for
// each option.
func TestBuildStructure(t *testing.T) {
	f := getFixture(t, "keras", testSize, 0, testImages, testClasses)
	tests := []struct {
		name              string
		h                 *head.Model
		opt               Options
		inputs, outputs   []string
		gemms, relus      int
		tempDiv, standard bool
	}{
		{"linear", handHead(f, nil, 1), Options{}, []string{f.input}, []string{OutputProbabilities}, 1, 0, false, true},
		{"mlp-T", handHead(f, []int{7, 5}, 3), Options{WithFeatures: true}, []string{f.input}, []string{OutputProbabilities, OutputFeatures}, 3, 2, true, true},
		{"pixels", handHead(f, nil, 1), Options{WithPreprocessing: true}, []string{InputPixels}, []string{OutputProbabilities}, 1, 0, false, true},
	}
	noStd := handHead(f, nil, 1)
	noStd.Mean, noStd.Std = nil, nil
	tests = append(tests, struct {
		name              string
		h                 *head.Model
		opt               Options
		inputs, outputs   []string
		gemms, relus      int
		tempDiv, standard bool
	}{"no-standardisation", noStd, Options{}, []string{f.input}, []string{OutputProbabilities}, 1, 0, false, false})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Build(f.cut, f.spec, tc.h, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			var ins, outs []string
			for _, v := range m.Graph.Input {
				ins = append(ins, v.GetName())
			}
			for _, v := range m.Graph.Output {
				outs = append(outs, v.GetName())
			}
			if !slices.Equal(ins, tc.inputs) || !slices.Equal(outs, tc.outputs) {
				t.Fatalf("inputs %v outputs %v, want %v %v", ins, outs, tc.inputs, tc.outputs)
			}
			ops := map[string]int{}
			headNodes := 0
			for _, n := range m.Graph.Node {
				if strings.HasPrefix(n.GetName(), "headtune/head/") {
					ops[n.GetOpType()]++
					headNodes++
				}
			}
			wantDiv := 0
			if tc.standard {
				wantDiv++
			}
			if tc.tempDiv {
				wantDiv++
			}
			if ops["Gemm"] != tc.gemms || ops["Relu"] != tc.relus || ops["Div"] != wantDiv || ops["Softmax"] != 1 {
				t.Errorf("head ops %v, want %d Gemm, %d Relu, %d Div, 1 Softmax", ops, tc.gemms, tc.relus, wantDiv)
			}
			// Probabilities [N, K] with the batch symbol of the input.
			dims := m.Graph.Output[0].GetType().GetTensorType().GetShape().GetDim()
			if len(dims) != 2 || dims[0].GetDimParam() != "N" || dims[1].GetDimValue() != int64(f.k) {
				t.Errorf("probabilities shape %v", dims)
			}
			if tc.opt.WithPreprocessing {
				pre := 0
				ops := map[string]int{}
				for i, n := range m.Graph.Node {
					if strings.HasPrefix(n.GetName(), "headtune/pre/") {
						if i != pre {
							t.Errorf("preprocessing node %s at %d, want it before the backbone", n.GetName(), i)
						}
						pre++
						ops[n.GetOpType()]++
					}
				}
				// Mul, Sub, Div for the imagenet preset; on this NHWC input
				// the per-channel Sub and Div run between Transposes (the
				// form OpenCV reads, see portable.go).
				if want := map[string]int{"Mul": 1, "Sub": 1, "Div": 1, "Transpose": 4}; !maps.Equal(ops, want) {
					t.Errorf("preprocessing nodes %v, want %v", ops, want)
				}
				shape := m.Graph.Input[0].GetType().GetTensorType().GetShape().GetDim()
				if len(shape) != 4 || shape[3].GetDimValue() != 3 {
					t.Errorf("pixels input shape %v, want NHWC", shape)
				}
			}
			if v, err := defaultOpset(m); err != nil || v != backbone.DefaultOpset {
				t.Errorf("opset %d, %v: want the backbone's %d", v, err, backbone.DefaultOpset)
			}
		})
	}
}

// TestBuildErrors checks that bad inputs give one-line errors and no panic.
func TestBuildErrors(t *testing.T) {
	f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
	good := handHead(f, nil, 1)
	tests := []struct {
		name string
		mod  func(cut **onnxpb.ModelProto, h **head.Model, opt *Options)
		spec func() any
		want string
	}{
		{"nil head", func(_ **onnxpb.ModelProto, h **head.Model, _ *Options) { *h = nil }, nil, "no head"},
		{"invalid head", func(_ **onnxpb.ModelProto, h **head.Model, _ *Options) {
			c := *handHead(f, nil, 1)
			c.Temperature = 0
			*h = &c
		}, nil, "temperature"},
		{"wrong width", func(_ **onnxpb.ModelProto, h **head.Model, _ *Options) {
			g := getFixture(t, "keras", testSize, 0, testImages, testClasses)
			c := handHead(g, nil, 1)
			c.Backbone.Preprocess = nil
			*h = c
		}, nil, "gives 8 features, the head takes 16"},
		{"spec differs from head", func(_ **onnxpb.ModelProto, h **head.Model, _ *Options) {
			c := *handHead(f, nil, 1)
			s := f.spec
			s.FastJPEG = true
			c.Backbone.Preprocess = s.Canonical()
			*h = &c
		}, nil, "trained with preprocessing"},
		{"no features output", func(cut **onnxpb.ModelProto, _ **head.Model, _ *Options) {
			c := proto.Clone(f.cut).(*onnxpb.ModelProto)
			c.Graph.Output[0].Name = proto.String("feats")
			*cut = c
		}, nil, `no "features" output`},
		{"old opset", func(cut **onnxpb.ModelProto, _ **head.Model, _ *Options) {
			c := proto.Clone(f.cut).(*onnxpb.ModelProto)
			c.OpsetImport[0].Version = proto.Int64(6)
			*cut = c
		}, nil, "opset 6"},
		{"reserved metadata", func(_ **onnxpb.ModelProto, _ **head.Model, o *Options) {
			o.ExtraMetadata = map[string]string{"headtune.classes": "x"}
		}, nil, "reserved"},
		{"probabilities taken", func(cut **onnxpb.ModelProto, _ **head.Model, _ *Options) {
			c := proto.Clone(f.cut).(*onnxpb.ModelProto)
			c.Graph.Node[0].Output[0] = OutputProbabilities
			c.Graph.Node[1].Input[0] = OutputProbabilities
			*cut = c
		}, nil, "already has a tensor named"},
		{"no graph", func(cut **onnxpb.ModelProto, _ **head.Model, _ *Options) { *cut = &onnxpb.ModelProto{} }, nil, "no graph"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cut, h, opt := f.cut, good, Options{}
			tc.mod(&cut, &h, &opt)
			_, err := Build(cut, f.spec, h, opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
	t.Run("layout mismatch", func(t *testing.T) {
		s := f.spec
		s.Layout = "NHWC"
		_, err := Build(f.cut, s, handHead(f, nil, 1), Options{})
		if err == nil || !strings.Contains(err.Error(), "NCHW") {
			t.Fatalf("error %v, want a layout mismatch", err)
		}
	})
	t.Run("size mismatch", func(t *testing.T) {
		s := f.spec.WithInput(64, 64, 3, "NCHW")
		h := handHead(f, nil, 1)
		h.Backbone.Preprocess = nil
		_, err := Build(f.cut, s, h, Options{})
		if err == nil || !strings.Contains(err.Error(), "32x32") {
			t.Fatalf("error %v, want a size mismatch", err)
		}
	})
}

// TestMetadataRoundTrip checks that ReadMetadata gives back what Build was
// given, through serialisation.
func TestMetadataRoundTrip(t *testing.T) {
	for _, c := range []parityCase{parityCases[1], parityCases[4], parityCases[6], parityCases[8]} {
		t.Run(c.name, func(t *testing.T) {
			f, h, m := c.build(t)
			data, err := backbone.MarshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := backbone.ParseModel(data)
			if err != nil {
				t.Fatal(err)
			}
			meta, err := ReadMetadata(back)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meta.Classes, h.Classes) {
				t.Errorf("classes %q, want %q", meta.Classes, h.Classes)
			}
			if meta.Spec != f.spec {
				t.Errorf("spec %s, want %s", meta.Spec.Canonical(), f.spec.Canonical())
			}
			if err := h.CheckBackbone(meta.Backbone); err != nil {
				t.Errorf("backbone ref does not match the head's: %v", err)
			}
			if meta.Backbone.ID != h.Backbone.ID {
				t.Errorf("backbone id %q, want %q", meta.Backbone.ID, h.Backbone.ID)
			}
			if meta.WithPreprocessing != c.opt.WithPreprocessing || meta.HasFeatures() != c.opt.WithFeatures {
				t.Errorf("with_preprocessing %v features %v, want %v %v", meta.WithPreprocessing, meta.HasFeatures(), c.opt.WithPreprocessing, c.opt.WithFeatures)
			}
			if meta.Version != "test-1.0" || meta.Format != FormatVersion || meta.FeatureDim != f.d || meta.FixedBatch != 0 {
				t.Errorf("version %q format %d dim %d batch %d", meta.Version, meta.Format, meta.FeatureDim, meta.FixedBatch)
			}
			if meta.HeadKind != h.Kind || meta.Tuned != h.Tuned || meta.Temperature != h.Temperature || len(meta.Layers) != len(h.Layers) {
				t.Errorf("head summary %s tuned %d T %v layers %d", meta.HeadKind, meta.Tuned, meta.Temperature, len(meta.Layers))
			}
			for i, l := range meta.Layers {
				if l.In != h.Layers[i].In || l.Out != h.Layers[i].Out || l.Act != h.Layers[i].Act {
					t.Errorf("layer %d: %+v vs %d->%d %s", i, l, h.Layers[i].In, h.Layers[i].Out, h.Layers[i].Act)
				}
			}
			if len(meta.Metrics) != len(h.Metrics) {
				t.Errorf("metrics %v, want %v", meta.Metrics, h.Metrics)
			}
			for k, v := range h.Metrics {
				got, ok := meta.Metrics[k]
				if !ok || (got != v && !(math.IsNaN(got) && math.IsNaN(v))) {
					t.Errorf("metric %s = %v, want %v", k, got, v)
				}
			}
			wantLayout := "raw 0..255"
			if !c.opt.WithPreprocessing {
				wantLayout = "(x*"
			}
			if !strings.Contains(meta.InputLayout, wantLayout) || !strings.Contains(meta.InputLayout, f.spec.Layout) {
				t.Errorf("input layout %q", meta.InputLayout)
			}
			if meta.Extra["headtune.test_kind"] != "" {
				t.Error("the backbone's own headtune.* keys must not survive")
			}
			if _, ok := meta.Extra["headtune.input_size"]; ok {
				t.Error("stale headtune key in Extra")
			}
			fs := meta.FeedSpec()
			if c.opt.WithPreprocessing != (fs.Scale == 1 && fs.Mean == [3]float32{} && fs.Std == [3]float32{1, 1, 1}) {
				t.Errorf("feed spec %s", fs.Canonical())
			}
		})
	}
	t.Run("extra", func(t *testing.T) {
		f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
		m, err := Build(f.cut, f.spec, handHead(f, nil, 1), Options{ExtraMetadata: map[string]string{"licence": "MIT", "author": "x"}})
		if err != nil {
			t.Fatal(err)
		}
		meta, err := ReadMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if meta.Extra["licence"] != "MIT" || meta.Extra["author"] != "x" || meta.Version != "unknown" {
			t.Errorf("extra %v version %q", meta.Extra, meta.Version)
		}
		for i := 1; i < len(m.MetadataProps); i++ {
			if m.MetadataProps[i-1].GetKey() >= m.MetadataProps[i].GetKey() {
				t.Errorf("metadata_props not sorted: %s, %s", m.MetadataProps[i-1].GetKey(), m.MetadataProps[i].GetKey())
			}
		}
	})
}

func TestInputLayoutText(t *testing.T) {
	f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
	got := InputLayoutText(f.spec, false)
	for _, want := range []string{"NCHW float32 [N,3,32,32]", "RGB", "0.485", "0.229", "crop", "bilinear"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	got = InputLayoutText(f.spec.WithInput(20, 10, 1, "NHWC"), true)
	for _, want := range []string{"NHWC float32 [N,10,20,1]", "grey", "raw 0..255"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

func ExampleInputLayoutText() {
	s := getExampleSpec()
	fmt.Println(InputLayoutText(s, true))
	// Output: NCHW float32 [N,3,224,224], RGB, raw 0..255 pixels (normalisation in the graph); resize: crop (shorter side 256) bilinear
}

// TestLargeOffsetFeatures guards the choice of explicit Sub/Div nodes over
// folding the standardisation into the first Gemm: features of about 1000
// with a spread of about 0.5 (where W/std·x − W/std·mean cancels badly in
// float32) must still match head.PredictBatch to 1e-5. (Folded, this case
// measured 1.6e-4; explicit nodes give about 2e-7.)
func TestLargeOffsetFeatures(t *testing.T) {
	ortReady(t)
	b := backbone.NewBuilder("offset")
	b.Graph.Input = append(b.Graph.Input, backbone.ValueInfo("input", onnxpb.TensorProto_FLOAT, []int64{-1, 3, 4, 4}))
	flat := b.Op("Flatten", "flat", []string{"input"}, backbone.AttrInt("axis", 1))
	off := make([]float32, 48)
	for i := range off {
		off[i] = 1000 + float32(i)
	}
	b.Node("Add", []string{flat, b.Initializer("offset", []int64{48}, off)}, []string{OutputFeatures})
	b.Output(OutputFeatures, -1, 48)
	f, err := newFixture(b.Model(0), "offset", "imagenet", 0, 32, 3)
	if err != nil {
		t.Fatal(err)
	}
	h := handHead(f, nil, 1)
	for j := range h.Layers[0].W {
		h.Layers[0].W[j] *= 3
	}
	m, err := Build(f.cut, f.spec, h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := runModel(data, f.input, f.spec, f.norm, f.n, []string{OutputProbabilities}, []int{f.k})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, f.n*f.k)
	if err := h.PredictBatch(f.feats, f.n, want); err != nil {
		t.Fatal(err)
	}
	if f.feats[0] < 900 {
		t.Fatalf("features %v are not offset", f.feats[:3])
	}
	d := maxAbsDiff(outs[0], want)
	t.Logf("features ~1000 ± 1, std %.3g: max |probability difference| = %.3g", h.Std[0], d)
	if d > parityTol {
		t.Errorf("probabilities differ by %.3g > %g", d, parityTol)
	}
}

// TestFixedBatch checks a backbone exported with a fixed batch of 1: the
// probabilities output keeps that batch and Meta.FixedBatch reports it.
func TestFixedBatch(t *testing.T) {
	f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
	cut := proto.Clone(f.cut).(*onnxpb.ModelProto)
	for _, v := range []*onnxpb.ValueInfoProto{cut.Graph.Input[0], cut.Graph.Output[0]} {
		v.Type.GetTensorType().Shape.Dim[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}
	}
	for _, opt := range []Options{{}, {WithPreprocessing: true, WithFeatures: true}} {
		m, err := Build(cut, f.spec, handHead(f, nil, 1), opt)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := ReadMetadata(m)
		if err != nil {
			t.Fatal(err)
		}
		if meta.FixedBatch != 1 {
			t.Errorf("FixedBatch %d, want 1", meta.FixedBatch)
		}
		ss, err := meta.SessionSpec(opt.WithFeatures)
		if err != nil || ss.FixedBatch != 1 {
			t.Errorf("session spec %+v, %v", ss, err)
		}
		if d := m.Graph.Output[0].GetType().GetTensorType().GetShape().GetDim()[0]; d.GetDimValue() != 1 {
			t.Errorf("probabilities batch dim %v, want 1", d)
		}
	}
}
