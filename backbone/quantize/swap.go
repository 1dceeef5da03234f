package quantize

import (
	"slices"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// swapPoolConv rewrites AveragePool -> 1x1 Conv into 1x1 Conv ->
// AveragePool, in place, where the two give the same result, and returns
// how many pairs it swapped.
//
// Why: Inception's pool branches average 192-768 channels and then project
// them to 32-192 with a 1x1 convolution; in int8 ONNX Runtime runs the pool
// as QLinearAveragePool, which cost 28% of the int8 InceptionV3's kernel
// time (README "int8 backbones against float32"). Pooling after the
// projection pools the fewer output channels, and the convolution's work
// does not change because a stride-1, size-keeping pool keeps the spatial
// size.
//
// Why it is exact: with count_include_pad=0 each output of the pool is a
// weighted sum of valid inputs whose weights sum to 1, and a 1x1 Conv is
// affine per position (W·x + b), so pool(W·x + b) = W·pool(x) + b. An
// activation after the Conv (Relu, Clip) stays where it is, after the pool
// now, which is why the pool takes over the Conv's output name. The rewrite
// fires only where that identity holds and the pool keeps the size:
// AveragePool with strides 1, no dilation, ceil_mode 0, count_include_pad 0
// and padding that keeps every spatial size (explicit pads summing to
// kernel-1 per axis, or SAME_UPPER/SAME_LOWER), whose output is read by
// exactly one node, as the data input of a Conv with a 1x1 kernel, strides
// 1, no padding and group 1, and is not a graph output.
func swapPoolConv(g *onnxpb.GraphProto) int {
	ix := index(g)
	after := map[int]int{} // conv index -> pool index to place right after it
	for pi, pool := range g.Node {
		if !isStd(pool) || pool.GetOpType() != "AveragePool" || len(pool.Input) != 1 || len(pool.Output) != 1 || !sizeKeepingMeanPool(pool) {
			continue
		}
		y := pool.Output[0]
		if ix.outputs[y] || len(ix.consumers[y]) != 1 {
			continue
		}
		ci := ix.consumers[y][0]
		conv := g.Node[ci]
		if !isStd(conv) || conv.GetOpType() != "Conv" || len(conv.Input) < 2 || len(conv.Output) != 1 || conv.Input[0] != y || slices.Contains(conv.Input[1:], y) {
			continue
		}
		if !pointwiseConv(ix, conv, len(attrInts(pool, "kernel_shape"))) {
			continue
		}
		after[ci] = pi
	}
	if len(after) == 0 {
		return 0
	}
	b := backbone.EditGraph(g)
	moved := map[int]bool{}
	renamed := map[string]bool{}
	for ci, pi := range after {
		conv, pool := g.Node[ci], g.Node[pi]
		mid := b.Unique(nodeName(conv) + "_before_pool")
		renamed[pool.Output[0]] = true
		conv.Input[0] = pool.Input[0]
		pool.Input[0] = mid
		pool.Output[0] = conv.Output[0]
		conv.Output[0] = mid
		moved[pi] = true
	}
	// The pool moves to right after its Conv: the Conv's inputs were all
	// produced before the pool was, and only the pool reads the Conv now.
	nodes := make([]*onnxpb.NodeProto, 0, len(g.Node))
	for i, n := range g.Node {
		if moved[i] {
			continue
		}
		nodes = append(nodes, n)
		if pi, ok := after[i]; ok {
			nodes = append(nodes, g.Node[pi])
		}
	}
	g.Node = nodes
	// The old pool output no longer exists; the Conv's output name (now
	// the pool's) keeps its shape, since the pool keeps the size.
	vi := g.ValueInfo[:0]
	for _, v := range g.ValueInfo {
		if !renamed[v.GetName()] {
			vi = append(vi, v)
		}
	}
	g.ValueInfo = vi
	return len(after)
}

func isStd(n *onnxpb.NodeProto) bool { return n.GetDomain() == "" || n.GetDomain() == "ai.onnx" }

func attrInts(n *onnxpb.NodeProto, name string) []int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetInts()
		}
	}
	return nil
}

func attrString(n *onnxpb.NodeProto, name, def string) string {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return string(a.GetS())
		}
	}
	return def
}

// allEqual reports whether every element of v is x (true for an empty v).
func allEqual(v []int64, x int64) bool {
	for _, e := range v {
		if e != x {
			return false
		}
	}
	return true
}

// sizeKeepingMeanPool reports whether an AveragePool averages over the
// valid inputs only (count_include_pad 0) with stride 1 and keeps every
// spatial size.
func sizeKeepingMeanPool(n *onnxpb.NodeProto) bool {
	k := attrInts(n, "kernel_shape")
	if len(k) == 0 || attrInt(n, "count_include_pad", 0) != 0 || attrInt(n, "ceil_mode", 0) != 0 {
		return false
	}
	for _, a := range n.Attribute {
		switch a.GetName() {
		case "kernel_shape", "strides", "pads", "auto_pad", "count_include_pad", "ceil_mode", "dilations":
		default:
			return false // an attribute of a later opset whose meaning is not checked here
		}
	}
	if s := attrInts(n, "strides"); len(s) != 0 && (len(s) != len(k) || !allEqual(s, 1)) {
		return false
	}
	if d := attrInts(n, "dilations"); len(d) != 0 && (len(d) != len(k) || !allEqual(d, 1)) {
		return false
	}
	switch attrString(n, "auto_pad", "NOTSET") {
	case "SAME_UPPER", "SAME_LOWER":
		return true // stride 1: output size = input size, padding split over both ends
	case "NOTSET":
	default:
		return false
	}
	pads := attrInts(n, "pads")
	if len(pads) == 0 {
		pads = make([]int64, 2*len(k))
	}
	if len(pads) != 2*len(k) {
		return false
	}
	for i, kk := range k {
		lo, hi := pads[i], pads[i+len(k)]
		// lo, hi < kk: every window holds at least one valid input.
		if kk < 1 || lo < 0 || hi < 0 || lo+hi != kk-1 {
			return false
		}
	}
	return true
}

// pointwiseConv reports whether conv is a 1x1 (per-position) convolution
// over rank spatial axes: kernel 1, strides 1, no padding, group 1.
func pointwiseConv(ix *graph, conv *onnxpb.NodeProto, rank int) bool {
	if attrInt(conv, "group", 1) != 1 {
		return false
	}
	k := attrInts(conv, "kernel_shape")
	if len(k) == 0 {
		w := ix.constant(conv.Input[1])
		if w == nil || len(w.Dims) < 3 {
			return false
		}
		k = w.Dims[2:]
	}
	if len(k) != rank || !allEqual(k, 1) {
		return false
	}
	if s := attrInts(conv, "strides"); len(s) != 0 && (len(s) != rank || !allEqual(s, 1)) {
		return false
	}
	switch attrString(conv, "auto_pad", "NOTSET") {
	case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
		// With a 1x1 kernel and stride 1 every mode pads nothing.
	default:
		return false
	}
	return allEqual(attrInts(conv, "pads"), 0)
}
