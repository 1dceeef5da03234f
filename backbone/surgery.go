package backbone

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// FeatureOutput is the name of the single output of a model cut by
// CutAtFeature: float32 [N, D].
const FeatureOutput = "features"

// CutAtFeature returns a new model whose only output is FeatureOutput, the
// feature vector [N, D] float32 taken at choice.Tensor and reduced as
// choice.Pool says (GlobalAveragePool + Flatten for NCHW, ReduceMean over
// axes 1,2 for NHWC, Flatten for unknown ranks, Identity when the tensor is
// already [N, D] and named otherwise).
//
// A float16 model is widened to float32 first (WidenFloat16), and a
// quantized feature tensor is dequantized (choice.Dequantize), so the
// features are float32 whatever the model computes in.
//
// Only the nodes the feature tensor depends on are kept, in their original
// order; initializers, value_info entries, quantization annotations and
// inputs that nothing kept reads are dropped, so the classifier never runs
// and a graph input used only by dropped nodes disappears. Opsets, IR
// version, producer, doc strings, metadata_props, functions and unknown
// fields are kept; training_info, which refers to the old graph, is not.
// If a kept intermediate tensor is already called "features" it is renamed.
//
// m is not modified. The result shares the TensorProto (weights), NodeProto
// and other sub-messages of m that it keeps, so cutting a 550 MB VGG16
// copies no weights; the caller must not mutate one while using the other.
func CutAtFeature(m *onnxpb.ModelProto, choice *FeatureChoice) (*onnxpb.ModelProto, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	if choice == nil || choice.Tensor == "" {
		return nil, fmt.Errorf("no feature tensor chosen")
	}
	m, _, err := WidenFloat16(m)
	if err != nil {
		return nil, err
	}
	ix := newGraphIndex(m)
	t := choice.Tensor
	if !ix.exists(t) {
		return nil, fmt.Errorf("feature tensor %q is not in the model", t)
	}
	switch choice.Pool {
	case PoolNone, PoolFlatten, PoolGlobalAvgNCHW, PoolGlobalAvgNHWC:
	default:
		return nil, fmt.Errorf("feature tensor %q: unknown pooling %q", t, choice.Pool)
	}
	src := m.Graph
	live := ix.liveNodes(choice.reads())
	g := ShallowCopy(src)

	// Kept nodes and the tensors they touch.
	used := map[string]bool{}
	for _, r := range choice.reads() {
		used[r] = true
	}
	g.Node = make([]*onnxpb.NodeProto, 0, len(src.Node)+2)
	for i, n := range src.Node {
		if !live[i] {
			continue
		}
		g.Node = append(g.Node, n)
		for _, r := range nodeReads(n) {
			used[r] = true
		}
		for _, o := range n.Output {
			used[o] = true
		}
	}
	g.Initializer = nil
	for _, init := range src.Initializer {
		if used[init.GetName()] {
			g.Initializer = append(g.Initializer, init)
		}
	}
	g.SparseInitializer = nil
	for _, sp := range src.SparseInitializer {
		if used[sp.GetValues().GetName()] {
			g.SparseInitializer = append(g.SparseInitializer, sp)
		}
	}
	g.Input = nil
	for _, in := range src.Input {
		if used[in.GetName()] {
			g.Input = append(g.Input, in)
		}
	}
	g.ValueInfo = nil
	for _, v := range src.ValueInfo {
		if used[v.GetName()] && v.GetName() != FeatureOutput {
			g.ValueInfo = append(g.ValueInfo, v)
		}
	}
	g.QuantizationAnnotation = nil
	for _, a := range src.QuantizationAnnotation {
		if used[a.GetTensorName()] {
			g.QuantizationAnnotation = append(g.QuantizationAnnotation, a)
		}
	}

	// Free the output name if a kept tensor other than the target owns it.
	if used[FeatureOutput] && !(t == FeatureOutput && choice.Pool == PoolNone) {
		if _, isConst := ix.consts[FeatureOutput]; isConst || !ix.isProduced(FeatureOutput) {
			return nil, fmt.Errorf("cannot name the feature output %q: a graph input or initializer already has that name", FeatureOutput)
		}
		b := EditGraph(g)
		renamed := b.Unique(FeatureOutput + "_orig")
		renameTensor(g, FeatureOutput, renamed)
		if t == FeatureOutput {
			t = renamed
		}
	}

	b := EditGraph(g)
	b.used[FeatureOutput] = true
	if q := choice.Dequantize; q != nil {
		in := []string{t, q.Scale}
		if q.ZeroPoint != "" {
			in = append(in, q.ZeroPoint)
		}
		if choice.Pool == PoolNone {
			b.Node("DequantizeLinear", in, []string{FeatureOutput})
			t = FeatureOutput
		} else {
			t = b.Op("DequantizeLinear", FeatureOutput+"_dq", in)
		}
	}
	switch choice.Pool {
	case PoolNone:
		if t != FeatureOutput {
			b.Node("Identity", []string{t}, []string{FeatureOutput})
		}
	case PoolFlatten:
		b.Node("Flatten", []string{t}, []string{FeatureOutput}, AttrInt("axis", 1))
	case PoolGlobalAvgNCHW:
		gap := b.Op("GlobalAveragePool", FeatureOutput+"_gap", []string{t})
		b.Node("Flatten", []string{gap}, []string{FeatureOutput}, AttrInt("axis", 1))
	case PoolGlobalAvgNHWC:
		if ix.opset >= 18 {
			axes := b.Int64Initializer(FeatureOutput+"_axes", []int64{2}, []int64{1, 2})
			b.Node("ReduceMean", []string{t, axes}, []string{FeatureOutput}, AttrInt("keepdims", 0))
		} else {
			b.Node("ReduceMean", []string{t}, []string{FeatureOutput}, AttrInts("axes", 1, 2), AttrInt("keepdims", 0))
		}
	}

	// Typed output [N, D]: N as the batch dim of the image input (or of the
	// tensor), D as inferred.
	batch := "N"
	var batchDim int64 = -1
	if s := ix.shape(choice.Tensor); len(s) > 0 && s[0] > 0 {
		batchDim = s[0]
	}
	if len(ix.realIn) > 0 {
		if tt := ix.realIn[0].GetType().GetTensorType(); tt != nil && len(tt.GetShape().GetDim()) > 0 {
			if p := tt.Shape.Dim[0].GetDimParam(); p != "" {
				batch = p
			}
		}
	}
	dims := []int64{batchDim, choice.Dim}
	if choice.Dim < 0 {
		dims[1] = -1
	}
	names := []string{batch, "D"}
	if batchDim >= 0 {
		names = names[1:]
	}
	g.Output = []*onnxpb.ValueInfoProto{ValueInfo(FeatureOutput, onnxpb.TensorProto_FLOAT, dims, names...)}

	out := ShallowCopy(m)
	out.Graph = g
	out.TrainingInfo = nil
	return out, nil
}

