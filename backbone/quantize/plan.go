// Package quantize turns a float32 ONNX backbone into a static int8 one in
// the QDQ format that ONNX Runtime fuses into integer kernels (QLinearConv,
// QLinearMatMul, QLinearAdd, QLinearConcat, QLinearAveragePool, ...): every
// Conv, Gemm and MatMul upstream of the feature tensor reads int8 weights
// (symmetric, one scale per output channel) through DequantizeLinear, and
// every activation tensor between quantized nodes passes through a
// QuantizeLinear/DequantizeLinear pair (uint8, asymmetric) whose scale comes
// from calibration. The feature tensor itself, and everything downstream of
// it (a classifier, dense layers kept for --tune-layers), stays float32.
//
// The package is pure graph code: Prepare analyses a model and lists the
// activation tensors that need ranges, CalibrationModel exposes them as
// outputs, Stats turns the values a runtime produced for them into ranges,
// and Plan.Quantize writes the int8 model. Running the calibration model is
// the caller's job (backbone/ort), so this package has no cgo.
package quantize

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// Options choose what Prepare quantizes.
type Options struct {
	// Float names nodes (by node name, or by first output when unnamed) that
	// stay float32: the mixed-precision escape for sensitive layers. A name
	// that is not a node of the model is an error.
	Float []string
	// QuantizeDense also quantizes the dense (Gemm/MatMul) layers that run
	// right before the feature tensor. By default they stay float so that
	// `--tune-layers` can still read and fine-tune their weights.
	QuantizeDense bool
	// InputShape is the per-sample shape of the image input (batch axis
	// excluded), used to resolve dynamic dims for shape inference; nil uses
	// the declared shape.
	InputShape []int64
	// NoPoolSwap turns off the AveragePool -> 1x1 Conv swap (swapPoolConv),
	// which Prepare otherwise applies before choosing what to quantize; it
	// is there to compare the two graphs.
	NoPoolSwap bool
}

// Left is a node upstream of the feature tensor that stays float32.
type Left struct {
	Node   string `json:"node"`
	Op     string `json:"op"`
	Reason string `json:"reason"`
}

// Plan is the analysis of one model: which nodes become int8, which
// activation tensors need calibrated ranges, and what stays float.
type Plan struct {
	// Feature is the feature tensor; Boundary is the tensor where the
	// quantized region ends (Feature, or the input of the dense layers
	// kept float).
	Feature, Boundary string
	// Input is the image input's name.
	Input string
	// Nodes lists the quantized nodes (names), in graph order.
	Nodes []string
	// Tensors lists the activation tensors that get a QuantizeLinear /
	// DequantizeLinear pair, in graph order; Sizes holds each one's
	// values per sample. Calibrate them with CalibrationModel and Stats.
	Tensors []string
	Sizes   []int
	// Left lists the nodes upstream of Boundary that stay float, with why.
	Left []Left
	// Fused counts Relu/Clip nodes folded into the quantized node before
	// them (the uint8 range clamps at zero, so they are exact).
	Fused int
	// PerTensor is set when the model's opset (< 13) cannot express
	// per-channel DequantizeLinear, so weights get one scale per tensor.
	PerTensor bool
	// PoolConvSwaps counts the AveragePool -> 1x1 Conv pairs rewritten
	// into 1x1 Conv -> AveragePool (exact; see Options.NoPoolSwap).
	PoolConvSwaps int

	model     *onnxpb.ModelProto // prepared float model (owned)
	opset     int64
	quantized map[int]bool      // node index -> quantized
	sameScale map[string]string // output tensor -> input tensor whose scale it reuses (MaxPool, Transpose, ...)
	fuse      map[int]int       // activation node index -> producer index
}

// Model returns the prepared float32 model the plan applies to (the input
// model with identical results; shared structure, do not modify).
func (p *Plan) Model() *onnxpb.ModelProto { return p.model }

// Compute ops read constant weights and get per-channel int8 weights.
var computeOps = map[string]bool{"Conv": true, "Gemm": true, "MatMul": true}

