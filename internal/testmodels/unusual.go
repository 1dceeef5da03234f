package testmodels

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// UnusualKinds lists models shaped like those users download that are not
// plain float32 classifiers (issue 15). Model builds them like Kinds; they
// are kept apart because some need ONNX Runtime's own operators.
//
//   - "fp16": a SqueezeNet like the Windows ML samples' fp16 one: opset 7,
//     float16 input, weights and output, batch fixed at 1, Softmax on the
//     pooled 4-D map.
//   - "int8-qdq": QuantizeLinear/DequantizeLinear pairs around float
//     operators, int8 weights behind DequantizeLinear (ONNX Runtime's QDQ
//     format); the classifier is a Gemm.
//   - "int8-qlinear": QLinearConv, com.microsoft QLinearGlobalAveragePool,
//     Flatten on uint8 and a QLinearMatMul classifier, dequantized only at
//     the end (the ONNX model zoo's *-int8 format); class names in an
//     Ultralytics-style "names" metadata entry.
//   - "convk-classifier": a grey-input mini-Xception tail: a 3x3 Conv to
//     the classes, GlobalAveragePool, Flatten, Softmax.
//   - "two-output": a Tanh-activated auxiliary output first, the Softmax
//     classifier second (face models with age and gender heads); class
//     names in a "labels" metadata entry.
//   - "reshaped-tail": Keras MobileNet's GlobalAveragePool, Reshape to
//     [N,C,1,1], Dropout, 1x1 Conv classifier, Reshape to [N,K], Softmax.
var UnusualKinds = []string{"fp16", "int8-qdq", "int8-qlinear", "convk-classifier", "two-output", "reshaped-tail"}

var buildUnusual = map[string]bool{}

func init() {
	for _, k := range UnusualKinds {
		buildUnusual[k] = true
	}
}

// rawInit adds an initializer of any element type from little-endian
// bytes.
func (b *testBuilder) rawInit(name string, dt onnxpb.TensorProto_DataType, dims []int64, raw []byte) string {
	name = b.Unique(name)
	b.Graph.Initializer = append(b.Graph.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: append([]int64(nil), dims...), DataType: proto.Int32(int32(dt)), RawData: raw,
	})
	return name
}

func (b *testBuilder) scalar(name string, v float32) string {
	return b.Initializer(name, nil, []float32{v})
}

func (b *testBuilder) u8(name string, v uint8) string {
	return b.rawInit(name, onnxpb.TensorProto_UINT8, nil, []byte{v})
}

func (b *testBuilder) i8(name string, v int8) string {
	return b.rawInit(name, onnxpb.TensorProto_INT8, nil, []byte{byte(v)})
}

// quantize rounds w to int8 with a symmetric per-tensor scale.
func quantize(w []float32) (q []byte, scale float32) {
	m := float32(0)
	for _, v := range w {
		m = max(m, float32(math.Abs(float64(v))))
	}
	scale = m / 127
	if scale == 0 {
		scale = 1
	}
	q = make([]byte, len(w))
	for i, v := range w {
		q[i] = byte(int8(math.Round(float64(v / scale))))
	}
	return q, scale
}

// qdqWeight adds an int8 weight and the DequantizeLinear that makes it
// float, returning the float tensor.
func (b *testBuilder) qdqWeight(name string, dims []int64, w []float32) string {
	q, s := quantize(w)
	wq := b.rawInit(name+".weight_q", onnxpb.TensorProto_INT8, dims, q)
	return b.Op("DequantizeLinear", name+".weight", []string{wq, b.scalar(name+".weight_scale", s), b.i8(name+".weight_zp", 0)})
}

// qdq quantizes x to uint8 and back.
func (b *testBuilder) qdq(name, x string, scale float32) string {
	s, zp := b.scalar(name+"_scale", scale), b.u8(name+"_zp", 128)
	q := b.Op("QuantizeLinear", name+"_q", []string{x, s, zp})
	return b.Op("DequantizeLinear", name+"_dq", []string{q, s, zp})
}

