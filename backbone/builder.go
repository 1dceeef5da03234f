package backbone

import (
	"fmt"
	"math"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// DefaultOpset is the ai.onnx opset that headtune writes. ONNX Runtime 1.24
// supports it fully, and onnx 1.12's checker (Debian) accepts it.
const DefaultOpset = 13

// Builder appends nodes, initializers, inputs and outputs to an ONNX graph.
// It is used to build backbones from TF.js weights, to append heads for
// export, and to make small test models. Names it invents are unique in the
// graph; names given by the caller are used as they are.
type Builder struct {
	Graph *onnxpb.GraphProto
	used  map[string]bool
	seq   int
}

// NewBuilder starts an empty graph.
func NewBuilder(name string) *Builder {
	return &Builder{Graph: &onnxpb.GraphProto{Name: ptr(name)}, used: map[string]bool{}}
}

// EditGraph returns a Builder that appends to an existing graph, knowing all
// names already in it.
func EditGraph(g *onnxpb.GraphProto) *Builder {
	b := &Builder{Graph: g, used: map[string]bool{}}
	for _, t := range g.Initializer {
		b.used[t.GetName()] = true
	}
	for _, v := range g.Input {
		b.used[v.GetName()] = true
	}
	for _, v := range g.Output {
		b.used[v.GetName()] = true
	}
	for _, n := range g.Node {
		b.used[n.GetName()] = true
		for _, o := range n.Output {
			b.used[o] = true
		}
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// Unique returns prefix, or prefix_N, that no tensor or node in the graph
// uses yet, and reserves it.
func (b *Builder) Unique(prefix string) string {
	name := prefix
	for b.used[name] {
		b.seq++
		name = fmt.Sprintf("%s_%d", prefix, b.seq)
	}
	b.used[name] = true
	return name
}

// ValueInfo makes a tensor type description. A dimension below 0 is
// symbolic, named by dimNames in order ("N" when none is given).
func ValueInfo(name string, elem onnxpb.TensorProto_DataType, dims []int64, dimNames ...string) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	k := 0
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			p := "N"
			if k < len(dimNames) {
				p = dimNames[k]
			}
			k++
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: p}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: ptr(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: ptr(int32(elem)),
			Shape:    shape,
		}}},
	}
}

// Input declares a float32 graph input; -1 dims are symbolic.
func (b *Builder) Input(name string, dims ...int64) string {
	b.used[name] = true
	b.Graph.Input = append(b.Graph.Input, ValueInfo(name, onnxpb.TensorProto_FLOAT, dims))
	return name
}

// Output declares a float32 graph output; -1 dims are symbolic.
func (b *Builder) Output(name string, dims ...int64) {
	b.Graph.Output = append(b.Graph.Output, ValueInfo(name, onnxpb.TensorProto_FLOAT, dims))
}

// Float32Tensor makes a float32 TensorProto; data is copied into raw bytes
// (little endian), the compact form ONNX Runtime reads fastest.
func Float32Tensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	if int64(len(data)) != n {
		panic(fmt.Sprintf("tensor %s: %d values for shape %v", name, len(data), dims))
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		u := math.Float32bits(v)
		raw[4*i] = byte(u)
		raw[4*i+1] = byte(u >> 8)
		raw[4*i+2] = byte(u >> 16)
		raw[4*i+3] = byte(u >> 24)
	}
	return &onnxpb.TensorProto{
		Name:     ptr(name),
		Dims:     append([]int64(nil), dims...),
		DataType: ptr(int32(onnxpb.TensorProto_FLOAT)),
		RawData:  raw,
	}
}

// Int64Tensor makes an int64 TensorProto (shapes, axes).
func Int64Tensor(name string, dims []int64, data []int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{
		Name:      ptr(name),
		Dims:      append([]int64(nil), dims...),
		DataType:  ptr(int32(onnxpb.TensorProto_INT64)),
		Int64Data: append([]int64(nil), data...),
	}
}

// Initializer adds a float32 initializer with a unique name derived from
// name and returns that name.
func (b *Builder) Initializer(name string, dims []int64, data []float32) string {
	name = b.Unique(name)
	b.Graph.Initializer = append(b.Graph.Initializer, Float32Tensor(name, dims, data))
	return name
}

// Int64Initializer adds an int64 initializer and returns its unique name.
func (b *Builder) Int64Initializer(name string, dims []int64, data []int64) string {
	name = b.Unique(name)
	b.Graph.Initializer = append(b.Graph.Initializer, Int64Tensor(name, dims, data))
	return name
}

// Node appends a node with explicit output names (reserved as given).
func (b *Builder) Node(op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	for _, o := range outputs {
		b.used[o] = true
	}
	n := &onnxpb.NodeProto{
		OpType:    ptr(op),
		Name:      ptr(b.Unique(op)),
		Input:     append([]string(nil), inputs...),
		Output:    append([]string(nil), outputs...),
		Attribute: attrs,
	}
	b.Graph.Node = append(b.Graph.Node, n)
	return n
}

// Op appends a single-output node whose output is named after name (made
// unique) and returns that output name.
func (b *Builder) Op(op, name string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.Unique(name)
	b.Node(op, inputs, []string{out}, attrs...)
	return out
}

// AttrInt makes an INT attribute.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: ptr(name), Type: ptr(onnxpb.AttributeProto_INT), I: ptr(v)}
}

// AttrInts makes an INTS attribute.
func AttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: ptr(name), Type: ptr(onnxpb.AttributeProto_INTS), Ints: append([]int64(nil), v...)}
}

// AttrFloat makes a FLOAT attribute.
func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: ptr(name), Type: ptr(onnxpb.AttributeProto_FLOAT), F: ptr(v)}
}

// AttrString makes a STRING attribute.
func AttrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: ptr(name), Type: ptr(onnxpb.AttributeProto_STRING), S: []byte(v)}
}

// Model wraps the graph in a ModelProto with IR version 8 and the given
// ai.onnx opset (DefaultOpset when 0).
func (b *Builder) Model(opset int64) *onnxpb.ModelProto {
	if opset == 0 {
		opset = DefaultOpset
	}
	return &onnxpb.ModelProto{
		IrVersion:    ptr(int64(8)),
		ProducerName: ptr("headtune"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: ptr(""), Version: ptr(opset)}},
		Graph:        b.Graph,
	}
}
