package backbone_test

import (
	"bytes"
	"encoding/binary"
	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// graphWithUnknown appends an unknown field (number num, bytes payload) to msg.
func graphWithUnknown(msg proto.Message, num protowire.Number, payload string) {
	r := msg.ProtoReflect()
	u := protowire.AppendTag(slices.Clone(r.GetUnknown()), num, protowire.BytesType)
	u = protowire.AppendString(u, payload)
	r.SetUnknown(u)
}

// graphRichModel is a test model carrying everything a careless rewrite could
// drop: unknown fields at model, graph, node and tensor level, several
// opsets, doc strings, metadata, value_info, a function and training info.
func graphRichModel() *onnxpb.ModelProto {
	m := testmodels.Model("resnet", 16)
	m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: ptr("com.microsoft"), Version: ptr(int64(1))})
	m.Domain = ptr("org.example")
	m.ModelVersion = ptr(int64(7))
	m.Graph.Node[0].DocString = ptr("first conv")
	m.Graph.ValueInfo = append(m.Graph.ValueInfo, backbone.ValueInfo("stem", onnxpb.TensorProto_FLOAT, []int64{-1, 8, 8, 8}))
	m.Functions = append(m.Functions, &onnxpb.FunctionProto{Name: ptr("f"), Domain: ptr("org.example"), Input: []string{"a"}, Output: []string{"b"},
		Node: []*onnxpb.NodeProto{{OpType: ptr("Identity"), Input: []string{"a"}, Output: []string{"b"}}}})
	m.TrainingInfo = append(m.TrainingInfo, &onnxpb.TrainingInfoProto{Algorithm: &onnxpb.GraphProto{Name: ptr("step")}})
	graphWithUnknown(m, 1000, "model-level extension")
	graphWithUnknown(m.Graph, 1001, "graph-level extension")
	graphWithUnknown(m.Graph.Node[0], 1002, "node-level extension")
	graphWithUnknown(m.Graph.Initializer[0], 1003, "tensor-level extension")
	return m
}

func TestRoundTrip(t *testing.T) {
	type tc struct {
		name string
		data func(t *testing.T) []byte
	}
	var tests []tc
	for _, kind := range testmodels.Kinds {
		tests = append(tests, tc{"built " + kind, func(t *testing.T) []byte {
			b, err := backbone.MarshalModel(testmodels.Model(kind, 16))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}})
	}
	tests = append(tests, tc{"unknown fields and extras", func(t *testing.T) []byte {
		b, err := backbone.MarshalModel(graphRichModel())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}})
	for _, f := range []string{"faceapi_expression.onnx", "imagenet_mobilenet_v2_100_block10_224.onnx", "imagenet_inception_v3_mixed5_299.onnx"} {
		tests = append(tests, tc{"reference " + f, func(t *testing.T) []byte {
			b, err := os.ReadFile(filepath.Join(graphSharedModelsDir(t), f))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.data(t)
			m, err := backbone.ParseModel(orig)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := backbone.MarshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := backbone.ParseModel(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, m2) {
				t.Fatal("model changed through write and re-read")
			}
			enc2, err := backbone.MarshalModel(m2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, enc2) {
				t.Fatal("re-encoding is not byte-identical")
			}
			if !bytes.Equal(enc, orig) {
				// Allowed (other writers may order fields differently), but worth knowing.
				t.Logf("re-encoding differs from the original bytes (size %d, original %d)", len(enc), len(orig))
			}
		})
	}
	t.Run("extras survive", func(t *testing.T) {
		enc, _ := backbone.MarshalModel(graphRichModel())
		m, err := backbone.ParseModel(enc)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what string
			msg  proto.Message
			want string
		}{
			{"model", m, "model-level extension"},
			{"graph", m.Graph, "graph-level extension"},
			{"node", m.Graph.Node[0], "node-level extension"},
			{"initializer", m.Graph.Initializer[0], "tensor-level extension"},
		} {
			if !bytes.Contains(c.msg.ProtoReflect().GetUnknown(), []byte(c.want)) {
				t.Errorf("%s unknown field lost", c.what)
			}
		}
		if len(m.OpsetImport) != 2 || m.GetModelVersion() != 7 || m.Graph.Node[0].GetDocString() != "first conv" || len(m.MetadataProps) != 2 || len(m.Functions) != 1 {
			t.Error("opsets, model version, doc string, metadata or functions lost")
		}
	})
}

