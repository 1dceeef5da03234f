package backbone_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// graphSharedModelsDir is the read-only folder of reference ONNX models beside
// the checkout; tests that need it skip when it is absent (as in CI).
func graphSharedModelsDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "models")
	if _, err := os.Stat(dir); err != nil {
		testasset.Skip(t, "reference models not found at %s (only present on the development machine): %v", dir, err)
	}
	return dir
}

// graphImageModel builds a one-Conv model with the given input declaration.
func graphImageModel(in *onnxpb.ValueInfoProto, extra ...*onnxpb.ValueInfoProto) *onnxpb.ModelProto {
	b := backbone.NewBuilder("img")
	b.Graph.Input = append(b.Graph.Input, in)
	b.Graph.Input = append(b.Graph.Input, extra...)
	x := in.GetName()
	w := b.Initializer("w", []int64{4, 3, 1, 1}, make([]float32, 12))
	b.Node("Conv", []string{x, w}, []string{"y"})
	b.Output("y", -1, 4, -1, -1)
	return b.Model(0)
}

func TestImageInput(t *testing.T) {
	f32 := onnxpb.TensorProto_FLOAT
	type want struct {
		name, layout string
		c, h, w      int
		err          string
	}
	tests := []struct {
		name string
		m    *onnxpb.ModelProto
		want want
	}{
		{"nchw static", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 3, 224, 200})), want{"x", "NCHW", 3, 224, 200, ""}},
		{"nchw dynamic hw", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 3, -1, -1}, "N", "H", "W")), want{"x", "NCHW", 3, 0, 0, ""}},
		{"nhwc grey", graphImageModel(backbone.ValueInfo("x", f32, []int64{1, 28, 28, 1})), want{"x", "NHWC", 1, 28, 28, ""}},
		{"nchw grey 3 wide", graphImageModel(backbone.ValueInfo("x", f32, []int64{1, 1, 3, 3})), want{"x", "NCHW", 1, 3, 3, ""}},
		{"all dynamic, conv decides", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, -1, -1, -1}, "N", "C", "H", "W")), want{"x", "NCHW", 3, 0, 0, ""}},
		{"initializer listed as input is ignored", func() *onnxpb.ModelProto {
			m := graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 3, 8, 8}))
			m.Graph.Input = append(m.Graph.Input, backbone.ValueInfo("w", f32, []int64{4, 3, 1, 1}))
			return m
		}(), want{"x", "NCHW", 3, 8, 8, ""}},
		{"two inputs", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 3, 8, 8}), backbone.ValueInfo("mask", f32, []int64{-1, 1})),
			want{err: "model has 2 inputs (x, mask): expected a single image input"}},
		{"float16 (run widened)", graphImageModel(backbone.ValueInfo("x", onnxpb.TensorProto_FLOAT16, []int64{-1, 3, 8, 8})), want{"x", "NCHW", 3, 8, 8, ""}},
		{"float64", graphImageModel(backbone.ValueInfo("x", onnxpb.TensorProto_DOUBLE, []int64{-1, 3, 8, 8})),
			want{err: "model input x is float64: only float32 image inputs are supported"}},
		{"uint8", graphImageModel(backbone.ValueInfo("x", onnxpb.TensorProto_UINT8, []int64{-1, 8, 8, 3})),
			want{err: "model input x is uint8: only float32 image inputs are supported"}},
		{"not an image", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 10}, "batch")),
			want{err: "model input x has shape [batch,10]: expected an image tensor [N,3,H,W] or [N,H,W,3]"}},
		{"five channels", graphImageModel(backbone.ValueInfo("x", f32, []int64{-1, 5, 32, 32})),
			want{err: "model input x has shape [N,5,32,32]: expected an image tensor"}},
		{"no shape", graphImageModel(&onnxpb.ValueInfoProto{Name: ptr("x"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: ptr(int32(f32))}}}}),
			want{err: "model input x has no declared shape"}},
		{"no inputs", &onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}}, want{err: "model has no inputs"}},
	}
	for _, kind := range testmodels.Kinds {
		e := testmodels.ExpectFor(kind, 16)
		tests = append(tests, struct {
			name string
			m    *onnxpb.ModelProto
			want want
		}{"test model " + kind, testmodels.Model(kind, 16), want{e.Input, e.Layout, 3, 16, 16, ""}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := backbone.ImageInput(tc.m)
			name, layout, c, h, w := img.Name, img.Layout, img.Channels, img.Height, img.Width
			if tc.want.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want.err) {
					t.Fatalf("error %v, want %q", err, tc.want.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{name, layout, c, h, w, ""}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestImageInputTransposeFallback: an all-dynamic input that goes through
// Transpose [0,3,1,2] into a Conv is NHWC with the Conv's channel count.
func TestImageInputTransposeFallback(t *testing.T) {
	b := backbone.NewBuilder("t")
	b.Graph.Input = append(b.Graph.Input, backbone.ValueInfo("x", onnxpb.TensorProto_FLOAT, []int64{-1, -1, -1, -1}, "N", "H", "W", "C"))
	y := b.Op("Transpose", "t", []string{"x"}, backbone.AttrInts("perm", 0, 3, 1, 2))
	b.Node("Conv", []string{y, b.Initializer("w", []int64{2, 1, 3, 3}, make([]float32, 18))}, []string{"out"})
	b.Output("out", -1, 2, -1, -1)
	in, err := backbone.ImageInput(b.Model(0))
	if err != nil || in.Layout != "NHWC" || in.Channels != 1 {
		t.Fatalf("layout %q channels %d err %v, want NHWC 1", in.Layout, in.Channels, err)
	}
}

func TestInspectTestModels(t *testing.T) {
	for _, kind := range testmodels.Kinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, 32)
			e := testmodels.ExpectFor(kind, 32)
			info, err := backbone.Inspect(m)
			if err != nil {
				t.Fatal(err)
			}
			var params int64
			for _, init := range m.Graph.Initializer {
				n := int64(1)
				for _, d := range init.Dims {
					n *= d
				}
				params += n
			}
			if info.Parameters != params || info.Initializers != len(m.Graph.Initializer) || info.Nodes != len(m.Graph.Node) {
				t.Errorf("parameters %d initializers %d nodes %d, want %d %d %d", info.Parameters, info.Initializers, info.Nodes, params, len(m.Graph.Initializer), len(m.Graph.Node))
			}
			if info.IRVersion != 8 || len(info.Opsets) != 1 || info.Opsets[0].Version != backbone.DefaultOpset || info.Metadata["headtune.test_kind"] != kind {
				t.Errorf("header %+v", info)
			}
			if len(info.Inputs) != 1 || info.Inputs[0].Name != e.Input || info.Inputs[0].ElemType != "float32" || info.Inputs[0].Shape[0] != "N" {
				t.Errorf("inputs %+v", info.Inputs)
			}
			if info.Image == nil || info.Image.Layout != e.Layout || info.Image.Height != 32 {
				t.Errorf("image %+v (%s)", info.Image, info.ImageError)
			}
			if info.Feature == nil || info.Feature.Tensor != e.FeatureTensor || info.Feature.Dim != int64(e.FeatureDim) {
				t.Fatalf("feature %+v (%s)", info.Feature, info.FeatureError)
			}
			found := false
			for _, c := range info.Candidates {
				found = found || c.Tensor == e.FeatureTensor
			}
			if !found {
				t.Errorf("detected tensor %s not among candidates %+v", e.FeatureTensor, info.Candidates)
			}
			var text bytes.Buffer
			if err := info.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{e.Input, e.FeatureTensor, fmt.Sprintf("[N,%d]", e.FeatureDim), "ONNX IR 8", "headtune.test_kind = " + kind} {
				if !strings.Contains(text.String(), s) {
					t.Errorf("text report lacks %q:\n%s", s, text.String())
				}
			}
			js, err := json.Marshal(info)
			if err != nil {
				t.Fatal(err)
			}
			var back backbone.ModelInfo
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&back, info) {
				t.Errorf("JSON round trip changed the report:\n%s", js)
			}
		})
	}
}

