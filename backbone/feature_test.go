package backbone_test

import (
	"fmt"
	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone/onnxpb"
)

func TestFindFeatureTensorKinds(t *testing.T) {
	for _, kind := range testmodels.Kinds {
		for _, size := range []int{16, 32} {
			t.Run(fmt.Sprintf("%s/%d", kind, size), func(t *testing.T) {
				m := testmodels.Model(kind, size)
				want := testmodels.ExpectFor(kind, size)
				c, err := backbone.FindFeatureTensor(m, "")
				if err != nil {
					t.Fatal(err)
				}
				if c.Tensor != want.FeatureTensor || c.Dim != int64(want.FeatureDim) || c.Pool != want.Pool {
					t.Fatalf("got tensor %q dim %d pool %q, want %q %d %q", c.Tensor, c.Dim, c.Pool, want.FeatureTensor, want.FeatureDim, want.Pool)
				}
				if want.Classes > 0 {
					if c.Rule != backbone.RuleClassifier && c.Rule != backbone.RuleConvHead {
						t.Errorf("rule %q, want a classifier rule", c.Rule)
					}
					if c.Classes != int64(want.Classes) {
						t.Errorf("classes %d, want %d", c.Classes, want.Classes)
					}
					if len(c.Removed) == 0 {
						t.Errorf("no classifier nodes listed as removed")
					}
				} else if c.Rule != backbone.RuleOutput || len(c.Removed) != 0 {
					t.Errorf("feature extractor: rule %q removed %v", c.Rule, c.Removed)
				}
				// Every removed node must be one the feature tensor does not need.
				ix := backbone.NewIndexForTest(m)
				live := ix.LiveNodes([]string{c.Tensor})
				nLive := 0
				for _, l := range live {
					if l {
						nLive++
					}
				}
				if nLive+len(c.Removed) != len(m.Graph.Node) {
					t.Errorf("%d live + %d removed != %d nodes", nLive, len(c.Removed), len(m.Graph.Node))
				}

				layers, err := backbone.DenseChain(m, c.Tensor)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, l := range layers {
					got = append(got, fmt.Sprintf("%s %d->%d %s", l.Name, l.In, l.Out, l.Act))
					if len(l.W) != l.In*l.Out || len(l.B) != l.Out {
						t.Errorf("layer %s: %d weights %d biases for %dx%d", l.Name, len(l.W), len(l.B), l.Out, l.In)
					}
				}
				if !reflect.DeepEqual(got, want.Dense) {
					t.Errorf("dense chain %q, want %q", got, want.Dense)
				}
			})
		}
	}
}

