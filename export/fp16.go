package export

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// toFP16 rewrites m so that every float32 tensor inside the graph is
// float16: initializers and Constant values are rounded to the nearest
// half (magnitudes beyond 65504 saturate to ±65504), node outputs become
// half, and Cast nodes to float32 cast to half instead. The graph's inputs
// and outputs stay float32, with a Cast after each input and before each
// output. ONNX Runtime's CPU provider runs a node in half precision where
// it has a float16 kernel and otherwise inserts casts around it itself, so
// the file is valid for every provider. (On x86-64, ONNX Runtime 1.24 has
// no float16 kernel for the convolutions and removes the casts altogether,
// computing in float32 with the rounded weights.)
//
// Initializers, nodes and value_info entries are replaced, never modified:
// m may share them with the caller's model. It returns an error naming the
// first node whose output type it cannot tell.
func toFP16(b *backbone.Builder, m *onnxpb.ModelProto) error {
	g := m.Graph
	const f32, f16 = int32(onnxpb.TensorProto_FLOAT), int32(onnxpb.TensorProto_FLOAT16)
	types := map[string]int32{}
	for _, v := range g.Input {
		types[v.GetName()] = v.GetType().GetTensorType().GetElemType()
	}
	inits := make([]*onnxpb.TensorProto, len(g.Initializer))
	for i, t := range g.Initializer {
		types[t.GetName()] = t.GetDataType()
		inits[i] = t
		if t.GetDataType() == f32 {
			h, err := halfTensor(t)
			if err != nil {
				return fmt.Errorf("export --fp16: %w", err)
			}
			inits[i] = h
		}
	}
	g.Initializer = inits

	// Graph inputs: cast once on entry.
	rename := map[string]string{}
	var entry []*onnxpb.NodeProto
	for _, v := range g.Input {
		name := v.GetName()
		if types[name] != f32 {
			continue
		}
		h := b.Unique(name + "/fp16")
		entry = append(entry, castNode(b, name, h, f16))
		rename[name] = h
	}
	isOutput := map[string]bool{}
	for _, o := range g.Output {
		if o.GetType().GetTensorType().GetElemType() == f32 {
			isOutput[o.GetName()] = true
		}
	}
	outs := map[string]string{} // float32 graph output -> its half tensor
	nodes := entry
	for _, n := range g.Node {
		c := backbone.ShallowCopy(n)
		c.Input = append([]string(nil), n.Input...)
		for i, in := range c.Input {
			if r, ok := rename[in]; ok {
				c.Input[i] = r
			}
		}
		var out int32
		switch op := n.GetOpType(); {
		case !isStandard(n):
			return fmt.Errorf("export --fp16: node %q is in domain %q", n.GetName(), n.GetDomain())
		case op == "Cast":
			to := attrOf(n, "to")
			out = int32(to.GetI())
			if out == f32 {
				out = f16
				c.Attribute = []*onnxpb.AttributeProto{backbone.AttrInt("to", int64(f16))}
			}
		case op == "Constant":
			v := attrOf(n, "value")
			if v == nil || v.T == nil || len(n.Attribute) != 1 {
				return fmt.Errorf("export --fp16: Constant %q has no plain value", n.GetName())
			}
			out = v.T.GetDataType()
			if out == f32 {
				h, err := halfTensor(v.T)
				if err != nil {
					return fmt.Errorf("export --fp16: %w", err)
				}
				a := backbone.ShallowCopy(v)
				a.T = h
				c.Attribute = []*onnxpb.AttributeProto{a}
				out = f16
			}
		case op == "Shape" || op == "Size" || op == "ArgMax" || op == "ArgMin" || op == "NonZero":
			out = int32(onnxpb.TensorProto_INT64)
		case len(n.Input) > 0:
			t, ok := types[n.Input[0]]
			if !ok {
				return fmt.Errorf("export --fp16: cannot tell the type of %q, input of %s node %q", n.Input[0], op, n.GetName())
			}
			out = t
			if out == f32 {
				out = f16
			}
		default:
			return fmt.Errorf("export --fp16: cannot tell the output type of %s node %q", op, n.GetName())
		}
		c.Output = append([]string(nil), n.Output...)
		for i, o := range c.Output {
			if o == "" {
				continue
			}
			types[o] = out
			if isOutput[o] && out == f16 {
				h := b.Unique(o + "/fp16")
				outs[o] = h
				rename[o] = h
				c.Output[i] = h
			}
		}
		nodes = append(nodes, c)
	}
	for _, o := range g.Output {
		if h, ok := outs[o.GetName()]; ok {
			nodes = append(nodes, castNode(b, h, o.GetName(), f32))
		}
	}
	g.Node = nodes
	// Declared intermediate types: half where the tensor now is.
	vi := make([]*onnxpb.ValueInfoProto, 0, len(g.ValueInfo))
	for _, v := range g.ValueInfo {
		if t, ok := types[v.GetName()]; ok && t == f16 && v.GetType().GetTensorType().GetElemType() == f32 {
			c := proto.Clone(v).(*onnxpb.ValueInfoProto)
			c.Type.GetTensorType().ElemType = proto.Int32(f16)
			v = c
		}
		vi = append(vi, v)
	}
	g.ValueInfo = vi
	return nil
}

func castNode(b *backbone.Builder, in, out string, to int32) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{
		OpType:    proto.String("Cast"),
		Name:      proto.String(b.Unique("headtune/fp16/cast_" + in)),
		Input:     []string{in},
		Output:    []string{out},
		Attribute: []*onnxpb.AttributeProto{backbone.AttrInt("to", int64(to))},
	}
}

// halfTensor returns a float16 copy of the float32 tensor t (raw little-endian
// data).
func halfTensor(t *onnxpb.TensorProto) (*onnxpb.TensorProto, error) {
	v, err := backbone.InitializerFloats(t)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(raw[2*i:], float32ToFloat16(x))
	}
	return &onnxpb.TensorProto{
		Name:      t.Name,
		Dims:      t.Dims,
		DataType:  proto.Int32(int32(onnxpb.TensorProto_FLOAT16)),
		RawData:   raw,
		DocString: t.DocString,
	}, nil
}

// float32ToFloat16 rounds x to the nearest IEEE 754 half (ties to even),
// saturating finite values beyond the half range to ±65504 rather than
// infinity (a weight that large is an outlier a model survives clipped,
// not infinite); NaN stays NaN, ±Inf stays ±Inf. backbone.Float16ToFloat32
// is its inverse on halves.
func float32ToFloat16(x float32) uint16 {
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	switch {
	case x != x:
		return sign | 0x7e00
	case math.IsInf(float64(x), 0):
		return sign | 0x7c00
	}
	a := math.Abs(float64(x))
	if a >= 65520 { // rounds to infinity in IEEE; saturate
		return sign | 0x7bff
	}
	exp := int(bits>>23&0xff) - 127
	mant := bits & 0x7fffff
	if exp < -14 {
		// Subnormal half (or zero): value = m * 2^-24, m in [0, 1023].
		m := math.RoundToEven(a * (1 << 24))
		return sign | uint16(m)
	}
	// Normal: keep 10 mantissa bits, round to nearest even on the 13
	// dropped ones; a carry into the exponent is what rounding up means.
	h := uint32(exp+15)<<10 | mant>>13
	rest := mant & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}