func buildUnusualKind(kind string, size int) (*onnxpb.ModelProto, Expect) {
	if size < 8 || size%4 != 0 {
		panic(fmt.Sprintf("testmodels.Model: input size %d must be a multiple of 4 and at least 8", size))
	}
	h := fnv.New64a()
	h.Write([]byte(kind))
	b := &testBuilder{Builder: backbone.NewBuilder("test_" + kind), Rand: Rand{seed: h.Sum64()}}
	S := int64(size)
	e := Expect{Kind: kind, Input: "input", Layout: "NCHW", Pool: backbone.PoolNone}
	var opset int64
	var meta [][2]string
	var ms bool // imports com.microsoft
	switch kind {
	case "fp16":
		x := b.Input("input", 1, 3, S, S)
		x = b.relu("relu1", b.conv("conv1", x, 3, 8, 3, 2, 1))
		x = b.Op("MaxPool", "pool1", []string{x}, backbone.AttrInts("kernel_shape", 2, 2), backbone.AttrInts("strides", 2, 2))
		sq := b.relu("fire_squeeze_relu", b.conv("fire_squeeze", x, 8, 4, 1, 1, 1))
		e1 := b.relu("fire_e1_relu", b.conv("fire_expand1x1", sq, 4, 8, 1, 1, 1))
		e3 := b.relu("fire_e3_relu", b.conv("fire_expand3x3", sq, 4, 8, 3, 1, 1))
		cat := b.Op("Concat", "fire_concat", []string{e1, e3}, backbone.AttrInt("axis", 1))
		drop := b.Op("Dropout", "dropout", []string{cat})
		x = b.relu("classifier_relu", b.conv("classifier_conv", drop, 16, 10, 1, 1, 1))
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		b.Node("Softmax", []string{x}, []string{"softmaxout_1"}, backbone.AttrInt("axis", 1))
		b.Output("softmaxout_1", 1, 10, 1, 1)
		e.FeatureTensor, e.FeatureDim, e.Classes, e.Pool = drop, 16, 10, backbone.PoolGlobalAvgNCHW
		e.Batch, e.Float16, e.Kernel = 1, true, 1
		opset = 7
	case "int8-qdq":
		x := b.Input("input", -1, 3, S, S)
		x = b.qdq("input", x, 6.0/255)
		cw := b.qdqWeight("conv1", []int64{8, 3, 3, 3}, b.weights(8*27, 27))
		x = b.Op("Conv", "conv1", []string{x, cw, b.Initializer("conv1.bias", []int64{8}, b.weights(8, 10))},
			backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 2, 2), backbone.AttrInts("pads", 1, 1, 1, 1))
		x = b.qdq("relu1", b.relu("relu1", x), 4.0/255)
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		x = b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		feat := b.qdq("flatten", x, 2.0/255)
		fw := b.qdqWeight("fc", []int64{5, 8}, b.weights(40, 8))
		x = b.Op("Gemm", "fc", []string{feat, fw, b.Initializer("fc.bias", []int64{5}, b.weights(5, 10))}, backbone.AttrInt("transB", 1))
		b.Node("Softmax", []string{x}, []string{"probs"}, backbone.AttrInt("axis", 1))
		b.Output("probs", -1, 5)
		e.FeatureTensor, e.FeatureDim, e.Classes = feat, 8, 5
	case "int8-qlinear":
		x := b.Input("input", -1, 3, S, S)
		inS, inZ := b.scalar("input_scale", 6.0/255), b.u8("input_zp", 128)
		xq := b.Op("QuantizeLinear", "input_q", []string{x, inS, inZ})
		qconv := func(name, x, xs, xz string, cin, cout int, ys float32) (string, string, string) {
			w := b.weights(cout*cin*9, cin*9)
			q, s := quantize(w)
			bias := b.weights(cout, 10)
			bq := make([]byte, 4*cout)
			xsv := b.initValue(xs)
			for i, v := range bias {
				binary.LittleEndian.PutUint32(bq[4*i:], uint32(int32(math.Round(float64(v/(xsv*s))))))
			}
			yS, yZ := b.scalar(name+"_y_scale", ys), b.u8(name+"_y_zp", 128)
			y := b.Op("QLinearConv", name, []string{x, xs, xz,
				b.rawInit(name+".weight_q", onnxpb.TensorProto_INT8, []int64{int64(cout), int64(cin), 3, 3}, q), b.scalar(name+".weight_scale", s), b.i8(name+".weight_zp", 0),
				yS, yZ, b.rawInit(name+".bias_q", onnxpb.TensorProto_INT32, []int64{int64(cout)}, bq)},
				backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 2, 2), backbone.AttrInts("pads", 1, 1, 1, 1))
			return y, yS, yZ
		}
		y, ys, yz := qconv("conv1", xq, inS, inZ, 3, 8, 8.0/255)
		y, ys, yz = qconv("conv2", y, ys, yz, 8, 16, 8.0/255)
		pS, pZ := b.scalar("gap_y_scale", 2.0/255), b.u8("gap_y_zp", 128)
		n := b.Node("QLinearGlobalAveragePool", []string{y, ys, yz, pS, pZ}, []string{"gap_q"}, backbone.AttrInt("channels_last", 0))
		n.Domain = proto.String("com.microsoft")
		flat := b.Op("Flatten", "flatten", []string{"gap_q"}, backbone.AttrInt("axis", 1))
		w := b.weights(16*5, 16)
		wq := make([]byte, len(w))
		ws := float32(2.0 / 255)
		for i, v := range w {
			wq[i] = byte(max(0, min(255, math.Round(float64(v/ws))+128)))
		}
		oS, oZ := b.scalar("fc_y_scale", 8.0/255), b.u8("fc_y_zp", 128)
		mm := b.Op("QLinearMatMul", "fc", []string{flat, pS, pZ, b.rawInit("fc.weight_q", onnxpb.TensorProto_UINT8, []int64{16, 5}, wq), b.scalar("fc.weight_scale", ws), b.u8("fc.weight_zp", 128), oS, oZ})
		lg := b.Op("DequantizeLinear", "logits", []string{mm, oS, oZ})
		b.Node("Softmax", []string{lg}, []string{"probs"}, backbone.AttrInt("axis", 1))
		b.Output("probs", -1, 5)
		e.FeatureTensor, e.FeatureDim, e.Classes, e.Dequantized = flat, 16, 5, true
		e.ClassNames = []string{"c0", "c1", "c2", "c3", "c4"}
		meta = append(meta, [2]string{"names", "{0: 'c0', 1: 'c1', 2: 'c2', 3: 'c3', 4: 'c4'}"})
		ms = true
	case "convk-classifier":
		x := b.Input("input", -1, 1, S, S)
		x = b.relu("relu1", b.conv("conv1", x, 1, 8, 3, 1, 1))
		feat := b.relu("relu2", b.conv("conv2", x, 8, 16, 3, 2, 1))
		x = b.conv("conv_classes", feat, 16, 7, 3, 1, 1)
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		x = b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		b.Node("Softmax", []string{x}, []string{"predictions"}, backbone.AttrInt("axis", 1))
		b.Output("predictions", -1, 7)
		e.FeatureTensor, e.FeatureDim, e.Classes, e.Pool, e.Kernel, e.Channels = feat, 16, 7, backbone.PoolGlobalAvgNCHW, 3, 1
	case "two-output":
		x := b.Input("input", -1, 3, S, S)
		x = b.relu("relu1", b.conv("conv1", x, 3, 8, 3, 2, 1))
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		flat := b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		aux := b.gemm("aux", flat, 8, 4, true)
		b.Node("Tanh", []string{aux}, []string{"landmarks"})
		cls := b.gemm("cls", flat, 8, 5, true)
		b.Node("Softmax", []string{cls}, []string{"probs"}, backbone.AttrInt("axis", 1))
		b.Output("landmarks", -1, 4)
		b.Output("probs", -1, 5)
		e.FeatureTensor, e.FeatureDim, e.Classes = flat, 8, 5
		e.ClassNames = []string{"alpha", "beta", "gamma", "delta", "epsilon"}
		meta = append(meta, [2]string{"labels", `["alpha","beta","gamma","delta","epsilon"]`})
	case "reshaped-tail":
		x := b.Input("input", -1, 3, S, S)
		x = b.relu("relu1", b.conv("conv1", x, 3, 16, 3, 2, 1))
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		x = b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		x = b.Op("Reshape", "reshape_1", []string{x, b.Int64Initializer("reshape_1.shape", []int64{4}, []int64{0, 16, 1, 1})})
		feat := b.Op("Dropout", "dropout", []string{x})
		x = b.conv("conv_preds", feat, 16, 6, 1, 1, 1)
		x = b.Op("Reshape", "reshape_2", []string{x, b.Int64Initializer("reshape_2.shape", []int64{2}, []int64{0, 6})})
		b.Node("Softmax", []string{x}, []string{"act_softmax"}, backbone.AttrInt("axis", 1))
		b.Output("act_softmax", -1, 6)
		e.FeatureTensor, e.FeatureDim, e.Classes, e.Pool, e.Kernel = feat, 16, 6, backbone.PoolGlobalAvgNCHW, 1
	default:
		panic(fmt.Sprintf("testmodels.Model: unknown kind %q", kind))
	}
	m := b.Model(opset)
	if ms {
		m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
	}
	if kind == "fp16" {
		toFloat16(m)
	}
	m.ProducerVersion = proto.String("test")
	m.DocString = proto.String("headtune test model " + kind)
	m.MetadataProps = []*onnxpb.StringStringEntryProto{
		{Key: proto.String("headtune.test_kind"), Value: proto.String(kind)},
		{Key: proto.String("headtune.input_size"), Value: proto.String(fmt.Sprint(size))},
	}
	for _, kv := range meta {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(kv[0]), Value: proto.String(kv[1])})
	}
	return m, e
}