// activationOps have int8 kernels in ONNX Runtime with their own output
// scale (QLinearAdd, QLinearMul, QLinearConcat, QLinearAveragePool,
// QLinearGlobalAveragePool, QLinearSigmoid, QLinearLeakyRelu); Add and Mul
// only when both inputs are activations, so SiLU (x * sigmoid(x)) runs in
// int8 too.
var activationOps = map[string]bool{"Add": true, "Mul": true, "Concat": true, "AveragePool": true, "GlobalAveragePool": true,
	"Sigmoid": true, "LeakyRelu": true}

// sameScaleOps move or select values: ONNX Runtime drops their QDQ pairs
// when input and output share one scale, so they run on uint8 directly.
var sameScaleOps = map[string]bool{"MaxPool": true, "Transpose": true, "Reshape": true, "Flatten": true,
	"Squeeze": true, "Unsqueeze": true, "Identity": true, "Dropout": true}

// nodeName is how Options.Float and Plan name a node.
func nodeName(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.Output) > 0 {
		return n.Output[0]
	}
	return n.GetOpType()
}

// graph is the small index Prepare and Quantize share.
type graph struct {
	g         *onnxpb.GraphProto
	producer  map[string]int
	consumers map[string][]int
	inits     map[string]*onnxpb.TensorProto
	outputs   map[string]bool
}

// upstream marks the nodes the targets depend on, the producers of their
// direct inputs and so on (subgraph reads are not followed: backbone's
// liveNodes does that, but it needs the full graph index).
func (ix *graph) upstream(targets []string) []bool {
	marked := make([]bool, len(ix.g.Node))
	stack := slices.Clone(targets)
	seen := map[string]bool{}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[t] {
			continue
		}
		seen[t] = true
		if i, ok := ix.producer[t]; ok {
			marked[i] = true
			stack = append(stack, ix.g.Node[i].Input...)
		}
	}
	return marked
}

func index(g *onnxpb.GraphProto) *graph {
	ix := &graph{g: g, producer: map[string]int{}, consumers: map[string][]int{},
		inits: map[string]*onnxpb.TensorProto{}, outputs: map[string]bool{}}
	for _, t := range g.Initializer {
		ix.inits[t.GetName()] = t
	}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				ix.producer[o] = i
			}
		}
		for _, in := range n.Input {
			if in != "" {
				ix.consumers[in] = append(ix.consumers[in], i)
			}
		}
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				// Subgraphs may read outer tensors by name; Prepare
				// leaves such nodes (If, Loop, Scan) float, and a tensor
				// they might read is treated as having an extra consumer.
				for _, sg := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
					for _, sn := range sg.GetNode() {
						for _, in := range sn.Input {
							ix.consumers[in] = append(ix.consumers[in], i)
						}
					}
				}
			}
		}
	}
	for _, o := range g.Output {
		ix.outputs[o.GetName()] = true
	}
	return ix
}

