package export

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// portableOpset is the ai.onnx opset lowerOpset writes: the newest in which
// Clip takes its bounds as attributes, the form OpenCV 4.6 reads.
const portableOpset = 10

// sameAtOpset10 lists the operators whose schema and meaning at opset 10
// are those of every later opset up to 17, for float tensors, apart from
// the negative axes that opset 11 allowed (lowerNode refuses those).
var sameAtOpset10 = map[string]bool{
	"Abs": true, "Add": true, "AveragePool": true, "BatchNormalization": true, "Cast": true,
	"Ceil": true, "Conv": true, "ConvTranspose": true, "Div": true, "Elu": true, "Erf": true, "Exp": true,
	"Floor": true, "GlobalAveragePool": true, "GlobalMaxPool": true, "HardSigmoid": true, "Identity": true,
	"InstanceNormalization": true, "LRN": true, "LeakyRelu": true, "Log": true, "MatMul": true, "Max": true,
	"MaxPool": true, "Mean": true, "Min": true, "Mul": true, "Neg": true, "PRelu": true, "Pow": true,
	"Reciprocal": true, "Relu": true, "Reshape": true, "Selu": true, "Sigmoid": true, "Sign": true,
	"Softplus": true, "Softsign": true, "Sqrt": true, "Sub": true, "Sum": true, "Tanh": true, "Transpose": true,
	// Attribute axes at every opset below 18:
	"ReduceMean": true, "ReduceMax": true, "ReduceMin": true, "ReduceProd": true, "ReduceL2": true,
	// Axis attributes; refused when negative:
	"Concat": true, "Flatten": true,
	// Checked in lowerNode:
	"Gemm": true, "Softmax": true, "LogSoftmax": true, "Constant": true,
}

// lowerOpset rewrites m at opset 10 when its graph has a Clip with bound
// inputs (see the note on portable) and every node has an exact opset-10
// form; it returns the number of nodes it replaced (0 when it left m as it
// was). Nodes are replaced, never modified.
func lowerOpset(m *onnxpb.ModelProto) int {
	nodes, err := loweredNodes(m)
	if err != nil || nodes == nil {
		return 0
	}
	changed := 0
	for i, n := range nodes {
		if n != m.Graph.Node[i] {
			changed++
		}
	}
	m.Graph.Node = nodes
	imports := make([]*onnxpb.OperatorSetIdProto, len(m.OpsetImport))
	for i, o := range m.OpsetImport {
		imports[i] = o
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			imports[i] = &onnxpb.OperatorSetIdProto{Domain: o.Domain, Version: proto.Int64(portableOpset)}
		}
	}
	m.OpsetImport = imports
	return changed
}

// loweredNodes returns m's nodes in their opset-10 form, nil when m needs
// no lowering (no Clip with bound inputs, or already at opset 10 or
// older), or an error naming the first node that has no exact opset-10
// form.
func loweredNodes(m *onnxpb.ModelProto) ([]*onnxpb.NodeProto, error) {
	opset, err := defaultOpset(m)
	if err != nil || opset <= portableOpset {
		return nil, nil
	}
	g := m.Graph
	needed := false
	for _, n := range g.Node {
		if n.GetOpType() == "Clip" && isStandard(n) && len(n.Input) > 1 {
			needed = true
		}
	}
	if !needed {
		return nil, nil
	}
	for _, o := range m.OpsetImport {
		if d := o.GetDomain(); d != "" && d != "ai.onnx" {
			return nil, fmt.Errorf("the model imports operator set %q", d)
		}
	}
	c := newConstIndex(g)
	ranks := knownRanks(g)
	out := make([]*onnxpb.NodeProto, len(g.Node))
	for i, n := range g.Node {
		if out[i], err = lowerNode(n, opset, c, ranks); err != nil {
			return nil, fmt.Errorf("%s node %q: %w", n.GetOpType(), n.GetName(), err)
		}
	}
	return out, nil
}