// TestCutKeepsModelExtras: the cut model keeps the header, metadata and
// unknown fields of the model and graph, and drops only training_info.
func TestCutKeepsModelExtras(t *testing.T) {
	m := graphRichModel()
	_, cut := findAndCut(t, m)
	enc, _ := backbone.MarshalModel(cut)
	back, err := backbone.ParseModel(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(back.ProtoReflect().GetUnknown(), []byte("model-level extension")) ||
		!bytes.Contains(back.Graph.ProtoReflect().GetUnknown(), []byte("graph-level extension")) ||
		!bytes.Contains(back.Graph.Node[0].ProtoReflect().GetUnknown(), []byte("node-level extension")) {
		t.Error("unknown fields lost in the cut")
	}
	if len(back.OpsetImport) != 2 || back.GetDomain() != "org.example" || len(back.Functions) != 1 || len(back.MetadataProps) != 2 || back.Graph.GetDocString() == "" {
		t.Error("header fields lost in the cut")
	}
	if len(back.TrainingInfo) != 0 {
		t.Error("training_info kept although it refers to the old graph")
	}
	if len(m.TrainingInfo) != 1 || len(m.Graph.Output) != 1 || m.Graph.Output[0].GetName() != "logits" {
		t.Error("the input model was modified")
	}
	// value_info for a kept tensor stays.
	if !slices.ContainsFunc(back.Graph.ValueInfo, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == "stem" }) {
		t.Error("value_info of a kept tensor dropped")
	}
}

