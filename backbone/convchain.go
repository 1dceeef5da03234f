package backbone

import (
	"fmt"
	"math"

	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/convtail"
)

// ConvNode is one convolution of a backbone's tail, decoded so that
// training can start from its weights (--tune-layers on convolutional
// tails) and the tuned weights can be written back (WriteConvChain).
type ConvNode struct {
	// Conv names the Conv node (its output when unnamed).
	Conv string `json:"conv"`
	// Input is the [N, C, H, W] tensor the convolution reads; Output the
	// tensor after its batch norm and activation.
	Input  string `json:"input"`
	Output string `json:"output"`
	// BatchNorm names the BatchNormalization node folded into Layer, ""
	// when there was none.
	BatchNorm string `json:"batch_norm,omitempty"`
	// Layer holds the weights (batch norm folded) and geometry; its slices
	// are fresh and owned by the caller.
	Layer convtail.Layer `json:"-"`
}

// ConvChainN returns, first to last, up to k (all when k <= 0)
// convolutions that end at featureTensor in a straight line: walking
// backwards it accepts an activation (Relu, LeakyRelu with alpha 0.1,
// Clip to [0, 6]), an optional BatchNormalization with constant
// parameters, and a Conv with constant weights, optional constant bias,
// square kernel, equal strides and pads and no dilation, whose input has a
// static [N, C, H, W] shape; Identity nodes are crossed. The walk stops at
// the first node that is none of these (an Add, a Concat, an unsupported
// activation). An empty result is not an error.
func ConvChainN(m *onnxpb.ModelProto, featureTensor string, k int) ([]ConvNode, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	ix := newGraphIndex(m)
	if !ix.exists(featureTensor) {
		return nil, fmt.Errorf("tensor %q is not in the model", featureTensor)
	}
	skipIdentity := func(t string) string {
		for steps := 0; steps < 64; steps++ {
			n := ix.node(t)
			if n == nil || n.GetOpType() != "Identity" || len(n.Input) == 0 {
				return t
			}
			t = n.Input[0]
		}
		return t
	}
	var rev []ConvNode
	t := featureTensor
	for k <= 0 || len(rev) < k {
		t = skipIdentity(t)
		out := t
		n := ix.node(t)
		if n == nil || !standardDomain(n) || len(n.Input) == 0 {
			break
		}
		act := convtail.ActNone
		switch n.GetOpType() {
		case "Relu":
			act = convtail.ActReLU
		case "LeakyRelu":
			if math.Abs(float64(attrF(n, "alpha", 0.01))-0.1) > 1e-7 {
				return layersOf(rev), nil
			}
			act = convtail.ActLeaky
		case "Clip":
			lo, hi, ok := ix.clipBounds(n)
			if !ok || lo != 0 || hi != 6 {
				return layersOf(rev), nil
			}
			act = convtail.ActReLU6
		}
		if act != convtail.ActNone {
			t = skipIdentity(n.Input[0])
			n = ix.node(t)
		}
		if n == nil || !standardDomain(n) || len(n.Input) == 0 {
			break
		}
		var bn *onnxpb.NodeProto
		if n.GetOpType() == "BatchNormalization" {
			bn = n
			t = skipIdentity(n.Input[0])
			n = ix.node(t)
			if n == nil || !standardDomain(n) || len(n.Input) == 0 {
				break
			}
		}
		if n.GetOpType() != "Conv" {
			break
		}
		c, ok, err := ix.decodeConv(n, bn, act)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		c.Output = out
		rev = append(rev, c)
		t = c.Input
	}
	return layersOf(rev), nil
}

func layersOf(rev []ConvNode) []ConvNode {
	out := make([]ConvNode, len(rev))
	for i, c := range rev {
		out[len(rev)-1-i] = c
	}
	return out
}

