package quantize

import (
	"fmt"
	"math"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// foldBatchNorm rewrites Conv -> BatchNormalization (inference form,
// constant parameters, the Conv's output read by nothing else) into one
// Conv with scaled weights and a bias, in place. Quantizing the Conv alone
// would leave a float BatchNormalization between two QDQ pairs, which
// ONNX Runtime cannot fuse; folded, the weights are quantized with the
// scale they are used at.
func foldBatchNorm(g *onnxpb.GraphProto) error {
	ix := index(g)
	drop := map[int]bool{}
	for bi, bn := range g.Node {
		if bn.GetOpType() != "BatchNormalization" || (bn.GetDomain() != "" && bn.GetDomain() != "ai.onnx") || len(bn.Input) != 5 || len(bn.Output) != 1 {
			continue
		}
		x := bn.Input[0]
		ci, ok := ix.producer[x]
		if !ok || len(ix.consumers[x]) != 1 || ix.outputs[x] {
			continue
		}
		conv := g.Node[ci]
		if conv.GetOpType() != "Conv" || len(conv.Input) < 2 {
			continue
		}
		wT := ix.constant(conv.Input[1])
		if wT == nil || len(wT.Dims) < 3 {
			continue
		}
		params := make([][]float32, 4)
		okAll := true
		for k := range params {
			c := ix.constant(bn.Input[1+k])
			if c == nil {
				okAll = false
				break
			}
			v, err := backbone.InitializerFloats(c)
			if err != nil || int64(len(v)) != wT.Dims[0] {
				okAll = false
				break
			}
			params[k] = v
		}
		if !okAll {
			continue
		}
		w, err := backbone.InitializerFloats(wT)
		if err != nil {
			return fmt.Errorf("fold %s into %s: %w", nodeName(bn), nodeName(conv), err)
		}
		m := int(wT.Dims[0])
		b := make([]float32, m)
		if len(conv.Input) > 2 && conv.Input[2] != "" {
			bT := ix.constant(conv.Input[2])
			if bT == nil {
				continue
			}
			if b, err = backbone.InitializerFloats(bT); err != nil || len(b) != m {
				continue
			}
		}
		eps := float64(attrFloat(bn, "epsilon", 1e-5))
		gamma, beta, mean, vr := params[0], params[1], params[2], params[3]
		per := len(w) / m
		for c := 0; c < m; c++ {
			s := float64(gamma[c]) / math.Sqrt(float64(vr[c])+eps)
			for k := c * per; k < (c+1)*per; k++ {
				w[k] = float32(float64(w[k]) * s)
			}
			b[c] = float32((float64(b[c])-float64(mean[c]))*s + float64(beta[c]))
		}
		wName := nodeName(conv) + "_bnfolded_weight"
		bName := nodeName(conv) + "_bnfolded_bias"
		g.Initializer = append(g.Initializer, backbone.Float32Tensor(wName, wT.Dims, w), backbone.Float32Tensor(bName, []int64{int64(m)}, b))
		conv.Input = []string{conv.Input[0], wName, bName}
		conv.Output = []string{bn.Output[0]}
		drop[bi] = true
	}
	if len(drop) == 0 {
		return nil
	}
	nodes := g.Node[:0]
	for i, n := range g.Node {
		if !drop[i] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	pruneInitializers(g)
	return nil
}

// pruneInitializers drops initializers no node reads.
func pruneInitializers(g *onnxpb.GraphProto) {
	used := map[string]bool{}
	for _, n := range g.Node {
		for _, x := range n.Input {
			used[x] = true
		}
		for _, a := range n.Attribute {
			for _, sg := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
				for _, sn := range sg.GetNode() {
					for _, x := range sn.Input {
						used[x] = true
					}
				}
			}
		}
	}
	for _, o := range g.Output {
		used[o.GetName()] = true
	}
	removed := map[string]bool{}
	keep := g.Initializer[:0]
	for _, t := range g.Initializer {
		if used[t.GetName()] {
			keep = append(keep, t)
		} else {
			removed[t.GetName()] = true
		}
	}
	g.Initializer = keep
	// Old exporters also list every weight as a graph input; such an input
	// goes with its initializer, or it would become a required input.
	inputs := g.Input[:0]
	for _, v := range g.Input {
		if !removed[v.GetName()] {
			inputs = append(inputs, v)
		}
	}
	g.Input = inputs
}