// constant returns the initializer or Constant-node value behind t.
func (ix *graph) constant(t string) *onnxpb.TensorProto {
	if c, ok := ix.inits[t]; ok {
		return c
	}
	if i, ok := ix.producer[t]; ok {
		n := ix.g.Node[i]
		if n.GetOpType() == "Constant" && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx") {
			for _, a := range n.Attribute {
				if a.GetName() == "value" && a.T != nil {
					return a.T
				}
			}
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func attrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
}

// Prepare analyses m for quantization up to the feature tensor feature:
// it folds BatchNormalization into the Conv before it and moves average
// pools after the 1x1 Conv they feed (float rewrites with the same
// results, up to float rounding), chooses the nodes to quantize and lists the
// activation tensors to calibrate. m is not modified.
//
// Nodes of other op types upstream of the feature tensor stay float and
// are listed in Plan.Left; Prepare fails, in one line naming the ops it
// met, when nothing at all can be quantized.
func Prepare(m *onnxpb.ModelProto, feature string, opt Options) (*Plan, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	p := &Plan{Feature: feature, Boundary: feature, model: proto.Clone(m).(*onnxpb.ModelProto),
		quantized: map[int]bool{}, sameScale: map[string]string{}, fuse: map[int]int{}}
	for _, o := range m.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			p.opset = o.GetVersion()
		}
	}
	if p.opset < 10 {
		return nil, fmt.Errorf("opset %d: int8 QuantizeLinear/DequantizeLinear need opset 10 or newer", p.opset)
	}
	p.PerTensor = p.opset < 13
	if err := foldBatchNorm(p.model.Graph); err != nil {
		return nil, err
	}
	if !opt.NoPoolSwap {
		// After the fold, so that a Conv -> BatchNormalization pair is
		// one 1x1 Conv with a bias that the pool can move past.
		p.PoolConvSwaps = swapPoolConv(p.model.Graph)
	}
	g := p.model.Graph
	ix := index(g)
	if _, ok := ix.producer[feature]; !ok {
		return nil, fmt.Errorf("feature tensor %q is not produced by any node", feature)
	}
	info, err := backbone.ImageInput(p.model)
	if err != nil {
		return nil, err
	}
	in := info.Name
	p.Input = in
	if !opt.QuantizeDense {
		chain, err := backbone.DenseChain(p.model, feature)
		if err == nil && len(chain) > 0 {
			p.Boundary = chain[0].Input
		}
	}

	// Float names a node by its name or by one of its outputs.
	float := map[string]bool{}
	names := map[string]string{}
	for _, n := range g.Node {
		names[nodeName(n)] = nodeName(n)
		for _, o := range n.Output {
			if _, taken := names[o]; !taken {
				names[o] = nodeName(n)
			}
		}
	}
	for _, f := range opt.Float {
		n, ok := names[f]
		if !ok {
			return nil, fmt.Errorf("--float %s: no node or tensor of that name in the model", f)
		}
		float[n] = true
	}

	// The region: nodes the boundary tensor depends on.
	region := ix.upstream([]string{p.Boundary})

	// Protected tensors are never quantized: the feature tensor and what it
	// is a pure reshaping of, so the features keep full float precision.
	protected := map[string]bool{feature: true, p.Boundary: true}
	for t := p.Boundary; ; {
		i, ok := ix.producer[t]
		if !ok {
			break
		}
		n := g.Node[i]
		switch n.GetOpType() {
		case "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Transpose":
			t = n.Input[0]
			protected[t] = true
			continue
		}
		break
	}
	for o := range ix.outputs {
		protected[o] = true
	}

	shapes := backbone.InferShapes(withInputShape(p.model, in, opt.InputShape))
	perSample := func(t string) int {
		s, ok := shapes[t]
		if !ok || len(s) == 0 {
			return 0
		}
		n := 1
		for _, d := range s[1:] {
			if d <= 0 {
				return 0
			}
			n *= int(d)
		}
		return n
	}
	isFloatActivation := func(t string) bool {
		if t == "" || ix.constant(t) != nil {
			return false
		}
		return perSample(t) > 0
	}

	// Pass 1: compute and activation ops.
	var opsMet []string
	for i, n := range g.Node {
		if !region[i] {
			continue
		}
		op := n.GetOpType()
		std := n.GetDomain() == "" || n.GetDomain() == "ai.onnx"
		reason := ""
		switch {
		case !std:
			reason = fmt.Sprintf("domain %s has no int8 rewrite", n.GetDomain())
		case float[nodeName(n)]:
			reason = "kept float (--float)"
		case computeOps[op]:
			reason = p.computeReason(ix, n)
		case activationOps[op]:
			for _, x := range n.Input {
				if x != "" && !isFloatActivation(x) {
					reason = "an input is a constant or of unknown shape"
				}
			}
		case sameScaleOps[op], op == "Relu", op == "Clip", op == "Constant":
			continue // decided below
		default:
			reason = "no int8 kernel for " + op
		}
		if reason == "" {
			for _, x := range n.Input {
				if x != "" && ix.constant(x) == nil && !isFloatActivation(x) {
					reason = fmt.Sprintf("shape of %s unknown", x)
				}
			}
		}
		if reason != "" {
			p.Left = append(p.Left, Left{Node: nodeName(n), Op: op, Reason: reason})
			opsMet = append(opsMet, op)
			continue
		}
		p.quantized[i] = true
	}
	if len(p.quantized) == 0 {
		slices.Sort(opsMet)
		opsMet = slices.Compact(opsMet)
		return nil, fmt.Errorf("nothing to quantize before %s: no Conv, Gemm or MatMul with constant weights (ops met: %s)", p.Boundary, strings.Join(opsMet, ", "))
	}

	// Pass 2: Relu and Clip(0, x) right after a quantized node that only
	// feeds them fold into that node's output range.
	for i, n := range g.Node {
		if !region[i] || (n.GetOpType() != "Relu" && n.GetOpType() != "Clip") || float[nodeName(n)] {
			continue
		}
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			continue
		}
		x := n.Input[0]
		pi, ok := ix.producer[x]
		if !ok || !p.quantized[pi] || len(ix.consumers[x]) != 1 || protected[x] || protected[n.Output[0]] {
			continue
		}
		if n.GetOpType() == "Clip" {
			lo, ok := p.clipMin(ix, n)
			if !ok || lo != 0 {
				continue
			}
		}
		p.fuse[i] = pi
	}

	// Pass 3, backwards: same-scale ops are worth quantizing when a
	// quantized node reads their output.
	wanted := func(t string) bool {
		for _, c := range ix.consumers[t] {
			if p.quantized[c] {
				return true
			}
		}
		return false
	}
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		if !region[i] || !sameScaleOps[n.GetOpType()] || float[nodeName(n)] || len(n.Output) != 1 {
			continue
		}
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			continue
		}
		out := n.Output[0]
		if protected[out] || !wanted(out) || !isFloatActivation(n.Input[0]) {
			continue
		}
		p.quantized[i] = true
		p.sameScale[out] = n.Input[0]
	}

	// The tensors that get QDQ pairs: float activations read or written by
	// quantized nodes, a folded activation's output standing for its
	// producer's.
	fusedOut := map[int]string{}
	for a, pi := range p.fuse {
		fusedOut[pi] = g.Node[a].Output[0]
	}
	qdq := map[string]bool{}
	for i, n := range g.Node {
		if !p.quantized[i] {
			continue
		}
		p.Nodes = append(p.Nodes, nodeName(n))
		op := n.GetOpType()
		ins := n.Input
		if computeOps[op] {
			ins = ins[:1]
		}
		if op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op == "Dropout" {
			ins = ins[:1]
		}
		for _, x := range ins {
			if isFloatActivation(x) && !protected[x] {
				qdq[x] = true
			}
		}
		out := n.Output[0]
		if f, ok := fusedOut[i]; ok {
			out = f
		}
		if !protected[out] && isFloatActivation(out) {
			qdq[out] = true
		}
	}
	// Graph order: inputs first, then node outputs.
	order := []string{}
	for _, v := range g.Input {
		if qdq[v.GetName()] {
			order = append(order, v.GetName())
		}
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if qdq[o] {
				order = append(order, o)
			}
		}
	}
	p.Tensors = order
	for _, t := range order {
		p.Sizes = append(p.Sizes, perSample(t))
	}
	p.Fused = len(p.fuse)
	// A same-scale op whose input got no pair of its own calibrates its
	// output separately.
	for out, x := range p.sameScale {
		if !qdq[x] {
			delete(p.sameScale, out)
		}
	}
	sort.Slice(p.Left, func(a, b int) bool { return p.Left[a].Node < p.Left[b].Node })
	return p, nil
}

