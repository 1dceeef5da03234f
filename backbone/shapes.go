package backbone

import "github.com/headtune/headtune/backbone/onnxpb"

// shapeRule infers the shape of a node's first output from the node and the
// shape x of its first input (nil when unknown). It returns nil when the
// shape cannot be told; -1 marks an unknown dimension.
type shapeRule func(ix *graphIndex, n *onnxpb.NodeProto, x []int64) []int64

// shapeRules maps the ai.onnx operators whose output shape headtune infers
// to their rule. Operators not listed give no shape.
var shapeRules = func() map[string]shapeRule {
	rules := map[string]shapeRule{}
	add := func(r shapeRule, ops ...string) {
		for _, op := range ops {
			rules[op] = r
		}
	}
	add(shapeSame, "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "HardSigmoid", "HardSwish",
		"Softmax", "LogSoftmax", "Identity", "Dropout", "BatchNormalization", "InstanceNormalization",
		"LRN", "Neg", "Abs", "Exp", "Log", "Sqrt", "Erf", "Gelu", "Cast", "PRelu", "Softplus", "Mish",
		"LayerNormalization")
	add((*graphIndex).shapeBroadcast, "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum")
	add((*graphIndex).shapeConv, "Conv")
	add((*graphIndex).shapePool, "MaxPool", "AveragePool", "LpPool")
	add(shapeGlobalPool, "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
	add(shapeFlatten, "Flatten")
	add((*graphIndex).shapeGemm, "Gemm")
	add((*graphIndex).shapeMatMul, "MatMul")
	add(shapeTranspose, "Transpose")
	add((*graphIndex).shapeConcat, "Concat")
	add((*graphIndex).shapeReshape, "Reshape")
	add((*graphIndex).shapePad, "Pad")
	add((*graphIndex).shapeSqueeze, "Squeeze")
	add((*graphIndex).shapeUnsqueeze, "Unsqueeze")
	add((*graphIndex).shapeReduce, "ReduceMean", "ReduceMax", "ReduceSum")
	// Quantized operators (ai.onnx and com.microsoft): the float rule with
	// the weight or second operand at its quantized input position.
	add(shapeSame, "QuantizeLinear", "DequantizeLinear", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax")
	add(func(ix *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
		return ix.convShape(n, x, ix.shapes[input(n, 3)])
	}, "QLinearConv")
	add(func(ix *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
		return matMulShape(x, ix.shapes[input(n, 3)])
	}, "QLinearMatMul")
	add(func(ix *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
		return gemmShape(n, x, ix.shapes[input(n, 3)])
	}, "QGemm")
	add((*graphIndex).shapeQLinearBinary, "QLinearAdd", "QLinearMul")
	add(shapeQLinearGlobalPool, "QLinearGlobalAveragePool")
	add((*graphIndex).shapePool, "QLinearAveragePool")
	add((*graphIndex).shapeQLinearConcat, "QLinearConcat")
	return rules
}()

// inferNode returns the shape of n's first output, nil when unknown.
func (ix *graphIndex) inferNode(n *onnxpb.NodeProto) []int64 {
	rule := shapeRules[n.GetOpType()]
	if rule == nil {
		return nil
	}
	return rule(ix, n, ix.shapes[input(n, 0)])
}

// intsAttrOrInput reads an int list given as attribute name (older opsets)
// or as constant input i (newer ones: Pad's pads, Squeeze's and Reduce's
// axes).
func (ix *graphIndex) intsAttrOrInput(n *onnxpb.NodeProto, name string, i int) ([]int64, bool) {
	if v, ok := attrIs(n, name); ok {
		return v, true
	}
	return initializerInts(ix.consts[input(n, i)])
}

// shapeSame: elementwise operators keep their input's shape.
func shapeSame(_ *graphIndex, _ *onnxpb.NodeProto, x []int64) []int64 { return cloneDims(x) }

// shapeBroadcast: numpy broadcasting over all inputs.
func (ix *graphIndex) shapeBroadcast(n *onnxpb.NodeProto, _ []int64) []int64 {
	var out []int64
	for _, in := range n.Input {
		s, ok := ix.shapes[in]
		if !ok || s == nil {
			return nil
		}
		out = broadcast(out, s)
		if out == nil {
			return nil
		}
	}
	return out
}

func (ix *graphIndex) shapeConv(n *onnxpb.NodeProto, x []int64) []int64 {
	return ix.convShape(n, x, ix.shapes[input(n, 1)])
}

// convShape is Conv's output shape for input x and weight w.
func (ix *graphIndex) convShape(n *onnxpb.NodeProto, x, w []int64) []int64 {
	if len(x) < 3 || len(w) != len(x) {
		return nil
	}
	out := make([]int64, len(x))
	out[0] = x[0]
	out[1] = w[0]
	ix.spatial(n, x, w[2:], out)
	return out
}

func (ix *graphIndex) shapePool(n *onnxpb.NodeProto, x []int64) []int64 {
	if len(x) < 3 {
		return nil
	}
	k, _ := attrIs(n, "kernel_shape")
	if len(k) != len(x)-2 {
		return nil
	}
	out := make([]int64, len(x))
	out[0], out[1] = x[0], x[1]
	ix.spatial(n, x, k, out)
	return out
}

func shapeGlobalPool(_ *graphIndex, _ *onnxpb.NodeProto, x []int64) []int64 {
	if len(x) < 3 {
		return nil
	}
	out := make([]int64, len(x))
	out[0], out[1] = x[0], x[1]
	for i := 2; i < len(x); i++ {
		out[i] = 1
	}
	return out
}

func shapeFlatten(_ *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	axis := attrI(n, "axis", 1)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis > int64(len(x)) {
		return nil
	}
	return []int64{prodDims(x[:axis]), prodDims(x[axis:])}
}

func (ix *graphIndex) shapeGemm(n *onnxpb.NodeProto, a []int64) []int64 {
	return gemmShape(n, a, ix.shapes[input(n, 1)])
}

func gemmShape(n *onnxpb.NodeProto, a, b []int64) []int64 {
	if len(a) != 2 || len(b) != 2 {
		return nil
	}
	m := a[0]
	if attrI(n, "transA", 0) != 0 {
		m = a[1]
	}
	nn := b[1]
	if attrI(n, "transB", 0) != 0 {
		nn = b[0]
	}
	return []int64{m, nn}
}

// shapeMatMul handles the [..., K] x [K, N] case, the only one dense layers
// use.
func (ix *graphIndex) shapeMatMul(n *onnxpb.NodeProto, x []int64) []int64 {
	return matMulShape(x, ix.shapes[input(n, 1)])
}

func matMulShape(x, b []int64) []int64 {
	if len(x) < 2 || len(b) != 2 {
		return nil
	}
	out := cloneDims(x)
	out[len(out)-1] = b[1]
	return out
}

func shapeTranspose(_ *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	perm, ok := attrIs(n, "perm")
	if !ok { // the default reverses the axes
		out := make([]int64, len(x))
		for i := range x {
			out[i] = x[len(x)-1-i]
		}
		return out
	}
	if len(perm) != len(x) {
		return nil
	}
	out := make([]int64, len(x))
	for i, p := range perm {
		if p < 0 || p >= int64(len(x)) {
			return nil
		}
		out[i] = x[p]
	}
	return out
}

func (ix *graphIndex) shapeConcat(n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	axis, ok := normAxis(attrI(n, "axis", 0), len(x))
	if !ok {
		return nil
	}
	out := cloneDims(x)
	out[axis] = 0
	for _, in := range n.Input {
		s := ix.shapes[in]
		if len(s) != len(x) || s[axis] < 0 || out[axis] < 0 {
			out[axis] = -1
			continue
		}
		out[axis] += s[axis]
	}
	return out
}

func (ix *graphIndex) shapeReshape(n *onnxpb.NodeProto, x []int64) []int64 {
	target, ok := initializerInts(ix.consts[input(n, 1)])
	if !ok {
		return nil
	}
	copyZero := attrI(n, "allowzero", 0) == 0 // a 0 in target copies x's dim
	out := make([]int64, len(target))
	infer := -1
	for i, d := range target {
		switch {
		case d == 0 && copyZero:
			if i >= len(x) {
				return nil
			}
			out[i] = x[i]
		case d == -1:
			if infer >= 0 {
				return nil
			}
			infer = i
		case d < -1:
			return nil
		default:
			out[i] = d
		}
	}
	if infer >= 0 {
		out[infer] = reshapeInferred(x, target, infer, copyZero)
	}
	return out
}

// reshapeInferred returns the size of Reshape's -1 dimension (target[infer])
// from the input shape x, -1 when it cannot be told. Dims copied by a 0
// cancel out, even when unknown (the batch).
func reshapeInferred(x, target []int64, infer int, copyZero bool) int64 {
	if x == nil {
		return -1
	}
	total, rest := int64(1), int64(1)
	for i, d := range x {
		if i < len(target) && target[i] == 0 && copyZero {
			continue
		}
		if d < 0 || (d != 0 && total > maxElements/d) {
			return -1
		}
		total *= d
	}
	for i, d := range target {
		if i == infer || (d == 0 && copyZero) {
			continue
		}
		if d != 0 && rest > maxElements/d {
			return -1
		}
		rest *= d
	}
	if rest > 0 && total%rest == 0 {
		return total / rest
	}
	return -1
}

func (ix *graphIndex) shapePad(n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	pads, ok := ix.intsAttrOrInput(n, "pads", 1)
	if !ok || len(pads) != 2*len(x) || input(n, 3) != "" {
		return nil
	}
	out := cloneDims(x)
	for i := range out {
		if out[i] >= 0 {
			out[i] += pads[i] + pads[len(x)+i]
			if out[i] < 0 {
				out[i] = -1
			}
		}
	}
	return out
}

func (ix *graphIndex) shapeSqueeze(n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	axes, ok := ix.intsAttrOrInput(n, "axes", 1)
	drop := map[int]bool{}
	if !ok { // no axes: every dim of size 1 goes, so all must be known
		for i, d := range x {
			if d == 1 {
				drop[i] = true
			} else if d < 0 {
				return nil
			}
		}
	}
	for _, a := range axes {
		i, ok := normAxis(a, len(x))
		if !ok {
			return nil
		}
		drop[i] = true
	}
	out := []int64{}
	for i, d := range x {
		if !drop[i] {
			out = append(out, d)
		}
	}
	return out
}

func (ix *graphIndex) shapeUnsqueeze(n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	axes, ok := ix.intsAttrOrInput(n, "axes", 1)
	if !ok {
		return nil
	}
	rank := len(x) + len(axes)
	ins := map[int]bool{}
	for _, a := range axes {
		i, ok := normAxis(a, rank)
		if !ok {
			return nil
		}
		ins[i] = true
	}
	out := make([]int64, 0, rank)
	j := 0
	for i := 0; i < rank; i++ {
		if ins[i] {
			out = append(out, 1)
		} else if j < len(x) {
			out = append(out, x[j])
			j++
		} else {
			return nil
		}
	}
	return out
}

func (ix *graphIndex) shapeReduce(n *onnxpb.NodeProto, x []int64) []int64 {
	if x == nil {
		return nil
	}
	axes, ok := ix.intsAttrOrInput(n, "axes", 1)
	if !ok || len(axes) == 0 {
		return nil
	}
	red := map[int]bool{}
	for _, a := range axes {
		i, ok := normAxis(a, len(x))
		if !ok {
			return nil
		}
		red[i] = true
	}
	keep := attrI(n, "keepdims", 1) != 0
	out := []int64{}
	for i, d := range x {
		switch {
		case !red[i]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	return out
}

// shapeQLinearBinary: QLinearAdd/QLinearMul (a, a_scale, a_zp, b, ...)
// broadcast a and b.
func (ix *graphIndex) shapeQLinearBinary(n *onnxpb.NodeProto, a []int64) []int64 {
	b, ok := ix.shapes[input(n, 3)]
	if a == nil || !ok || b == nil {
		return nil
	}
	return broadcast(a, b)
}

// shapeQLinearGlobalPool: ONNX Runtime's QLinearGlobalAveragePool, which
// pools [N,C,H,W] to [N,C,1,1], or [N,H,W,C] to [N,1,1,C] with
// channels_last=1.
func shapeQLinearGlobalPool(_ *graphIndex, n *onnxpb.NodeProto, x []int64) []int64 {
	if attrI(n, "channels_last", 0) == 0 {
		return shapeGlobalPool(nil, n, x)
	}
	if len(x) < 3 {
		return nil
	}
	out := make([]int64, len(x))
	for i := range out {
		out[i] = 1
	}
	out[0], out[len(x)-1] = x[0], x[len(x)-1]
	return out
}

// shapeQLinearConcat: inputs are y_scale, y_zero_point, then (x, scale,
// zero point) per operand.
func (ix *graphIndex) shapeQLinearConcat(n *onnxpb.NodeProto, _ []int64) []int64 {
	if len(n.Input) < 5 {
		return nil
	}
	first := ix.shapes[n.Input[2]]
	if first == nil {
		return nil
	}
	axis, ok := normAxis(attrI(n, "axis", 0), len(first))
	if !ok {
		return nil
	}
	out := cloneDims(first)
	out[axis] = 0
	for i := 2; i < len(n.Input); i += 3 {
		s := ix.shapes[n.Input[i]]
		if len(s) != len(first) || s[axis] < 0 || out[axis] < 0 {
			out[axis] = -1
			continue
		}
		out[axis] += s[axis]
	}
	return out
}

// InferShapes returns the statically known shape of every tensor of m that
// the graph declares or that headtune's shape inference can derive (the
// inference feature detection uses): dims of -1 are unknown (usually the
// batch axis), a missing entry means the rank is unknown. The map and its
// slices are fresh and owned by the caller; m is not modified.
func InferShapes(m *onnxpb.ModelProto) map[string][]int64 {
	if m.GetGraph() == nil {
		return map[string][]int64{}
	}
	return newGraphIndex(m).shapes
}
