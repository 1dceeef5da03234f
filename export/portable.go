package export

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// Consumer limits that Build works around or reports (an Identity of a
// weight, see foldConstIdentities, is the third). Every export goes
// through portable, so the graph that ONNX Runtime runs is the graph the
// other consumers read.
//
// OpenCV's DNN module as Debian and Ubuntu ship it (4.6) reads Clip only in
// its opset-6 form, with min and max as attributes: a Clip whose bounds are
// inputs (opset 11 and later, the form every exporter writes for ReLU6)
// stops the import with "ERROR during processing node with 3 inputs". It
// reads neither Min nor Max with a constant operand. Rewriting ReLU6 with
// the operators it does read (r − Relu(r − 6), r = Relu(x), exact in
// float32) costs ONNX Runtime its NCHWc layout: the Sub nodes cannot stay
// in blocked layout, so 43 reorder nodes appear in MobileNetV2 and the
// convolutions take another kernel path (features moved by 8e-6). So the
// graph keeps Clip and is written at opset 10 instead, where Clip takes its
// bounds as attributes: ONNX Runtime fuses that Clip into the convolution
// exactly as before (same kernels, same bits: TestPortableSameBits), and
// OpenCV reads it. lowerOpset does this only when the graph has such a
// Clip and every other node means the same at opset 10 (or has an exact
// opset-10 spelling: Pad, Squeeze, Unsqueeze with constant operands,
// Dropout as Identity); otherwise the model keeps its opset and Limits
// says OpenCV cannot read it.
//
// The same OpenCV fails inside its shape code ("Assertion failed ... in
// function 'total'") on Add or Sub with a constant of rank 4 such as a
// per-channel mean [1, C, 1, 1] (Mul and Div with it work), and reads a
// 1-D constant as per-channel on axis 1 whatever the layout. Dropping the
// leading 1 ([C, 1, 1]) means the same under ONNX's broadcasting when the
// other operand has rank 4; a channels-last constant [1, 1, 1, C] needs the
// operation done in NCHW between two Transposes (squeezeConstOperands).

// portable rewrites, in m, the operator forms listed above into forms every
// consumer reads, and returns the number of nodes rewritten. Forms it
// cannot rewrite are left as they are (Limits reports them). Nodes and
// initializers (and the opset list) are replaced, never modified: m may
// share them with the caller's model (Build's shallow copy).
func portable(b *backbone.Builder, m *onnxpb.ModelProto) (rewritten int) {
	return foldConstIdentities(m.Graph) + squeezeConstOperands(b, m.Graph) + lowerOpset(m)
}

// foldConstIdentities removes Identity nodes whose input is an initializer
// (torch.onnx.export writes one per shared weight), making their readers
// read the initializer itself: OpenCV 4.6 fails on such a node ("Assertion
// failed: inputs.size()"), and ONNX Runtime folds it away anyway. An
// Identity that produces a graph output stays. It returns the number of
// nodes removed.
func foldConstIdentities(g *onnxpb.GraphProto) int {
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	outputs := map[string]bool{}
	for _, o := range g.Output {
		outputs[o.GetName()] = true
	}
	alias := map[string]string{}
	for _, n := range g.Node {
		if n.GetOpType() == "Identity" && isStandard(n) && len(n.Input) == 1 && len(n.Output) == 1 &&
			inits[n.Input[0]] && !outputs[n.Output[0]] {
			alias[n.Output[0]] = n.Input[0]
		}
	}
	if len(alias) == 0 {
		return 0
	}
	out := make([]*onnxpb.NodeProto, 0, len(g.Node))
	for _, n := range g.Node {
		if len(n.Output) == 1 && alias[n.Output[0]] != "" && n.GetOpType() == "Identity" {
			continue
		}
		var in []string
		for i, x := range n.Input {
			if a, ok := alias[x]; ok {
				if in == nil {
					in = append([]string(nil), n.Input...)
				}
				in[i] = a
			}
		}
		if in != nil {
			c := backbone.ShallowCopy(n)
			c.Input = in
			n = c
		}
		out = append(out, n)
	}
	g.Node = out
	return len(alias)
}