// computeReason says why a Conv, Gemm or MatMul cannot be quantized, or "".
func (p *Plan) computeReason(ix *graph, n *onnxpb.NodeProto) string {
	if len(n.Input) < 2 {
		return "missing weight input"
	}
	w := ix.constant(n.Input[1])
	if w == nil {
		return "weight is not a constant"
	}
	if w.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
		return "weight is " + backbone.ElemTypeName(w.GetDataType()) + ", not float32"
	}
	switch n.GetOpType() {
	case "Conv":
		if len(w.Dims) < 3 {
			return "weight rank below 3"
		}
		if len(n.Input) > 2 && n.Input[2] != "" {
			b := ix.constant(n.Input[2])
			if b == nil || len(b.Dims) != 1 || b.Dims[0] != w.Dims[0] || b.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
				return "bias is not a constant float32 [M]"
			}
		}
	case "Gemm":
		if attrInt(n, "transA", 0) != 0 || attrFloat(n, "alpha", 1) != 1 || attrFloat(n, "beta", 1) != 1 {
			return "Gemm with transA, alpha or beta"
		}
		if len(w.Dims) != 2 {
			return "weight is not 2-D"
		}
		if len(n.Input) > 2 && n.Input[2] != "" {
			out := w.Dims[0]
			if attrInt(n, "transB", 0) == 0 {
				out = w.Dims[1]
			}
			b := ix.constant(n.Input[2])
			if b == nil || len(b.Dims) != 1 || b.Dims[0] != out || b.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
				return "bias is not a constant float32 [N]"
			}
		}
	case "MatMul":
		if len(w.Dims) != 2 {
			return "weight is not 2-D"
		}
	}
	return ""
}