func (ix *graphIndex) isProduced(t string) bool { _, ok := ix.producer[t]; return ok }

// renameTensor renames tensor old to new in g's nodes (cloning the nodes it
// changes so that nodes shared with another model stay intact), value_info
// and quantization annotations.
func renameTensor(g *onnxpb.GraphProto, old, new string) {
	for i, n := range g.Node {
		if !slices.Contains(n.Input, old) && !slices.Contains(n.Output, old) {
			continue
		}
		c := ShallowCopy(n)
		c.Input = slices.Clone(n.Input)
		c.Output = slices.Clone(n.Output)
		for j := range c.Input {
			if c.Input[j] == old {
				c.Input[j] = new
			}
		}
		for j := range c.Output {
			if c.Output[j] == old {
				c.Output[j] = new
			}
		}
		g.Node[i] = c
	}
	for i, v := range g.ValueInfo {
		if v.GetName() == old {
			c := ShallowCopy(v)
			c.Name = ptr(new)
			g.ValueInfo[i] = c
		}
	}
	for i, a := range g.QuantizationAnnotation {
		if a.GetTensorName() == old {
			c := ShallowCopy(a)
			c.TensorName = ptr(new)
			g.QuantizationAnnotation[i] = c
		}
	}
}

// ShallowCopy returns a new message with the same field values as src:
// sub-messages and bytes are shared, and repeated fields get their own
// slice headers clipped to length so appending to one never writes into the
// other's backing array. Unknown fields are kept. Graph surgery and export
// edit such copies so that a 500 MB model's weights are never duplicated.
func ShallowCopy[T proto.Message](src T) T {
	s := src.ProtoReflect()
	d := s.New()
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsList() {
			l := d.Mutable(fd).List()
			sl := v.List()
			for i := 0; i < sl.Len(); i++ {
				l.Append(sl.Get(i))
			}
			return true
		}
		d.Set(fd, v)
		return true
	})
	if u := s.GetUnknown(); len(u) > 0 {
		d.SetUnknown(slices.Clip(u))
	}
	return d.Interface().(T)
}