// initValue reads back a scalar float initializer added by the builder.
func (b *testBuilder) initValue(name string) float32 {
	for _, t := range b.Graph.Initializer {
		if t.GetName() == name {
			v, err := backbone.InitializerFloats(t)
			if err != nil || len(v) != 1 {
				panic(fmt.Sprintf("initializer %s: %v", name, err))
			}
			return v[0]
		}
	}
	panic("no initializer " + name)
}

// toFloat16 narrows every float32 initializer, input and output of m to
// float16, in place.
func toFloat16(m *onnxpb.ModelProto) {
	half := int32(onnxpb.TensorProto_FLOAT16)
	for _, t := range m.Graph.Initializer {
		if t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		v, err := backbone.InitializerFloats(t)
		if err != nil {
			panic(err)
		}
		raw := make([]byte, 2*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], Float32ToFloat16(f))
		}
		t.DataType, t.RawData, t.FloatData = proto.Int32(half), raw, nil
	}
	for _, v := range append(append([]*onnxpb.ValueInfoProto{}, m.Graph.Input...), m.Graph.Output...) {
		v.Type.GetTensorType().ElemType = proto.Int32(half)
	}
}

// Float32ToFloat16 rounds f to the nearest IEEE half (ties to even),
// saturating to infinity; the inverse of backbone.Float16ToFloat32 on
// values a half can hold.
func Float32ToFloat16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int((u >> 23) & 0xff)
	mant := u & 0x7fffff
	if exp == 0xff { // Inf, NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal half or zero
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is still correct
	}
	return sign | uint16(h)
}