// clipMin returns the lower bound of a Clip (attribute before opset 11,
// input after).
func (p *Plan) clipMin(ix *graph, n *onnxpb.NodeProto) (float32, bool) {
	if p.opset < 11 {
		return attrFloat(n, "min", float32(math.Inf(-1))), true
	}
	if len(n.Input) < 2 || n.Input[1] == "" {
		return float32(math.Inf(-1)), true
	}
	c := ix.constant(n.Input[1])
	if c == nil {
		return 0, false
	}
	v, err := backbone.InitializerFloats(c)
	if err != nil || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// withInputShape returns m (shallow copy) with the input's per-sample dims
// replaced, so that shape inference resolves dynamic spatial sizes.
func withInputShape(m *onnxpb.ModelProto, input string, shape []int64) *onnxpb.ModelProto {
	if len(shape) == 0 {
		return m
	}
	c := backbone.ShallowCopy(m)
	g := backbone.ShallowCopy(m.Graph)
	c.Graph = g
	g.Input = slices.Clone(g.Input)
	for i, v := range g.Input {
		if v.GetName() != input {
			continue
		}
		g.Input[i] = backbone.ValueInfo(input, onnxpb.TensorProto_FLOAT, append([]int64{-1}, shape...), "N")
	}
	return c
}

// calibrationOutput names the calibration model's output for tensor t.
func calibrationOutput(t string) string { return t + "_calibration" }

// CalibrationOutputs are the output names of CalibrationModel, one per
// Plan.Tensors entry, each [N, Sizes[k]].
func (p *Plan) CalibrationOutputs() []string {
	out := make([]string, len(p.Tensors))
	for i, t := range p.Tensors {
		out[i] = calibrationOutput(t)
	}
	return out
}

// CalibrationModel returns the prepared float model with the plan's
// tensors as its outputs (in Plan.Tensors order) and only the nodes they
// need (and a Flatten per output, see CalibrationOutputs). Run it on the calibration images and feed each batch to
// Stats.Add.
func (p *Plan) CalibrationModel() *onnxpb.ModelProto {
	m := backbone.ShallowCopy(p.model)
	g := backbone.ShallowCopy(p.model.Graph)
	m.Graph = g
	ix := index(p.model.Graph)
	keep := ix.upstream(p.Tensors)
	g.Node = nil
	used := map[string]bool{}
	for i, n := range p.model.Graph.Node {
		if keep[i] {
			g.Node = append(g.Node, n)
			for _, x := range n.Input {
				used[x] = true
			}
		}
	}
	g.Initializer = nil
	for _, t := range p.model.Graph.Initializer {
		if used[t.GetName()] {
			g.Initializer = append(g.Initializer, t)
		}
	}
	g.Output = nil
	for _, t := range p.Tensors {
		// Flattened to [N, values], the shape Stats reads (and a graph
		// input cannot be an output of another rank).
		o := calibrationOutput(t)
		g.Node = append(g.Node, &onnxpb.NodeProto{Name: proto.String(o), OpType: proto.String("Flatten"), Input: []string{t}, Output: []string{o},
			Attribute: []*onnxpb.AttributeProto{backbone.AttrInt("axis", 1)}})
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(o), Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}})
	}
	g.ValueInfo = nil
	return m
}
