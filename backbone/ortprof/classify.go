package ortprof

import (
	"math"
	"sort"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// Class is a layer class: a group of nodes whose int8 and float32 kernels
// behave alike.
type Class string

// The layer classes, in the order tables list them.
const (
	// Stem is a convolution with at most StemChannels input channels: the
	// image's first layer, whose few input channels give the int8 dot
	// products little to work on.
	Stem Class = "stem conv"
	// Depthwise is a grouped convolution with one input channel per group
	// (group == channels).
	Depthwise Class = "depthwise conv"
	// Conv is every other convolution, Gemm and MatMul (pointwise 1x1,
	// full 3x3, dense).
	Conv Class = "other conv / dense"
	// Elementwise is Add, Mul, activations and their QLinear forms.
	Elementwise Class = "element-wise (Add, ...)"
	// Layout is data movement that the float or int8 form adds: Transpose,
	// NCHWc reorders, QuantizeLinear and DequantizeLinear.
	Layout Class = "layout + Q/DQ"
	// Other is everything else (pooling, Concat, Reshape, ...).
	Other Class = "other"
)

// Classes lists every Class in table order.
var Classes = []Class{Stem, Depthwise, Conv, Elementwise, Layout, Other}

// StemChannels is the most input channels a Stem convolution has (RGB, or
// RGBA).
const StemChannels = 4

var convOps = map[string]bool{"Conv": true, "FusedConv": true, "QLinearConv": true, "ConvInteger": true, "NhwcFusedConv": true, "NhwcConv": true}

var denseOps = map[string]bool{"Gemm": true, "MatMul": true, "FusedGemm": true, "FusedMatMul": true, "QGemm": true,
	"QLinearMatMul": true, "MatMulInteger": true, "MatMulIntegerToFloat": true, "DynamicQuantizeMatMul": true}

var elementwiseOps = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true, "Sum": true, "Max": true, "Min": true,
	"Relu": true, "Clip": true, "LeakyRelu": true, "Sigmoid": true, "Tanh": true, "HardSigmoid": true, "HardSwish": true,
	"Elu": true, "Selu": true, "PRelu": true, "Softplus": true, "Erf": true, "Gelu": true, "Pow": true, "Sqrt": true,
	// ONNX Runtime's fused activations (com.microsoft): QuickGelu is x*sigmoid(a*x), so a SiLU.
	"QuickGelu": true, "FastGelu": true, "BiasGelu": true, "BiasAdd": true,
	"BatchNormalization": true, "QLinearAdd": true, "QLinearMul": true, "QLinearSigmoid": true, "QLinearLeakyRelu": true}

var layoutOps = map[string]bool{"Transpose": true, "ReorderInput": true, "ReorderOutput": true, "QuantizeLinear": true,
	"DequantizeLinear": true, "DynamicQuantizeLinear": true}

// weightInput is the input position of a convolution's weight tensor.
func weightInput(op string) int {
	if op == "QLinearConv" {
		return 3 // x, x_scale, x_zero_point, w, ...
	}
	return 1
}

// ClassifyGraph classes every node of g (an optimised graph ONNX Runtime
// wrote) by name. A convolution's class comes from its group attribute and
// weight shape [M, C/group, kH, kW] (an initializer, or one reached through a
// DequantizeLinear); a convolution whose weight cannot be found is Conv.
func ClassifyGraph(g *onnxpb.GraphProto) map[string]Class {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	weightDims := func(name string) []int64 {
		for hops := 0; hops < 4; hops++ {
			if t, ok := inits[name]; ok {
				return t.Dims
			}
			p := producer[name]
			if p == nil || len(p.Input) == 0 || (p.GetOpType() != "DequantizeLinear" && p.GetOpType() != "Identity") {
				return nil
			}
			name = p.Input[0]
		}
		return nil
	}
	out := make(map[string]Class, len(g.Node))
	for _, n := range g.Node {
		op := n.GetOpType()
		c := ClassifyOp(op)
		if convOps[op] {
			var w []int64
			if k := weightInput(op); k < len(n.Input) {
				w = weightDims(n.Input[k])
			}
			c = classifyConv(group(n), w)
		}
		out[n.GetName()] = c
	}
	return out
}

// classifyConv classes a convolution by its group count and weight shape
// [M, C/group, kH, kW] (nil when unknown).
func classifyConv(group int64, w []int64) Class {
	if len(w) < 2 || w[1] <= 0 {
		return Conv
	}
	switch {
	case group > 1 && w[1] == 1:
		return Depthwise
	case w[1]*group <= StemChannels:
		return Stem
	}
	return Conv
}

func group(n *onnxpb.NodeProto) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == "group" && a.I != nil {
			return a.GetI()
		}
	}
	return 1
}