// clipBounds reads a Clip's bounds from attributes (opset < 11) or
// constant inputs.
func (ix *graphIndex) clipBounds(n *onnxpb.NodeProto) (lo, hi float32, ok bool) {
	lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	if a := attr(n, "min"); a != nil {
		lo = a.GetF()
	}
	if a := attr(n, "max"); a != nil {
		hi = a.GetF()
	}
	for i, p := range []*float32{&lo, &hi} {
		name := input(n, i+1)
		if name == "" {
			continue
		}
		c := ix.consts[name]
		if c == nil {
			return 0, 0, false
		}
		v, err := InitializerFloats(c)
		if err != nil || len(v) != 1 {
			return 0, 0, false
		}
		*p = v[0]
	}
	return lo, hi, true
}

// decodeConv turns a Conv (and the BatchNormalization after it) into a
// convtail.Layer; ok is false for convolutions it cannot represent.
func (ix *graphIndex) decodeConv(n, bn *onnxpb.NodeProto, act string) (ConvNode, bool, error) {
	c := ConvNode{Conv: nodeLabel(n), Input: n.Input[0]}
	if n.GetName() == "" && len(n.Output) > 0 {
		c.Conv = n.Output[0]
	}
	w := ix.consts[input(n, 1)]
	if w == nil || len(w.Dims) != 4 || w.Dims[2] != w.Dims[3] {
		return c, false, nil
	}
	s := ix.shape(n.Input[0])
	if len(s) != 4 || s[1] <= 0 || s[2] <= 0 || s[3] <= 0 {
		return c, false, nil
	}
	if d, ok := attrIs(n, "dilations"); ok {
		for _, v := range d {
			if v != 1 {
				return c, false, nil
			}
		}
	}
	if p := string(attr(n, "auto_pad").GetS()); p != "" && p != "NOTSET" {
		return c, false, nil
	}
	k := int(w.Dims[2])
	stride, pad := 1, 0
	if st, ok := attrIs(n, "strides"); ok {
		if len(st) != 2 || st[0] != st[1] {
			return c, false, nil
		}
		stride = int(st[0])
	}
	if p, ok := attrIs(n, "pads"); ok {
		if len(p) != 4 || p[0] != p[1] || p[0] != p[2] || p[0] != p[3] {
			return c, false, nil
		}
		pad = int(p[0])
	}
	l := convtail.Layer{InC: int(s[1]), InH: int(s[2]), InW: int(s[3]), OutC: int(w.Dims[0]), K: k,
		Stride: stride, Pad: pad, Groups: int(attrI(n, "group", 1)), Act: act}
	if l.Groups <= 0 || int64(l.InC/max(l.Groups, 1)) != w.Dims[1] {
		return c, false, nil
	}
	var err error
	if l.W, err = InitializerFloats(w); err != nil {
		return c, false, fmt.Errorf("conv %s: weight: %w", c.Conv, err)
	}
	l.B = make([]float32, l.OutC)
	if bname := input(n, 2); bname != "" {
		b := ix.consts[bname]
		if b == nil {
			return c, false, nil
		}
		bv, err := InitializerFloats(b)
		if err != nil || len(bv) != l.OutC {
			return c, false, nil
		}
		copy(l.B, bv)
	}
	if bn != nil {
		if len(ix.consumers[n.Output[0]]) != 1 {
			return c, false, nil // the pre-norm tensor is read elsewhere: folding would lose it
		}
		var p [4][]float32
		for i := range p {
			t := ix.consts[input(bn, i+1)]
			if t == nil {
				return c, false, nil
			}
			if p[i], err = InitializerFloats(t); err != nil || len(p[i]) != l.OutC {
				return c, false, nil
			}
		}
		eps := float64(attrF(bn, "epsilon", 1e-5))
		per := len(l.W) / l.OutC
		for o := 0; o < l.OutC; o++ {
			mul := float64(p[0][o]) / math.Sqrt(float64(p[3][o])+eps)
			for j := o * per; j < (o+1)*per; j++ {
				l.W[j] = float32(float64(l.W[j]) * mul)
			}
			l.B[o] = float32((float64(l.B[o])-float64(p[2][o]))*mul + float64(p[1][o]))
		}
		c.BatchNorm = nodeLabel(bn)
	}
	if err := l.Validate(); err != nil {
		return c, false, nil
	}
	c.Layer = l
	return c, true, nil
}