func TestInspectReportsProblems(t *testing.T) {
	m := graphImageModel(backbone.ValueInfo("x", onnxpb.TensorProto_UINT8, []int64{-1, 8, 8, 3}))
	info, err := backbone.Inspect(m)
	if err != nil {
		t.Fatal(err)
	}
	if info.Image != nil || !strings.Contains(info.ImageError, "uint8") {
		t.Errorf("image %+v error %q", info.Image, info.ImageError)
	}
	var text bytes.Buffer
	info.WriteText(&text)
	if !strings.Contains(text.String(), "none: model input x is uint8") {
		t.Errorf("text report:\n%s", text.String())
	}
	if _, err := backbone.Inspect(&onnxpb.ModelProto{}); err == nil {
		t.Error("no error for a model without graph")
	}
}

// TestReferenceModels checks detection, inspection and the cut on the
// converted reference models of /work/shared/models.
func TestReferenceModels(t *testing.T) {
	dir := graphSharedModelsDir(t)
	tests := []struct {
		file, feature string
		dim           int64
		size          int
		params        int64
	}{
		{"faceapi_expression.onnx", "features", 256, 112, 323691},
		{"imagenet_mobilenet_v2_100_block10_224.onnx", "gap_block_10_depthwise_relu", 384, 224, 279948},
		{"imagenet_inception_v3_mixed5_299.onnx", "gap_mixed5", 768, 299, 5144416},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			m, err := backbone.ReadModelFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			info, err := backbone.Inspect(m)
			if err != nil {
				t.Fatal(err)
			}
			if info.Parameters != tc.params {
				t.Errorf("parameters %d, want %d (onnx + numpy)", info.Parameters, tc.params)
			}
			if info.Image == nil || info.Image.Layout != "NHWC" || info.Image.Height != tc.size || info.Image.Channels != 3 {
				t.Errorf("image %+v (%s)", info.Image, info.ImageError)
			}
			f := info.Feature
			if f == nil || f.Tensor != tc.feature || f.Dim != tc.dim || f.Pool != backbone.PoolNone {
				t.Fatalf("feature %+v (%s)", f, info.FeatureError)
			}
			cut, err := backbone.CutAtFeature(m, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cut.Graph.Output) != 1 || len(cut.Graph.Node) > len(m.Graph.Node)+1 {
				t.Fatalf("cut has %d outputs, %d nodes", len(cut.Graph.Output), len(cut.Graph.Node))
			}
			if testing.Short() {
				return
			}
			ortReadyForGraphTests(t)
			data, _ := backbone.MarshalModel(cut)
			orig, _ := backbone.MarshalModel(m)
			shape := []int64{1, int64(tc.size), int64(tc.size), 3}
			x := make([]float32, tc.size*tc.size*3)
			tb := testmodels.NewRand(7)
			for i := range x {
				x[i] = 0.5 + 0.5*tb.Float32()
			}
			got, _ := graphRunORT(t, data, "input_nhwc", shape, x, backbone.FeatureOutput)
			want, _ := graphRunORT(t, orig, "input_nhwc", shape, x, tc.feature)
			if !reflect.DeepEqual(got[0], want[0]) {
				t.Errorf("cut model's features differ from the original's %s", tc.feature)
			}
		})
	}
}

// TestImageInputBatch: a fixed batch dimension is reported, a symbolic one
// is 0.
func TestImageInputBatch(t *testing.T) {
	for _, tc := range []struct {
		batch int64
		want  int
	}{{1, 1}, {4, 4}, {-1, 0}} {
		b := backbone.NewBuilder("t")
		x := b.Input("x", tc.batch, 3, 8, 8)
		b.Node("Relu", []string{x}, []string{"y"})
		b.Output("y", tc.batch, 3, 8, 8)
		in, err := backbone.ImageInput(b.Model(0))
		if err != nil {
			t.Fatal(err)
		}
		if in.Batch != tc.want || in.Layout != "NCHW" || in.Height != 8 {
			t.Errorf("batch dim %d: got %+v, want batch %d, NCHW, height 8", tc.batch, in, tc.want)
		}
	}
}