func graphLE32(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestInitializerFloats(t *testing.T) {
	want := []float32{1.5, -2, 0.25, 3}
	ints := []float32{1, -2, 0, 3}
	dims := []int64{2, 2}
	dt := func(d onnxpb.TensorProto_DataType) *int32 { return ptr(int32(d)) }
	f64raw := make([]byte, 32)
	i64raw := make([]byte, 32)
	for i := range want {
		binary.LittleEndian.PutUint64(f64raw[8*i:], math.Float64bits(float64(want[i])))
		binary.LittleEndian.PutUint64(i64raw[8*i:], uint64(int64(ints[i])))
	}
	halves := []uint16{0x3e00, 0xc000, 0x3400, 0x4200} // 1.5 -2 0.25 3
	h16raw := make([]byte, 8)
	for i, h := range halves {
		binary.LittleEndian.PutUint16(h16raw[2*i:], h)
	}
	bf := func(v float32) int32 { return int32(math.Float32bits(v) >> 16) }
	tests := []struct {
		name string
		t    *onnxpb.TensorProto
		want []float32
		err  string
	}{
		{"float raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT), RawData: graphLE32(want...)}, want, ""},
		{"float_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT), FloatData: want}, want, ""},
		{"double raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_DOUBLE), RawData: f64raw}, want, ""},
		{"double_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_DOUBLE), DoubleData: []float64{1.5, -2, 0.25, 3}}, want, ""},
		{"float16 raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT16), RawData: h16raw}, want, ""},
		{"float16 int32_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT16), Int32Data: []int32{0x3e00, 0xc000, 0x3400, 0x4200}}, want, ""},
		{"bfloat16 int32_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_BFLOAT16), Int32Data: []int32{bf(1.5), bf(-2), bf(0.25), bf(3)}}, want, ""},
		{"int64_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_INT64), Int64Data: []int64{1, -2, 0, 3}}, ints, ""},
		{"int64 raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_INT64), RawData: i64raw}, ints, ""},
		{"int32_data", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_INT32), Int32Data: []int32{1, -2, 0, 3}}, ints, ""},
		{"int8 raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_INT8), RawData: []byte{1, 0xfe, 0, 3}}, ints, ""},
		{"uint8 raw", &onnxpb.TensorProto{Dims: dims, DataType: dt(onnxpb.TensorProto_UINT8), RawData: []byte{1, 254, 0, 3}}, []float32{1, 254, 0, 3}, ""},
		{"scalar", &onnxpb.TensorProto{DataType: dt(onnxpb.TensorProto_FLOAT), FloatData: []float32{6}}, []float32{6}, ""},
		{"empty", &onnxpb.TensorProto{Dims: []int64{0, 4}, DataType: dt(onnxpb.TensorProto_FLOAT)}, []float32{}, ""},
		{"too few values", &onnxpb.TensorProto{Name: ptr("w"), Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT), FloatData: want[:3]}, nil, `tensor "w": shape [2 2] needs 4 values, found 3`},
		{"raw size", &onnxpb.TensorProto{Name: ptr("w"), Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT), RawData: make([]byte, 15)}, nil, "needs 16 bytes of raw data, found 15"},
		{"string", &onnxpb.TensorProto{Name: ptr("s"), Dims: []int64{1}, DataType: dt(onnxpb.TensorProto_STRING)}, nil, "element type string cannot be read as float32"},
		{"external", &onnxpb.TensorProto{Name: ptr("e"), Dims: dims, DataType: dt(onnxpb.TensorProto_FLOAT), DataLocation: onnxpb.TensorProto_EXTERNAL.Enum()}, nil, "external data"},
		{"negative dim", &onnxpb.TensorProto{Dims: []int64{-1, 2}, DataType: dt(onnxpb.TensorProto_FLOAT)}, nil, "negative dimension"},
		{"huge", &onnxpb.TensorProto{Dims: []int64{1 << 30, 1 << 30}, DataType: dt(onnxpb.TensorProto_FLOAT)}, nil, "more than 2^40 elements"},
		{"nil", nil, nil, "nil tensor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := backbone.InitializerFloats(tc.t)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if len(got) > 0 && tc.t.FloatData != nil {
				got[0] = 99
				if tc.t.FloatData[0] == 99 {
					t.Fatal("result aliases the tensor's float_data")
				}
			}
		})
	}
}

func TestAppendInitializerFloats(t *testing.T) {
	a := backbone.Float32Tensor("a", []int64{2}, []float32{1, 2})
	half := &onnxpb.TensorProto{Dims: []int64{3}, DataType: ptr(int32(onnxpb.TensorProto_FLOAT16)), Int32Data: []int32{0x3c00, 0x4000, 0xbc00}}
	bad := &onnxpb.TensorProto{Name: ptr("bad"), Dims: []int64{3}, DataType: ptr(int32(onnxpb.TensorProto_FLOAT)), FloatData: []float32{1}}
	buf := make([]float32, 0, 8)
	buf, err := backbone.AppendInitializerFloats(buf, a)
	if err != nil {
		t.Fatal(err)
	}
	buf, err = backbone.AppendInitializerFloats(buf, half)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(buf, []float32{1, 2, 1, 2, -1}) || cap(buf) != 8 {
		t.Fatalf("got %v (cap %d)", buf, cap(buf))
	}
	got, err := backbone.AppendInitializerFloats(buf, bad)
	if err == nil || !slices.Equal(got, buf) {
		t.Fatalf("on error: %v, %v", got, err)
	}
}

// TestFloat16ToFloat32 checks all 65536 half-precision patterns against
// the definition of IEEE 754 binary16.
func TestFloat16ToFloat32(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp := int(h>>10) & 0x1f
		mant := float64(h & 0x3ff)
		var want float64
		switch exp {
		case 0:
			want = sign * math.Ldexp(mant, -24)
		case 0x1f:
			if mant != 0 {
				if got := backbone.Float16ToFloat32(h); !math.IsNaN(float64(got)) {
					t.Fatalf("%#04x: got %g, want NaN", h, got)
				}
				continue
			}
			want = math.Inf(int(sign))
		default:
			want = sign * math.Ldexp(1+mant/1024, exp-15)
		}
		got := backbone.Float16ToFloat32(h)
		if float64(got) != want || math.Signbit(float64(got)) != (sign < 0) {
			t.Fatalf("%#04x: got %g, want %g", h, got, want)
		}
	}
}

// TestShapeInference covers ops and attribute forms that the test models do
// not (TestShapeInferenceMatchesORT checks those against ONNX Runtime).
func TestShapeInference(t *testing.T) {
	tests := []struct {
		name  string
		in    []int64
		build func(b *backbone.Builder, x string) string
		want  []int64
	}{
		{"conv same_upper stride 2", []int64{-1, 3, 15, 15}, func(b *backbone.Builder, x string) string {
			return b.Op("Conv", "y", []string{x, b.Initializer("w", []int64{8, 3, 3, 3}, make([]float32, 216))}, backbone.AttrString("auto_pad", "SAME_UPPER"), backbone.AttrInts("strides", 2, 2))
		}, []int64{-1, 8, 8, 8}},
		{"conv dilation valid", []int64{2, 3, 15, 15}, func(b *backbone.Builder, x string) string {
			return b.Op("Conv", "y", []string{x, b.Initializer("w", []int64{4, 3, 3, 3}, make([]float32, 108))}, backbone.AttrInts("dilations", 2, 2))
		}, []int64{2, 4, 11, 11}},
		{"maxpool ceil", []int64{-1, 4, 13, 13}, func(b *backbone.Builder, x string) string {
			return b.Op("MaxPool", "y", []string{x}, backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 2, 2), backbone.AttrInt("ceil_mode", 1))
		}, []int64{-1, 4, 6, 6}},
		{"flatten axis 2", []int64{2, 3, 4, 5}, func(b *backbone.Builder, x string) string {
			return b.Op("Flatten", "y", []string{x}, backbone.AttrInt("axis", 2))
		}, []int64{6, 20}},
		{"flatten axis -1", []int64{2, 3, 4, 5}, func(b *backbone.Builder, x string) string {
			return b.Op("Flatten", "y", []string{x}, backbone.AttrInt("axis", -1))
		}, []int64{24, 5}},
		{"squeeze axes input", []int64{-1, 16, 1, 1}, func(b *backbone.Builder, x string) string {
			return b.Op("Squeeze", "y", []string{x, b.Int64Initializer("axes", []int64{2}, []int64{2, 3})})
		}, []int64{-1, 16}},
		{"squeeze no axes", []int64{2, 16, 1, 1}, func(b *backbone.Builder, x string) string {
			return b.Op("Squeeze", "y", []string{x})
		}, []int64{2, 16}},
		{"unsqueeze attr", []int64{-1, 16}, func(b *backbone.Builder, x string) string {
			return b.Op("Unsqueeze", "y", []string{x}, backbone.AttrInts("axes", 2, 3))
		}, []int64{-1, 16, 1, 1}},
		{"reducemean keepdims", []int64{-1, 7, 7, 32}, func(b *backbone.Builder, x string) string {
			return b.Op("ReduceMean", "y", []string{x}, backbone.AttrInts("axes", 1, 2))
		}, []int64{-1, 1, 1, 32}},
		{"reducemean axes input opset 18", []int64{-1, 32, 7, 7}, func(b *backbone.Builder, x string) string {
			return b.Op("ReduceMean", "y", []string{x, b.Int64Initializer("axes", []int64{2}, []int64{-2, -1})}, backbone.AttrInt("keepdims", 0))
		}, []int64{-1, 32}},
		{"reshape -1 with unknown batch", []int64{-1, 512, 7, 7}, func(b *backbone.Builder, x string) string {
			return b.Op("Reshape", "y", []string{x, b.Int64Initializer("s", []int64{2}, []int64{0, -1})})
		}, []int64{-1, 25088}},
		{"reshape explicit", []int64{4, 6}, func(b *backbone.Builder, x string) string {
			return b.Op("Reshape", "y", []string{x, b.Int64Initializer("s", []int64{3}, []int64{2, -1, 3})})
		}, []int64{2, 4, 3}},
		{"matmul", []int64{-1, 10, 16}, func(b *backbone.Builder, x string) string {
			return b.Op("MatMul", "y", []string{x, b.Initializer("w", []int64{16, 4}, make([]float32, 64))})
		}, []int64{-1, 10, 4}},
		{"gemm transA", []int64{16, 5}, func(b *backbone.Builder, x string) string {
			return b.Op("Gemm", "y", []string{x, b.Initializer("w", []int64{16, 4}, make([]float32, 64))}, backbone.AttrInt("transA", 1))
		}, []int64{5, 4}},
		{"broadcast add", []int64{-1, 8, 1, 1}, func(b *backbone.Builder, x string) string {
			return b.Op("Add", "y", []string{x, b.Initializer("c", []int64{1, 1, 4, 4}, make([]float32, 16))})
		}, []int64{-1, 8, 4, 4}},
		{"concat axis -1 unknown part", []int64{-1, 8}, func(b *backbone.Builder, x string) string {
			y := b.Op("Relu", "r", []string{x})
			z := b.Op("Unknownop", "u", []string{x})
			return b.Op("Concat", "y", []string{y, z}, backbone.AttrInt("axis", -1))
		}, []int64{-1, -1}},
		{"pad input", []int64{-1, 3, 8, 8}, func(b *backbone.Builder, x string) string {
			return b.Op("Pad", "y", []string{x, b.Int64Initializer("p", []int64{8}, []int64{0, 0, 1, 2, 0, 0, 1, 0})})
		}, []int64{-1, 3, 10, 10}},
		{"unknown op", []int64{-1, 8}, func(b *backbone.Builder, x string) string {
			return b.Op("Unknownop", "y", []string{x})
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := backbone.NewBuilder("s")
			x := b.Input("x", tc.in...)
			y := tc.build(b, x)
			ix := backbone.NewIndexForTest(b.Model(18))
			if got := ix.Shape(y); !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("shape %v, want %v", got, tc.want)
			}
		})
	}
}

// TestShapeInferenceMatchesORT runs every test model with all intermediate
// tensors exposed and compares each fully inferred shape with the one ONNX
// Runtime produces.
func TestShapeInferenceMatchesORT(t *testing.T) {
	ortReadyForGraphTests(t)
	const size, batch = 32, 2
	for _, kind := range testmodels.Kinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, size)
			e := testmodels.ExpectFor(kind, size)
			ix := backbone.NewIndexForTest(m)
			full := proto.Clone(m).(*onnxpb.ModelProto)
			var names []string
			for _, n := range m.Graph.Node {
				for _, o := range n.Output {
					if o == m.Graph.Output[0].GetName() {
						continue
					}
					names = append(names, o)
					full.Graph.Output = append(full.Graph.Output, floatOutput(o))
				}
			}
			data, err := backbone.MarshalModel(full)
			if err != nil {
				t.Fatal(err)
			}
			shape := []int64{batch, 3, size, size}
			if e.Layout == "NHWC" {
				shape = []int64{batch, size, size, 3}
			}
			_, shapes := graphRunORT(t, data, e.Input, shape, make([]float32, batch*3*size*size), names...)
			checked := 0
			for i, name := range names {
				inf := ix.Shape(name)
				if inf == nil {
					continue
				}
				if len(inf) != len(shapes[i]) {
					t.Errorf("%s: inferred rank %d, ORT gives %v", name, len(inf), shapes[i])
					continue
				}
				for j, d := range inf {
					if d >= 0 && d != shapes[i][j] {
						t.Errorf("%s: inferred %v, ORT gives %v", name, inf, shapes[i])
						break
					}
					if d < 0 && j > 0 {
						t.Errorf("%s: dim %d not inferred (%v; ORT gives %v)", name, j, inf, shapes[i])
					}
				}
				checked++
			}
			if checked != len(names) {
				t.Errorf("only %d of %d tensors have an inferred shape", checked, len(names))
			}
		})
	}
}

// BenchmarkInitializerFloats decodes a 4M-value raw float32 tensor (16 MiB,
// a quarter of VGG16's fc7) into a reused buffer and into fresh memory,
// against a baseline plain byte copy of the same data into a reused buffer.
func BenchmarkInitializerFloats(b *testing.B) {
	vals := make([]float32, 4<<20)
	for i := range vals {
		vals[i] = float32(i)
	}
	tensor := backbone.Float32Tensor("w", []int64{int64(len(vals))}, vals)
	size := int64(len(tensor.RawData))
	b.Run("baseline=copy", func(b *testing.B) {
		b.SetBytes(size)
		dst := make([]byte, len(tensor.RawData))
		for b.Loop() {
			copy(dst, tensor.RawData)
		}
	})
	b.Run("AppendInitializerFloats/reused", func(b *testing.B) {
		b.SetBytes(size)
		dst := make([]float32, 0, len(vals))
		for b.Loop() {
			var err error
			if dst, err = backbone.AppendInitializerFloats(dst[:0], tensor); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("InitializerFloats/fresh", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := backbone.InitializerFloats(tensor); err != nil {
				b.Fatal(err)
			}
		}
	})
}