// lowerNode returns n in its opset-10 form: n itself when it is the same,
// a new node otherwise.
func lowerNode(n *onnxpb.NodeProto, opset int64, c *constIndex, ranks map[string]int) (*onnxpb.NodeProto, error) {
	if !isStandard(n) {
		return nil, fmt.Errorf("domain %q", n.GetDomain())
	}
	op := n.GetOpType()
	for _, a := range n.Attribute {
		if a.G != nil || len(a.Graphs) > 0 {
			return nil, fmt.Errorf("has a subgraph")
		}
	}
	for _, name := range []string{"axis", "axes"} {
		if a := attrOf(n, name); a != nil {
			if a.GetI() < 0 {
				return nil, fmt.Errorf("negative %s (opset 11 and later only)", name)
			}
			for _, v := range a.Ints {
				if v < 0 {
					return nil, fmt.Errorf("negative %s (opset 11 and later only)", name)
				}
			}
		}
	}
	attrs := func(keep ...string) []*onnxpb.AttributeProto {
		var out []*onnxpb.AttributeProto
		for _, a := range n.Attribute {
			for _, k := range keep {
				if a.GetName() == k {
					out = append(out, a)
				}
			}
		}
		return out
	}
	clone := func(op string, in []string, at []*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: n.Name, Input: in, Output: n.Output, Attribute: at, DocString: n.DocString}
	}
	switch op {
	case "Clip":
		if len(n.Input) == 1 {
			return n, nil
		}
		at := attrs()
		for i, name := range []string{"min", "max"} {
			if i+1 >= len(n.Input) || n.Input[i+1] == "" {
				continue
			}
			v, ok := c.scalar(n.Input[i+1])
			if !ok {
				return nil, fmt.Errorf("computed %s", name)
			}
			at = append(at, backbone.AttrFloat(name, v))
		}
		return clone("Clip", n.Input[:1], at), nil
	case "Pad":
		if opset < 11 {
			return n, nil
		}
		if len(n.Input) > 3 {
			return nil, fmt.Errorf("axes input")
		}
		pads, ok := c.ints(n.Input[1])
		if !ok {
			return nil, fmt.Errorf("computed pads")
		}
		at := append(attrs("mode"), backbone.AttrInts("pads", pads...))
		if len(n.Input) > 2 && n.Input[2] != "" {
			v, ok := c.scalar(n.Input[2])
			if !ok {
				return nil, fmt.Errorf("computed constant_value")
			}
			at = append(at, backbone.AttrFloat("value", v))
		}
		return clone("Pad", n.Input[:1], at), nil
	case "Squeeze", "Unsqueeze":
		if opset < 13 {
			return n, nil
		}
		if len(n.Input) < 2 || n.Input[1] == "" {
			if op == "Unsqueeze" {
				return nil, fmt.Errorf("no axes")
			}
			return clone(op, n.Input[:1], nil), nil
		}
		axes, ok := c.ints(n.Input[1])
		if !ok {
			return nil, fmt.Errorf("computed axes")
		}
		for _, a := range axes {
			if a < 0 {
				return nil, fmt.Errorf("negative axes (opset 11 and later only)")
			}
		}
		return clone(op, n.Input[:1], []*onnxpb.AttributeProto{backbone.AttrInts("axes", axes...)}), nil
	case "Dropout":
		if len(n.Output) > 1 && n.Output[1] != "" {
			return nil, fmt.Errorf("mask output")
		}
		// Inference: the identity, at every opset.
		return &onnxpb.NodeProto{OpType: proto.String("Identity"), Name: n.Name, Input: n.Input[:1], Output: n.Output[:1]}, nil
	case "Gemm":
		if len(n.Input) < 3 || n.Input[2] == "" {
			return nil, fmt.Errorf("no C input (optional from opset 11 only)")
		}
	case "Softmax", "LogSoftmax":
		// Opset 13 normalises along one axis; 10 flattens from the axis on.
		// They agree when the axis is the last one.
		axis := int64(-1)
		if opset < 13 {
			axis = 1
		}
		if a := attrOf(n, "axis"); a != nil {
			axis = a.GetI()
		}
		r, ok := ranks[n.Input[0]]
		if opset >= 13 && !(ok && (axis == int64(r-1) || axis == -1)) {
			return nil, fmt.Errorf("axis %d is not known to be the last one", axis)
		}
		if axis == -1 {
			if !ok {
				return nil, fmt.Errorf("input rank unknown")
			}
			return clone(op, n.Input, []*onnxpb.AttributeProto{backbone.AttrInt("axis", int64(r-1))}), nil
		}
	case "BatchNormalization":
		if a := attrOf(n, "training_mode"); a != nil && a.GetI() != 0 {
			return nil, fmt.Errorf("training mode")
		}
		if len(n.Output) > 1 {
			return nil, fmt.Errorf("training outputs")
		}
		return clone(op, n.Input, attrs("epsilon", "momentum")), nil
	case "Shape":
		// Opset 15 added start and end; without them it is opset 1's.
		if attrOf(n, "start") != nil || attrOf(n, "end") != nil {
			return nil, fmt.Errorf("start/end attributes (opset 15 and later only)")
		}
	case "Gather":
		// Opset 11 allowed negative indices; constant non-negative ones
		// mean the same at opset 1 (the axis was checked above).
		idx, ok := c.ints(n.Input[1])
		if !ok {
			return nil, fmt.Errorf("computed indices")
		}
		for _, v := range idx {
			if v < 0 {
				return nil, fmt.Errorf("negative indices (opset 11 and later only)")
			}
		}
	case "Reshape":
		if a := attrOf(n, "allowzero"); a != nil && a.GetI() != 0 {
			return nil, fmt.Errorf("allowzero (opset 14 and later only)")
		}
		return clone(op, n.Input, nil), nil
	case "Constant":
		if attrOf(n, "value") == nil || len(n.Attribute) != 1 {
			return nil, fmt.Errorf("value_* attributes (opset 12 and later only)")
		}
	default:
		if !sameAtOpset10[op] {
			return nil, fmt.Errorf("no opset-10 form known to headtune")
		}
	}
	return n, nil
}