// squeezeConstOperands rewrites Add, Sub, Mul and Div of a rank-4 tensor
// and a rank-4 initializer [1, ...]: a channels-first constant loses its
// leading 1 ([1, C, 1, 1] becomes [C, 1, 1]); a channels-last one
// [1, 1, 1, C] is applied between two Transposes as [C, 1, 1] (OpenCV takes
// a 1-D constant as per-channel on axis 1, so [C] would be wrong there;
// ONNX Runtime's transpose optimiser folds the pair away). Nodes and
// initializers are replaced, never changed. It returns the number of nodes
// rewritten.
func squeezeConstOperands(b *backbone.Builder, g *onnxpb.GraphProto) int {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	ranks := knownRanks(g)
	squeezed := map[string]string{} // initializer -> its [C, 1, 1] or squeezed copy
	squeeze := func(t *onnxpb.TensorProto, dims []int64) string {
		if name := squeezed[t.GetName()]; name != "" {
			return name
		}
		c := backbone.ShallowCopy(t)
		c.Name = proto.String(b.Unique(t.GetName() + "/squeezed"))
		c.Dims = dims
		g.Initializer = append(g.Initializer, c)
		squeezed[t.GetName()] = c.GetName()
		return c.GetName()
	}
	rewritten := 0
	var out []*onnxpb.NodeProto
	for _, n := range g.Node {
		op := n.GetOpType()
		if (op != "Add" && op != "Sub" && op != "Mul" && op != "Div") || !isStandard(n) || len(n.Input) != 2 {
			out = append(out, n)
			continue
		}
		j := -1
		for k, in := range n.Input {
			if t := inits[in]; t != nil && len(t.Dims) == 4 && t.Dims[0] == 1 && ranks[n.Input[1-k]] == 4 && inits[n.Input[1-k]] == nil {
				j = k
			}
		}
		if j < 0 {
			out = append(out, n)
			continue
		}
		t := inits[n.Input[j]]
		d := t.Dims
		c := backbone.ShallowCopy(n)
		c.Input = append([]string(nil), n.Input...)
		rewritten++
		if d[1] == 1 && d[2] == 1 && d[3] > 1 {
			base := n.GetName()
			if base == "" {
				base = n.Output[0]
			}
			x := n.Input[1-j]
			nchw := b.Unique(base + "/nchw")
			res := b.Unique(base + "/nchw_result")
			c.Input[1-j], c.Input[j] = nchw, squeeze(t, []int64{d[3], 1, 1})
			c.Output = []string{res}
			out = append(out,
				&onnxpb.NodeProto{OpType: proto.String("Transpose"), Name: proto.String(b.Unique(base + "/to_nchw")), Input: []string{x}, Output: []string{nchw}, Attribute: []*onnxpb.AttributeProto{backbone.AttrInts("perm", 0, 3, 1, 2)}},
				c,
				&onnxpb.NodeProto{OpType: proto.String("Transpose"), Name: proto.String(b.Unique(base + "/to_nhwc")), Input: []string{res}, Output: []string{n.Output[0]}, Attribute: []*onnxpb.AttributeProto{backbone.AttrInts("perm", 0, 2, 3, 1)}},
			)
			continue
		}
		c.Input[j] = squeeze(t, append([]int64(nil), d[1:]...))
		out = append(out, c)
	}
	g.Node = out
	return rewritten
}

// knownRanks returns the rank of every tensor of g it can tell: declared
// inputs, initializers, value_info, and the outputs of nodes whose output
// rank follows from their inputs' (element-wise ops, convolutions, pools,
// Transpose, normalisations).
func knownRanks(g *onnxpb.GraphProto) map[string]int {
	r := map[string]int{}
	declare := func(vs []*onnxpb.ValueInfoProto) {
		for _, v := range vs {
			if s := v.GetType().GetTensorType().GetShape(); s != nil {
				r[v.GetName()] = len(s.Dim)
			}
		}
	}
	declare(g.Input)
	declare(g.ValueInfo)
	for _, t := range g.Initializer {
		r[t.GetName()] = len(t.Dims)
	}
	for _, n := range g.Node {
		if len(n.Output) == 0 || !isStandard(n) {
			continue
		}
		if _, ok := r[n.Output[0]]; ok {
			continue
		}
		switch n.GetOpType() {
		case "Gemm", "Flatten":
			r[n.Output[0]] = 2
		case "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "PRelu", "MatMul":
			m, ok := 0, true
			for _, in := range n.Input {
				k, known := r[in]
				ok = ok && known
				m = max(m, k)
			}
			if ok {
				r[n.Output[0]] = m
			}
		case "Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
			"Identity", "Dropout", "Transpose", "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization",
			"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "Pad", "Concat", "Softmax", "Cast":
			if len(n.Input) > 0 {
				if k, ok := r[n.Input[0]]; ok {
					r[n.Output[0]] = k
				}
			}
		}
	}
	return r
}

// Limits returns one line for each consumer that cannot run m, saying why
// (nil when every consumer headtune tests reads it). Build already rewrote
// what it could; what is left are graphs with no form every consumer
// reads, such as a Clip with bound inputs next to an operator that has no
// opset-10 equivalent.
func Limits(m *onnxpb.ModelProto) []string {
	if m.GetGraph() == nil {
		return nil
	}
	var notes []string
	for _, t := range m.Graph.Initializer {
		if t.GetDataType() == int32(onnxpb.TensorProto_FLOAT16) {
			notes = append(notes, LimitOpenCV+"it holds float16 tensors (export --fp16), and OpenCV 4.6 reads only float32 ONNX weights; export without --fp16 for OpenCV")
			break
		}
	}
	opset, err := defaultOpset(m)
	if err != nil || opset <= portableOpset {
		return notes
	}
	clips := 0
	for _, n := range m.Graph.Node {
		if n.GetOpType() == "Clip" && isStandard(n) && len(n.Input) > 1 {
			clips++
		}
	}
	if clips == 0 {
		return notes
	}
	_, err = loweredNodes(m)
	return append(notes, fmt.Sprintf(LimitOpenCV+"%d Clip node(s) have their bounds as inputs (opset %d), and the model cannot be written at opset %d, where OpenCV reads Clip: %v", clips, opset, portableOpset, err))
}

// LimitOpenCV starts each line of Limits about OpenCV's DNN module.
const LimitOpenCV = "OpenCV DNN 4.6 cannot read this export: "

func isStandard(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}