// WriteConvChain returns a copy of m in which the convolutions of chain
// (from ConvChainN on m) carry the weights of layers instead (same
// geometry): each Conv gets new weight and bias initializers, and a folded
// BatchNormalization is dropped, its output now produced by the Conv. m is
// not modified; the copy shares m's other initializers.
func WriteConvChain(m *onnxpb.ModelProto, chain []ConvNode, layers []convtail.Layer) (*onnxpb.ModelProto, error) {
	if len(chain) != len(layers) {
		return nil, fmt.Errorf("%d convolutions, %d layers", len(chain), len(layers))
	}
	out := ShallowCopy(m)
	g := ShallowCopy(m.GetGraph())
	out.Graph = g
	g.Node = append([]*onnxpb.NodeProto(nil), g.Node...)
	g.Initializer = append([]*onnxpb.TensorProto(nil), g.Initializer...)
	b := EditGraph(g)
	byLabel := map[string]int{}
	for i, n := range g.Node {
		byLabel[nodeLabel(n)] = i
		if n.GetName() == "" && len(n.Output) > 0 {
			byLabel[n.Output[0]] = i
		}
	}
	drop := map[int]bool{}
	for i, c := range chain {
		l := layers[i]
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("conv %s: %w", c.Conv, err)
		}
		o := c.Layer
		if l.InC != o.InC || l.OutC != o.OutC || l.K != o.K || l.Stride != o.Stride || l.Pad != o.Pad || l.Groups != o.Groups || l.Act != o.Act {
			return nil, fmt.Errorf("conv %s: tuned layer has another geometry", c.Conv)
		}
		ci, ok := byLabel[c.Conv]
		if !ok {
			return nil, fmt.Errorf("conv %s is not in the model", c.Conv)
		}
		conv := ShallowCopy(g.Node[ci])
		conv.Input = []string{conv.Input[0],
			b.Initializer(c.Conv+"_tuned_w", []int64{int64(l.OutC), int64(l.InC / l.Groups), int64(l.K), int64(l.K)}, l.W),
			b.Initializer(c.Conv+"_tuned_b", []int64{int64(l.OutC)}, l.B)}
		if c.BatchNorm != "" {
			bi, ok := byLabel[c.BatchNorm]
			if !ok {
				return nil, fmt.Errorf("batch norm %s is not in the model", c.BatchNorm)
			}
			conv.Output = []string{g.Node[bi].Output[0]}
			drop[bi] = true
		}
		g.Node[ci] = conv
	}
	if len(drop) > 0 {
		kept := g.Node[:0:0]
		for i, n := range g.Node {
			if !drop[i] {
				kept = append(kept, n)
			}
		}
		g.Node = kept
	}
	return out, nil
}

// PooledMap returns the NCHW map whose global average is the feature
// vector of choice: the tensor itself when the cut pools it
// (PoolGlobalAvgNCHW), or the input of the GlobalAveragePool that a
// Flatten, Reshape or Squeeze (Identity crossed) turns into the chosen
// [N, C] tensor. "" when the features are not a globally pooled map (dense
// layers, NHWC maps, other pools). A conv tail tuned with a softmax head
// on pooled features (package convtail) ends at this map.
func PooledMap(m *onnxpb.ModelProto, choice *FeatureChoice) string {
	if choice == nil || m.GetGraph() == nil {
		return ""
	}
	if choice.Pool == PoolGlobalAvgNCHW {
		return choice.Tensor
	}
	if choice.Pool != PoolNone {
		return ""
	}
	ix := newGraphIndex(m)
	t := choice.Tensor
	for steps := 0; steps < 8; steps++ {
		n := ix.node(t)
		if n == nil || !standardDomain(n) || len(n.Input) == 0 {
			return ""
		}
		switch n.GetOpType() {
		case "Identity", "Flatten", "Reshape", "Squeeze":
			t = n.Input[0]
		case "GlobalAveragePool":
			if s := ix.shape(n.Input[0]); len(s) != 4 {
				return ""
			}
			return n.Input[0]
		default:
			return ""
		}
	}
	return ""
}