// ClassifyOp classes a node by its operator alone, for nodes the graph does
// not hold; convolutions are Conv.
func ClassifyOp(op string) Class {
	switch {
	case convOps[op], denseOps[op]:
		return Conv
	case elementwiseOps[op]:
		return Elementwise
	case layoutOps[op]:
		return Layout
	}
	return Other
}

// ByClass sums per-node times by class. Nodes missing from classes are
// classed by their operator (ClassifyOp).
func ByClass(times map[string]NodeTime, classes map[string]Class) map[Class]float64 {
	out := map[Class]float64{}
	for node, nt := range times {
		c, ok := classes[node]
		if !ok {
			c = ClassifyOp(nt.Op)
		}
		out[c] += nt.Micros
	}
	return out
}

// Row is one class of a float32 against int8 comparison.
type Row struct {
	Class      Class   `json:"class"`
	FloatNodes int     `json:"float_nodes"`
	Int8Nodes  int     `json:"int8_nodes"`
	FloatUS    float64 `json:"float_us"` // µs per image, float32 model
	Int8US     float64 `json:"int8_us"`  // µs per image, int8 model
	// Speedup is FloatUS / Int8US (0 when either is 0: no comparison).
	Speedup float64 `json:"speedup"`
	// FloatOps and Int8Ops split FloatUS and Int8US by operator, as ONNX
	// Runtime names them (FusedConv, QLinearAdd, ...).
	FloatOps map[string]float64 `json:"float_ops,omitempty"`
	Int8Ops  map[string]float64 `json:"int8_ops,omitempty"`
}

// Comparison is the per-class comparison of one float32 model with its
// int8 copy, from one profile of each.
type Comparison struct {
	Rows    []Row   `json:"rows"`
	FloatUS float64 `json:"float_us"` // kernel time per image, all classes
	Int8US  float64 `json:"int8_us"`
	// Speedup is FloatUS / Int8US: the speed-up of the kernels alone.
	Speedup float64 `json:"speedup"`
	// Bound is the speed-up over FloatUS if every class ran in its faster
	// precision, ignoring the cost of converting between them: an upper
	// bound of what mixed precision by layer class can reach.
	Bound float64 `json:"bound"`
}

// Compare builds the comparison from two models' per-node times (µs per
// image) and their classes. Classes with no node in either model are left
// out.
func Compare(floatTimes, int8Times map[string]NodeTime, floatClasses, int8Classes map[string]Class) Comparison {
	f, q := ByClass(floatTimes, floatClasses), ByClass(int8Times, int8Classes)
	count := func(times map[string]NodeTime, classes map[string]Class) map[Class]int {
		n := map[Class]int{}
		for node, nt := range times {
			c, ok := classes[node]
			if !ok {
				c = ClassifyOp(nt.Op)
			}
			n[c]++
		}
		return n
	}
	fn, qn := count(floatTimes, floatClasses), count(int8Times, int8Classes)
	ops := func(times map[string]NodeTime, classes map[string]Class, c Class) map[string]float64 {
		var m map[string]float64
		for node, nt := range times {
			nc, ok := classes[node]
			if !ok {
				nc = ClassifyOp(nt.Op)
			}
			if nc == c {
				if m == nil {
					m = map[string]float64{}
				}
				m[nt.Op] += nt.Micros
			}
		}
		return m
	}
	var cmp Comparison
	best := 0.0
	for _, c := range Classes {
		if fn[c] == 0 && qn[c] == 0 {
			continue
		}
		r := Row{Class: c, FloatNodes: fn[c], Int8Nodes: qn[c], FloatUS: f[c], Int8US: q[c],
			FloatOps: ops(floatTimes, floatClasses, c), Int8Ops: ops(int8Times, int8Classes, c)}
		if r.FloatUS > 0 && r.Int8US > 0 {
			r.Speedup = r.FloatUS / r.Int8US
		}
		cmp.Rows = append(cmp.Rows, r)
		cmp.FloatUS += r.FloatUS
		cmp.Int8US += r.Int8US
		// A class present in one model only (the int8 model's Q/DQ, the
		// float model's NCHWc reorders) is a cost of that precision:
		// the other one does without it.
		best += math.Min(r.FloatUS, r.Int8US)
	}
	if cmp.Int8US > 0 {
		cmp.Speedup = cmp.FloatUS / cmp.Int8US
	}
	if best > 0 {
		cmp.Bound = cmp.FloatUS / best
	}
	sort.SliceStable(cmp.Rows, func(a, b int) bool { return order(cmp.Rows[a].Class) < order(cmp.Rows[b].Class) })
	return cmp
}

func order(c Class) int {
	for i, x := range Classes {
		if x == c {
			return i
		}
	}
	return len(Classes)
}