func TestFindFeatureTensorOverride(t *testing.T) {
	m := testmodels.Model("vgg", 32)
	tests := []struct {
		name, tensor string
		wantDim      int64
		wantPool     string
		wantErr      string
	}{
		{"pooled conv map", "relu2", 8, backbone.PoolGlobalAvgNCHW, ""},
		{"flatten", "flatten", 512, backbone.PoolNone, ""},
		{"fc6 relu", "relu6", 32, backbone.PoolNone, ""},
		{"graph output", "probs", 10, backbone.PoolNone, ""},
		{"absent", "nope", 0, "", `feature tensor "nope" is not in the model; candidates: pool2 [?,8,8,8] (feature map before Flatten, pooled), flatten [?,512] (Flatten output), drop6 [?,32] (input of Gemm fc7)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := backbone.FindFeatureTensor(m, tc.tensor)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Tensor != tc.tensor || c.Dim != tc.wantDim || c.Pool != tc.wantPool || c.Rule != backbone.RuleOverride {
				t.Fatalf("got %+v", c)
			}
		})
	}
}

// graphSqueezeTail builds conv features and a SqueezeNet classifier tail
// without Softmax: Conv 1x1 -> Relu -> GlobalAveragePool -> Flatten.
func graphSqueezeTail(classes int64) *onnxpb.ModelProto {
	b := backbone.NewBuilder("sq")
	x := b.Input("input", -1, 3, 8, 8)
	f := b.Op("Relu", "feat", []string{b.Op("Conv", "c1", []string{x, b.Initializer("w1", []int64{4, 3, 1, 1}, make([]float32, 12))})})
	y := b.Op("Conv", "cls", []string{f, b.Initializer("w2", []int64{classes, 4, 1, 1}, make([]float32, 4*classes))})
	y = b.Op("GlobalAveragePool", "gap", []string{b.Op("Relu", "r", []string{y})})
	b.Node("Flatten", []string{y}, []string{"logits"})
	b.Output("logits", -1, classes)
	return b.Model(0)
}

func TestFindFeatureTensorSqueezeNetLogits(t *testing.T) {
	tests := []struct {
		classes    int64
		wantTensor string
		wantRule   string
		wantDim    int64
	}{
		{1000, "feat", backbone.RuleConvHead, 4},
		{1001, "feat", backbone.RuleConvHead, 4},
		{10, "logits", backbone.RuleOutput, 10}, // no evidence of class scores: a feature extractor
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.classes), func(t *testing.T) {
			c, err := backbone.FindFeatureTensor(graphSqueezeTail(tc.classes), "")
			if err != nil {
				t.Fatal(err)
			}
			if c.Tensor != tc.wantTensor || c.Rule != tc.wantRule || c.Dim != tc.wantDim {
				t.Fatalf("got %s %s %d, want %s %s %d", c.Tensor, c.Rule, c.Dim, tc.wantTensor, tc.wantRule, tc.wantDim)
			}
		})
	}
}

func graphRank1Model() *onnxpb.ModelProto {
	b := backbone.NewBuilder("r1")
	b.Graph.Input = append(b.Graph.Input, backbone.ValueInfo("x", onnxpb.TensorProto_FLOAT, []int64{-1}))
	b.Node("Relu", []string{"x"}, []string{"v"})
	b.Output("v", -1)
	return b.Model(0)
}

func TestFindFeatureTensorErrors(t *testing.T) {
	// A softmax over something that is no recognisable classifier.
	b := backbone.NewBuilder("odd")
	x := b.Input("input", -1, 3, 8, 8)
	y := b.Op("Relu", "r", []string{x})
	y = b.Op("Flatten", "f", []string{y})
	b.Node("Softmax", []string{y}, []string{"probs"})
	b.Output("probs", -1, 192)
	odd := b.Model(0)

	double := testmodels.Model("resnet", 16)
	for _, v := range double.Graph.Input {
		v.Type.GetTensorType().ElemType = ptr(int32(onnxpb.TensorProto_DOUBLE))
	}

	tests := []struct {
		name     string
		m        *onnxpb.ModelProto
		override string
		want     string
	}{
		{"no graph", &onnxpb.ModelProto{}, "", "model has no graph"},
		{"no outputs", &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}}, "", "model has no outputs"},
		{"softmax without classifier", odd, "", `model output "probs" looks like class scores`},
		{"float64 tensor", double, "input", `feature tensor "input" is float64: only float features`},
		{"constant", testmodels.Model("vgg", 16), "fc6.bias", `feature tensor "fc6.bias" is a constant`},
		{"rank 1", graphRank1Model(), "v", `feature tensor "v" has shape [?]: expected [N,D] or [N,C,H,W]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := backbone.FindFeatureTensor(tc.m, tc.override)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDenseChainWeights checks the decoded weights against a direct reading
// of the initializers, for Gemm with transB=1 and 0 and MatMul+Add.
func TestDenseChainWeights(t *testing.T) {
	tests := []struct {
		kind, feature string
		transpose     bool
		alpha, beta   float32
	}{
		{"vgg", "relu7", false, 1, 1},
		{"vgg", "relu7", false, 0.5, 2},
		{"mobilenet", "probs", true, 1, 1},
		{"keras", "dense", true, 1, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%g/%g", tc.kind, tc.alpha, tc.beta), func(t *testing.T) {
			m := testmodels.Model(tc.kind, 16)
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "Gemm" {
					for _, a := range n.Attribute {
						switch a.GetName() {
						case "alpha":
							a.F = ptr(tc.alpha)
						case "beta":
							a.F = ptr(tc.beta)
						}
					}
				}
			}
			// Look through the softmax: start from the tensor it reads.
			ix := backbone.NewIndexForTest(m)
			start := tc.feature
			if n := ix.Node(start); n != nil && n.GetOpType() == "Softmax" {
				start = n.Input[0]
			}
			layers, err := backbone.DenseChainN(m, start, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != 1 {
				t.Fatalf("%d layers, want 1", len(layers))
			}
			l := layers[0]
			var lin *onnxpb.NodeProto
			for _, n := range m.Graph.Node {
				if backbone.NodeLabel(n) == l.Name {
					lin = n
				}
			}
			if lin == nil {
				t.Fatalf("node %s not found", l.Name)
			}
			w, err := backbone.InitializerFloats(ix.Const(lin.Input[1]))
			if err != nil {
				t.Fatal(err)
			}
			alpha := float32(1)
			if lin.GetOpType() == "Gemm" {
				alpha = tc.alpha
			}
			for o := 0; o < l.Out; o++ {
				for i := 0; i < l.In; i++ {
					var stored float32
					if tc.transpose {
						stored = w[i*l.Out+o]
					} else {
						stored = w[o*l.In+i]
					}
					if got := l.W[o*l.In+i]; got != stored*alpha {
						t.Fatalf("W[%d,%d] = %g, want %g", o, i, got, stored*alpha)
					}
				}
			}
			var biasName string
			if lin.GetOpType() == "Gemm" {
				biasName = lin.Input[2]
			} else {
				for _, n := range m.Graph.Node {
					if n.GetOpType() == "Add" && n.Input[0] == lin.Output[0] {
						biasName = n.Input[1]
					}
				}
			}
			bias, err := backbone.InitializerFloats(ix.Const(biasName))
			if err != nil {
				t.Fatal(err)
			}
			beta := float32(1)
			if lin.GetOpType() == "Gemm" {
				beta = tc.beta
			}
			for o := range l.B {
				if math.Abs(float64(l.B[o]-bias[o]*beta)) > 0 {
					t.Fatalf("bias[%d] = %g, want %g", o, l.B[o], bias[o]*beta)
				}
			}
		})
	}
}

// TestDenseChainAliasedBias: PyTorch's exporter deduplicates equal
// initializers (VGG's zero biases) through Identity nodes.
func TestDenseChainAliasedBias(t *testing.T) {
	m := testmodels.Model("vgg", 16)
	var fc7 *onnxpb.NodeProto
	for _, n := range m.Graph.Node {
		if n.GetName() == "fc7" {
			fc7 = n
		}
	}
	b := backbone.EditGraph(m.Graph)
	alias := b.Unique("fc7.bias.alias")
	m.Graph.Node = append([]*onnxpb.NodeProto{{OpType: ptr("Identity"), Input: []string{"fc7.bias"}, Output: []string{alias}}}, m.Graph.Node...)
	fc7.Input[2] = alias
	layers, err := backbone.DenseChain(m, "relu7")
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 || layers[1].Name != "fc7" {
		t.Fatalf("got %d layers", len(layers))
	}
	var want []float32
	for _, init := range m.Graph.Initializer {
		if init.GetName() == "fc7.bias" {
			want, _ = backbone.InitializerFloats(init)
		}
	}
	if len(want) != 24 || !reflect.DeepEqual(layers[1].B, want) {
		t.Errorf("fc7 bias %v, want the aliased %v", layers[1].B, want)
	}
}

func TestDenseChainN(t *testing.T) {
	m := testmodels.Model("vgg", 32)
	all, err := backbone.DenseChain(m, "relu7")
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k <= 3; k++ {
		got, err := backbone.DenseChainN(m, "relu7", k)
		if err != nil {
			t.Fatal(err)
		}
		want := all
		if k > 0 && k < len(all) {
			want = all[len(all)-k:]
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("k=%d: got %d layers, want the last %d of DenseChain", k, len(got), len(want))
		}
	}
	if _, err := backbone.DenseChain(m, "missing"); err == nil {
		t.Error("no error for a missing tensor")
	}
}

// TestExternalModels checks detection and the cut on every *.onnx in the
// folder named by HEADTUNE_GRAPH_MODELS (for example torchvision exports
// made with /usr/bin/python3 and torch.onnx.export): the cut must run in
// ONNX Runtime and equal the full model's feature tensor, pooled. Skipped
// when the variable is unset.
func TestExternalModels(t *testing.T) {
	dir := os.Getenv("HEADTUNE_GRAPH_MODELS")
	if dir == "" {
		t.Skip("SKIP: set HEADTUNE_GRAPH_MODELS to a folder of .onnx image classifiers to check them")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
	if len(files) == 0 {
		t.Fatalf("no .onnx files in %s", dir)
	}
	ortReadyForGraphTests(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			start := time.Now()
			m, err := backbone.ReadModelFile(f)
			if err != nil {
				t.Fatal(err)
			}
			read := time.Since(start)
			start = time.Now()
			c, cut := findAndCut(t, m)
			layers, err := backbone.DenseChainN(m, c.Tensor, 2)
			if err != nil {
				t.Fatal(err)
			}
			detect := time.Since(start)
			var dense []string
			for _, l := range layers {
				dense = append(dense, fmt.Sprintf("%s %d->%d %s", l.Name, l.In, l.Out, l.Act))
			}
			t.Logf("feature %s %s dim %d pool %q rule %s classifier %s (%d classes); removed %d nodes; dense chain %v; read %v, detect+cut+dense %v",
				c.Tensor, backbone.FormatDims(c.Shape), c.Dim, c.Pool, c.Rule, c.Classifier, c.Classes, len(c.Removed), dense, read.Round(time.Millisecond), detect.Round(time.Millisecond))
			img, err := backbone.ImageInput(m)
			if err != nil {
				t.Fatal(err)
			}
			name, layout, ch, h, w := img.Name, img.Layout, img.Channels, img.Height, img.Width
			if h == 0 {
				h, w = 224, 224
			}
			shape := []int64{2, int64(ch), int64(h), int64(w)}
			if layout == "NHWC" {
				shape = []int64{2, int64(h), int64(w), int64(ch)}
			}
			x := make([]float32, 2*ch*h*w)
			tb := testmodels.NewRand(3)
			for i := range x {
				x[i] = tb.Float32()
			}
			cutData, _ := backbone.MarshalModel(cut)
			got, _ := graphRunORT(t, cutData, name, shape, x, backbone.FeatureOutput)
			full := proto.Clone(m).(*onnxpb.ModelProto)
			full.Graph.Output = append(full.Graph.Output, floatOutput(c.Tensor))
			fullData, _ := backbone.MarshalModel(full)
			ref, refShape := graphRunORT(t, fullData, name, shape, x, c.Tensor)
			want, err := graphPoolReference(ref[0], refShape[0], c.Pool)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != len(got[0]) || int64(len(got[0])) != 2*c.Dim {
				t.Fatalf("%d features, reference %d, dim %d", len(got[0]), len(want), c.Dim)
			}
			worst := 0.0
			for i, v := range got[0] {
				worst = math.Max(worst, math.Abs(float64(v)-want[i])/(1+math.Abs(want[i])))
			}
			if worst > 1e-5 {
				t.Errorf("cut differs from the full model's %s by %g", c.Tensor, worst)
			}
		})
	}
}

// Find the feature tensor of a classifier, cut the classifier off and read
// the pretrained dense layers before the cut.
func ExampleFindFeatureTensor() {
	m := testmodels.Model("vgg", 32) // in real use: ReadModelFile("vgg16.onnx")
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %s, D=%d, removes %v\n", choice.Rule, choice.Tensor, choice.Dim, choice.Removed)
	cut, err := backbone.CutAtFeature(m, choice)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("output:", cut.Graph.Output[0].GetName())
	layers, _ := backbone.DenseChain(m, choice.Tensor)
	for _, l := range layers {
		fmt.Printf("dense %s %d->%d %s, cut at %s to tune it\n", l.Name, l.In, l.Out, l.Act, l.Input)
	}
	// Output:
	// classifier: relu7, D=24, removes [Gemm fc8 Softmax Softmax]
	// output: features
	// dense fc6 512->32 relu, cut at flatten to tune it
	// dense fc7 32->24 relu, cut at drop6 to tune it
}