func attrOf(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// constIndex finds constant tensors of a graph: initializers and the
// values of Constant nodes.
type constIndex struct {
	t map[string]*onnxpb.TensorProto
}

func newConstIndex(g *onnxpb.GraphProto) *constIndex {
	c := &constIndex{t: map[string]*onnxpb.TensorProto{}}
	for _, t := range g.Initializer {
		c.t[t.GetName()] = t
	}
	for _, n := range g.Node {
		if n.GetOpType() == "Constant" && isStandard(n) && len(n.Output) == 1 {
			if a := attrOf(n, "value"); a != nil && a.T != nil {
				c.t[n.Output[0]] = a.T
			}
		}
	}
	return c
}

// scalar returns a one-element float constant.
func (c *constIndex) scalar(name string) (float32, bool) {
	t := c.t[name]
	if t == nil {
		return 0, false
	}
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_DOUBLE:
	default:
		return 0, false
	}
	v, err := backbone.InitializerFloats(t)
	if err != nil || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// ints returns an int64 constant's values.
func (c *constIndex) ints(name string) ([]int64, bool) {
	t := c.t[name]
	if t == nil || t.GetDataType() != int32(onnxpb.TensorProto_INT64) {
		return nil, false
	}
	v, err := backbone.InitializerFloats(t)
	if err != nil {
		return nil, false
	}
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
		if float32(out[i]) != x || x > 1<<24 || x < -(1<<24) {
			return nil, false // beyond what a float32 carries exactly
		}
	}
	return out, true
}
