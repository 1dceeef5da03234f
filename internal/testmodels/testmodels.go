// Package testmodels builds, in Go and in milliseconds, tiny ONNX models
// shaped like the architectures headtune meets in the wild, with small
// deterministic pseudo-random weights, so that tests of feature detection,
// surgery, extraction, export and the pipeline need no downloaded asset.
// It is test support: nothing in the product imports it.
package testmodels

import (
	"fmt"
	"hash/fnv"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// Kinds lists the kinds Model builds.
var Kinds = []string{"vgg", "resnet", "mobilenet", "squeezenet", "yolo-cls", "keras", "features4d", "features4d-nhwc"}

// Expect describes what feature detection should find in a model built by
// Model.
type Expect struct {
	Kind string
	// Input is the image input name; Layout is "NCHW" or "NHWC".
	Input, Layout string
	// FeatureTensor is the tensor FindFeatureTensor must choose and
	// FeatureDim its feature dimension after pooling.
	FeatureTensor string
	FeatureDim    int
	// Pool is the pooling the cut must append (PoolNone, backbone.PoolGlobalAvgNCHW,
	// backbone.PoolGlobalAvgNHWC).
	Pool string
	// Classes is the width of the classifier output, 0 for feature extractors.
	Classes int
	// Dense lists, first to last, the dense layers before the feature tensor
	// that DenseChain must return, as "name in->out activation".
	Dense []string
	// The unusual kinds (UnusualKinds) also set: Channels of the image
	// input (0 means 3), Batch when the input's batch is fixed, Float16 for
	// half-precision models, Dequantized when the feature tensor is
	// quantized, Kernel for convolutional classifiers (kxk), and ClassNames
	// when the model's metadata carries its class names.
	Channels, Batch      int
	Float16, Dequantized bool
	Kernel               int64
	ClassNames           []string
}

// Model builds a small model of the given kind (one of Kinds)
// for an inputSize x inputSize RGB image with a symbolic batch dimension
// "N". inputSize must be a multiple of 4 and at least 8 (32 gives models of
// a few thousand parameters that run in well under a millisecond).
//
//   - "vgg": conv stack, Flatten, Gemm fc6 ReLU Dropout, Gemm fc7 ReLU,
//     Gemm fc8, Softmax (torchvision VGG16/19 export shape).
//   - "resnet": conv, residual block with a tensor Add, GlobalAveragePool,
//     Flatten, Gemm (logits, no softmax).
//   - "mobilenet": conv, BatchNormalization, Clip (ReLU6), depthwise and
//     pointwise convs, GlobalAveragePool, Reshape, Gemm with transB=0,
//     Softmax (MobileNetV2 / EfficientNet export shape).
//   - "squeezenet": convs, a fire module with Concat, Dropout, classifier
//     Conv 1x1, ReLU, GlobalAveragePool, Flatten, Softmax; no Gemm.
//   - "yolo-cls": Conv-SiLU blocks (Sigmoid, Mul), Conv 1x1,
//     GlobalAveragePool, Flatten, Gemm, Softmax (Ultralytics -cls export).
//   - "keras": NHWC input [N,H,W,3], Transpose to NCHW, convs, Transpose
//     back, ReduceMean over H and W, MatMul + Add bias, Softmax (tf2onnx).
//   - "features4d": a bare NCHW feature extractor with a 4-D output.
//   - "features4d-nhwc": NHWC input and a 4-D NHWC output [N,H,W,C].
//
// The models carry a doc string and metadata_props so round trips can be
// checked. Model panics on an unknown kind or a bad size: it is a test
// helper and such a call is a bug in the test.
func Model(kind string, inputSize int) *onnxpb.ModelProto {
	m, _ := build(kind, inputSize)
	return m
}

// ExpectFor returns what detection must find in Model(kind, inputSize).
func ExpectFor(kind string, inputSize int) Expect {
	_, e := build(kind, inputSize)
	return e
}

// Rand is a deterministic pseudo-random source (splitmix64) for test
// weights and inputs; the same seed gives the same sequence on every
// platform.
type Rand struct{ seed uint64 }

// NewRand returns a source started at seed.
func NewRand(seed uint64) *Rand { return &Rand{seed: seed} }

// Float32 returns the next value, uniform in [-1, 1).
func (r *Rand) Float32() float32 {
	r.seed += 0x9e3779b97f4a7c15
	z := r.seed
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float32(z>>40)/float32(1<<23) - 1
}

type testBuilder struct {
	*backbone.Builder
	Rand
}

func (b *testBuilder) rand() float32 { return b.Float32() }

// weights makes n values uniform in +-sqrt(3/fanIn) (unit output variance).
func (b *testBuilder) weights(n, fanIn int) []float32 {
	s := float32(math.Sqrt(3 / float64(fanIn)))
	w := make([]float32, n)
	for i := range w {
		w[i] = b.rand() * s
	}
	return w
}

func (b *testBuilder) conv(name, x string, cin, cout, k, stride, group int) string {
	fan := cin / group * k * k
	w := b.Initializer(name+".weight", []int64{int64(cout), int64(cin / group), int64(k), int64(k)}, b.weights(cout*cin/group*k*k, fan))
	bias := b.Initializer(name+".bias", []int64{int64(cout)}, b.weights(cout, 10))
	p := int64(k / 2)
	return b.Op("Conv", name, []string{x, w, bias},
		backbone.AttrInts("kernel_shape", int64(k), int64(k)), backbone.AttrInts("strides", int64(stride), int64(stride)),
		backbone.AttrInts("pads", p, p, p, p), backbone.AttrInt("group", int64(group)))
}

func (b *testBuilder) relu(name, x string) string { return b.Op("Relu", name, []string{x}) }

// gemm adds a Gemm; transB=1 stores the weight [out,in] like PyTorch.
func (b *testBuilder) gemm(name, x string, in, out int, transB bool) string {
	dims := []int64{int64(in), int64(out)}
	t := int64(0)
	if transB {
		dims = []int64{int64(out), int64(in)}
		t = 1
	}
	w := b.Initializer(name+".weight", dims, b.weights(in*out, in))
	bias := b.Initializer(name+".bias", []int64{int64(out)}, b.weights(out, 10))
	y := b.Op("Gemm", name, []string{x, w, bias}, backbone.AttrFloat("alpha", 1), backbone.AttrFloat("beta", 1), backbone.AttrInt("transB", t))
	b.Graph.Node[len(b.Graph.Node)-1].Name = proto.String(name)
	return y
}

func build(kind string, size int) (*onnxpb.ModelProto, Expect) {
	if buildUnusual[kind] {
		return buildUnusualKind(kind, size)
	}
	if size < 8 || size%4 != 0 {
		panic(fmt.Sprintf("testmodels.Model: input size %d must be a multiple of 4 and at least 8", size))
	}
	h := fnv.New64a()
	h.Write([]byte(kind))
	b := &testBuilder{Builder: backbone.NewBuilder("test_" + kind), Rand: Rand{seed: h.Sum64()}}
	S := int64(size)
	e := Expect{Kind: kind, Input: "input", Layout: "NCHW", Pool: backbone.PoolNone}
	nchwInput := func() string {
		return b.Input("input", -1, 3, S, S)
	}
	nhwcInput := func() string {
		e.Input, e.Layout = "input_1", "NHWC"
		return b.Input("input_1", -1, S, S, 3)
	}
	output := func(name string, dims ...int64) {
		b.Output(name, dims...)
	}
	switch kind {
	case "vgg":
		x := nchwInput()
		x = b.relu("relu1", b.conv("conv1", x, 3, 4, 3, 1, 1))
		x = b.Op("MaxPool", "pool1", []string{x}, backbone.AttrInts("kernel_shape", 2, 2), backbone.AttrInts("strides", 2, 2))
		x = b.relu("relu2", b.conv("conv2", x, 4, 8, 3, 1, 1))
		x = b.Op("MaxPool", "pool2", []string{x}, backbone.AttrInts("kernel_shape", 2, 2), backbone.AttrInts("strides", 2, 2))
		flat := b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		in := 8 * (size / 4) * (size / 4)
		x = b.relu("relu6", b.gemm("fc6", flat, in, 32, true))
		x = b.Op("Dropout", "drop6", []string{x})
		relu7 := b.relu("relu7", b.gemm("fc7", x, 32, 24, true))
		x = b.gemm("fc8", relu7, 24, 10, true)
		b.Node("Softmax", []string{x}, []string{"probs"}, backbone.AttrInt("axis", 1))
		output("probs", -1, 10)
		e.FeatureTensor, e.FeatureDim, e.Classes = relu7, 24, 10
		e.Dense = []string{fmt.Sprintf("fc6 %d->32 relu", in), "fc7 32->24 relu"}
	case "resnet":
		x := nchwInput()
		stem := b.relu("stem_relu", b.conv("stem", x, 3, 8, 3, 2, 1))
		y := b.relu("block_relu1", b.conv("block_conv1", stem, 8, 8, 3, 1, 1))
		y = b.conv("block_conv2", y, 8, 8, 3, 1, 1)
		x = b.relu("block_relu2", b.Op("Add", "block_add", []string{y, stem}))
		x = b.Op("GlobalAveragePool", "avgpool", []string{x})
		flat := b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		b.Node("Gemm", []string{flat, b.Initializer("fc.weight", []int64{10, 8}, b.weights(80, 8)), b.Initializer("fc.bias", []int64{10}, b.weights(10, 10))},
			[]string{"logits"}, backbone.AttrInt("transB", 1))
		output("logits", -1, 10)
		e.FeatureTensor, e.FeatureDim, e.Classes = flat, 8, 10
	case "mobilenet":
		x := nchwInput()
		x = b.conv("conv_stem", x, 3, 8, 3, 2, 1)
		bn := func(name, x string, c int) string {
			ones := make([]float32, c)
			for i := range ones {
				ones[i] = 1 + 0.1*b.rand()
			}
			zeros := b.weights(c, 100)
			mean := b.weights(c, 100)
			vr := make([]float32, c)
			for i := range vr {
				vr[i] = 1 + 0.5*b.rand()
			}
			return b.Op("BatchNormalization", name, []string{x,
				b.Initializer(name+".scale", []int64{int64(c)}, ones), b.Initializer(name+".B", []int64{int64(c)}, zeros),
				b.Initializer(name+".mean", []int64{int64(c)}, mean), b.Initializer(name+".var", []int64{int64(c)}, vr)},
				backbone.AttrFloat("epsilon", 1e-5))
		}
		lo := b.Initializer("relu6.min", nil, []float32{0})
		hi := b.Initializer("relu6.max", nil, []float32{6})
		x = b.Op("Clip", "relu6_1", []string{bn("bn1", x, 8), lo, hi})
		x = b.Op("Clip", "relu6_2", []string{b.conv("dw", x, 8, 8, 3, 1, 8), lo, hi})
		x = b.Op("Clip", "relu6_3", []string{bn("bn3", b.conv("pw", x, 8, 16, 1, 1, 1), 16), lo, hi})
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		shape := b.Int64Initializer("reshape.shape", []int64{2}, []int64{0, -1})
		flat := b.Op("Reshape", "reshape", []string{x, shape})
		logits := b.gemm("classifier", flat, 16, 10, false)
		b.Node("Softmax", []string{logits}, []string{"probs"}, backbone.AttrInt("axis", -1))
		output("probs", -1, 10)
		e.FeatureTensor, e.FeatureDim, e.Classes = flat, 16, 10
		e.Dense = nil
	case "squeezenet":
		x := nchwInput()
		x = b.relu("relu1", b.conv("conv1", x, 3, 8, 3, 2, 1))
		x = b.Op("MaxPool", "pool1", []string{x}, backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 2, 2), backbone.AttrInt("ceil_mode", 1))
		sq := b.relu("fire_squeeze_relu", b.conv("fire_squeeze", x, 8, 4, 1, 1, 1))
		e1 := b.relu("fire_e1_relu", b.conv("fire_expand1x1", sq, 4, 8, 1, 1, 1))
		e3 := b.relu("fire_e3_relu", b.conv("fire_expand3x3", sq, 4, 8, 3, 1, 1))
		cat := b.Op("Concat", "fire_concat", []string{e1, e3}, backbone.AttrInt("axis", 1))
		drop := b.Op("Dropout", "dropout", []string{cat})
		x = b.relu("classifier_relu", b.conv("classifier_conv", drop, 16, 10, 1, 1, 1))
		x = b.Op("GlobalAveragePool", "gap", []string{x})
		x = b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		b.Node("Softmax", []string{x}, []string{"probs"}, backbone.AttrInt("axis", 1))
		output("probs", -1, 10)
		e.FeatureTensor, e.FeatureDim, e.Classes, e.Pool = drop, 16, 10, backbone.PoolGlobalAvgNCHW
	case "yolo-cls":
		x := nchwInput()
		silu := func(name, x string) string {
			return b.Op("Mul", name, []string{x, b.Op("Sigmoid", name+"_sig", []string{x})})
		}
		x = silu("silu1", b.conv("conv1", x, 3, 8, 3, 2, 1))
		x = silu("silu2", b.conv("conv2", x, 8, 16, 3, 2, 1))
		x = silu("silu3", b.conv("head_conv", x, 16, 32, 1, 1, 1))
		x = b.Op("GlobalAveragePool", "pool", []string{x})
		flat := b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
		x = b.gemm("linear", flat, 32, 5, true)
		b.Node("Softmax", []string{x}, []string{"output0"}, backbone.AttrInt("axis", 1))
		output("output0", -1, 5)
		e.FeatureTensor, e.FeatureDim, e.Classes = flat, 32, 5
	case "keras":
		x := nhwcInput()
		x = b.Op("Transpose", "to_nchw", []string{x}, backbone.AttrInts("perm", 0, 3, 1, 2))
		x = b.relu("conv1_relu", b.conv("conv1", x, 3, 8, 3, 2, 1))
		x = b.relu("conv2_relu", b.conv("conv2", x, 8, 16, 3, 2, 1))
		x = b.Op("Transpose", "to_nhwc", []string{x}, backbone.AttrInts("perm", 0, 2, 3, 1))
		gap := b.Op("ReduceMean", "global_average_pooling2d", []string{x}, backbone.AttrInts("axes", 1, 2), backbone.AttrInt("keepdims", 0))
		w := b.Initializer("dense/kernel", []int64{16, 7}, b.weights(16*7, 16))
		bias := b.Initializer("dense/bias", []int64{7}, b.weights(7, 10))
		x = b.Op("MatMul", "dense/MatMul", []string{gap, w})
		b.Graph.Node[len(b.Graph.Node)-1].Name = proto.String("dense/MatMul")
		x = b.Op("Add", "dense/BiasAdd", []string{x, bias})
		b.Node("Softmax", []string{x}, []string{"dense"}, backbone.AttrInt("axis", -1))
		output("dense", -1, 7)
		e.FeatureTensor, e.FeatureDim, e.Classes = gap, 16, 7
	case "features4d":
		x := nchwInput()
		x = b.relu("relu1", b.conv("conv1", x, 3, 8, 3, 1, 1))
		x = b.conv("conv2", x, 8, 16, 3, 2, 1)
		b.Node("Relu", []string{x}, []string{"feature_map"})
		output("feature_map", -1, 16, S/2, S/2)
		e.FeatureTensor, e.FeatureDim, e.Pool = "feature_map", 16, backbone.PoolGlobalAvgNCHW
	case "features4d-nhwc":
		x := nhwcInput()
		x = b.Op("Transpose", "to_nchw", []string{x}, backbone.AttrInts("perm", 0, 3, 1, 2))
		x = b.relu("relu1", b.conv("conv1", x, 3, 12, 3, 2, 1))
		b.Node("Transpose", []string{x}, []string{"feature_map"}, backbone.AttrInts("perm", 0, 2, 3, 1))
		output("feature_map", -1, S/2, S/2, 12)
		e.FeatureTensor, e.FeatureDim, e.Pool = "feature_map", 12, backbone.PoolGlobalAvgNHWC
	default:
		panic(fmt.Sprintf("testmodels.Model: unknown kind %q (want one of %v)", kind, Kinds))
	}
	m := b.Model(0)
	m.ProducerVersion = proto.String("test")
	m.DocString = proto.String("headtune test model " + kind)
	m.Graph.DocString = proto.String("tiny " + kind + "-shaped graph with random weights")
	m.MetadataProps = []*onnxpb.StringStringEntryProto{
		{Key: proto.String("headtune.test_kind"), Value: proto.String(kind)},
		{Key: proto.String("headtune.input_size"), Value: proto.String(fmt.Sprint(size))},
	}
	return m, e
}
