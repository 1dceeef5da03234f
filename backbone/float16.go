package backbone

import (
	"fmt"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// HasFloat16 reports whether m computes in half precision anywhere: a
// float16 graph input, output, value_info entry, initializer, Constant or
// Cast to float16.
func HasFloat16(m *onnxpb.ModelProto) bool {
	g := m.GetGraph()
	if g == nil {
		return false
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range list {
			if isHalf(v.GetType().GetTensorType().GetElemType()) {
				return true
			}
		}
	}
	for _, t := range g.Initializer {
		if isHalf(t.GetDataType()) {
			return true
		}
	}
	for _, n := range g.Node {
		if n.GetOpType() == "Cast" && isHalf(int32(attrI(n, "to", 0))) {
			return true
		}
		for _, a := range n.Attribute {
			if a.T != nil && isHalf(a.T.GetDataType()) {
				return true
			}
		}
	}
	return false
}

func isHalf(t int32) bool { return t == int32(onnxpb.TensorProto_FLOAT16) }

// WidenFloat16 returns m computing in float32 where it computed in float16:
// float16 initializers and Constant values are widened exactly, Casts to
// float16 cast to float32 instead, and float16 inputs, outputs and
// value_info entries become float32. Every operator that takes float16
// takes float32 too, so the graph means the same, with float32 rounding
// instead of half rounding in between (closer to the weights' own values).
//
// headtune widens once instead of feeding half precision: ONNX Runtime's
// CPU provider has float16 kernels for few operators and runs the others
// with Cast nodes inserted around each of them, whereas the widened graph
// runs float32 kernels throughout, and exports made from it are plain
// float32 models any runtime reads. Features and exports are float32 at
// the boundary either way.
//
// m is not modified; the result shares every message of m it does not
// change. A model without float16 is returned as it is with changed false.
// Subgraphs (If/Loop bodies) are not rewritten: such a model is an error.
func WidenFloat16(m *onnxpb.ModelProto) (out *onnxpb.ModelProto, changed bool, err error) {
	if !HasFloat16(m) {
		return m, false, nil
	}
	src := m.Graph
	g := ShallowCopy(src)
	float := int32(onnxpb.TensorProto_FLOAT)
	widenValues := func(list []*onnxpb.ValueInfoProto) []*onnxpb.ValueInfoProto {
		out := make([]*onnxpb.ValueInfoProto, len(list))
		for i, v := range list {
			out[i] = v
			tt := v.GetType().GetTensorType()
			if tt == nil || !isHalf(tt.GetElemType()) {
				continue
			}
			c := ShallowCopy(v)
			c.Type = ShallowCopy(v.Type)
			ct := ShallowCopy(tt)
			ct.ElemType = ptr(float)
			c.Type.Value = &onnxpb.TypeProto_TensorType{TensorType: ct}
			out[i] = c
		}
		return out
	}
	g.Input, g.Output, g.ValueInfo = widenValues(src.Input), widenValues(src.Output), widenValues(src.ValueInfo)
	widenTensor := func(t *onnxpb.TensorProto) (*onnxpb.TensorProto, error) {
		if !isHalf(t.GetDataType()) {
			return t, nil
		}
		v, err := InitializerFloats(t)
		if err != nil {
			return nil, err
		}
		return Float32Tensor(t.GetName(), t.Dims, v), nil
	}
	g.Initializer = make([]*onnxpb.TensorProto, len(src.Initializer))
	for i, t := range src.Initializer {
		if g.Initializer[i], err = widenTensor(t); err != nil {
			return nil, false, fmt.Errorf("widen float16 weights: %w", err)
		}
	}
	g.Node = make([]*onnxpb.NodeProto, len(src.Node))
	for i, n := range src.Node {
		g.Node[i] = n
		var attrs []*onnxpb.AttributeProto
		for j, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return nil, false, fmt.Errorf("float16 model with a subgraph (%s %s): convert the model to float32", n.GetOpType(), nodeLabel(n))
			}
			var c *onnxpb.AttributeProto
			switch {
			case n.GetOpType() == "Cast" && a.GetName() == "to" && isHalf(int32(a.GetI())):
				c = ShallowCopy(a)
				c.I = ptr(int64(float))
			case a.T != nil && isHalf(a.T.GetDataType()):
				wt, err := widenTensor(a.T)
				if err != nil {
					return nil, false, fmt.Errorf("widen float16 constant %s: %w", nodeLabel(n), err)
				}
				c = ShallowCopy(a)
				c.T = wt
			}
			if c != nil {
				if attrs == nil {
					attrs = append([]*onnxpb.AttributeProto(nil), n.Attribute...)
				}
				attrs[j] = c
			}
		}
		if attrs != nil {
			cn := ShallowCopy(n)
			cn.Attribute = attrs
			g.Node[i] = cn
		}
	}
	out = ShallowCopy(m)
	out.Graph = g
	return out, true, nil
}
