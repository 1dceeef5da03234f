package backbone

import (
	"fmt"
	"sort"
	"strings"

	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/dense"
)

// Pooling that CutAtFeature appends after the feature tensor.
const (
	// PoolNone: the tensor is already [N, D].
	PoolNone = ""
	// PoolGlobalAvgNCHW: [N, C, spatial...] averaged over the spatial axes
	// (GlobalAveragePool + Flatten) to [N, C].
	PoolGlobalAvgNCHW = "gap_nchw"
	// PoolGlobalAvgNHWC: [N, H, W, C] averaged over axes 1 and 2
	// (ReduceMean, keepdims=0) to [N, C].
	PoolGlobalAvgNHWC = "gap_nhwc"
	// PoolFlatten: the rank is unknown statically; Flatten(axis=1) makes
	// the output [N, D] whatever it is.
	PoolFlatten = "flatten"
)

// Detection rules recorded in FeatureChoice.Rule.
const (
	RuleOverride   = "override"   // named by the user (--feature-tensor)
	RuleClassifier = "classifier" // input of the final Gemm/MatMul classifier
	RuleConvHead   = "conv-head"  // input of a SqueezeNet-style 1x1 Conv classifier
	RuleOutput     = "output"     // the model is already a feature extractor
)

// FeatureChoice is where a backbone is cut: the tensor whose values become
// the feature vector, and how it is reduced to [N, D] float32.
type FeatureChoice struct {
	// Tensor names the chosen tensor in the original graph.
	Tensor string `json:"tensor"`
	// Dim is D, the width of the [N, D] feature vector after pooling; -1
	// when it cannot be inferred statically.
	Dim int64 `json:"dim"`
	// Shape is the statically known shape of Tensor, -1 for unknown or
	// symbolic dims, nil when even the rank is unknown.
	Shape []int64 `json:"shape"`
	// Layout is "NCHW" or "NHWC" for tensors of rank 4, "" otherwise.
	Layout string `json:"layout,omitempty"`
	// Pool is one of PoolNone, PoolGlobalAvgNCHW, PoolGlobalAvgNHWC,
	// PoolFlatten.
	Pool string `json:"pool,omitempty"`
	// Rule is the detection rule that chose the tensor (Rule* constants).
	Rule string `json:"rule"`
	// Classifier names the node recognised as the classifier ("" for
	// RuleOutput and RuleOverride), and Classes its output width (-1
	// unknown, 0 when there is no classifier).
	Classifier string `json:"classifier,omitempty"`
	Classes    int64  `json:"classes,omitempty"`
	// Removed lists the nodes ("OpType name") that the cut drops because
	// the feature tensor does not depend on them: the classifier, and the
	// branches behind any other outputs. In graph order.
	Removed []string `json:"removed,omitempty"`
}

// Candidate is a tensor that could serve as the feature tensor, listed by
// Inspect and in the error for an unknown --feature-tensor.
type Candidate struct {
	Tensor string  `json:"tensor"`
	Op     string  `json:"op"`    // type of the producing node
	Shape  []int64 `json:"shape"` // static shape, -1 unknown, nil unknown rank
	Dim    int64   `json:"dim"`   // feature width after pooling, -1 unknown
	Why    string  `json:"why"`   // why it is a candidate
}

// FindFeatureTensor chooses the tensor of m to extract features from.
//
// With override != "" that tensor is used; an unknown name is an error that
// lists the candidates. Otherwise the rules are, starting from the first
// graph output and walking backwards (each step follows the node's data
// input):
//
//  1. Softmax, LogSoftmax, Sigmoid (which mark the output as class scores),
//     Identity, Flatten, Reshape, Squeeze, Dropout, and Add whose other
//     input is a constant (a bias) are passed through.
//  2. Gemm (transA=0) or MatMul whose weight is a constant (initializer or
//     Constant node) is the classifier: its data input is the feature
//     tensor, and D is the weight's input size (Gemm: dims[1] if transB
//     else dims[0]; MatMul: dims[0]).
//  3. After a Softmax/LogSoftmax/Sigmoid only, Relu, Clip and global
//     pooling (GlobalAveragePool, GlobalMaxPool, ReduceMean, AveragePool)
//     are also passed through, and a 1x1 Conv with constant weights and
//     group=1 reached through a pooling is a SqueezeNet-style classifier:
//     its input, globally average pooled, is the feature tensor.
//     A rank-2 first output of width 1000 or 1001 (ImageNet-1k logits,
//     with TensorFlow's background class) counts as class scores too, so
//     torchvision's SqueezeNet (no Softmax) is recognised.
//  4. Any other node ends the walk. If no classifier was found the model is
//     taken as a feature extractor and its first output is the feature
//     tensor; but an output that went through Softmax/Sigmoid without a
//     recognisable classifier is an error (pass an override).
//
// A chosen tensor of rank 4 is globally average pooled to [N, C]: NHWC when
// it comes (through element-wise ops) from a Transpose with perm
// [0,2,3,1] or an NHWC image input, NCHW when it comes from Conv, pooling,
// normalisation or a Transpose with perm [0,3,1,2], and otherwise from its
// shape ([N,a,a,c] with c != a is NHWC). Ranks 3 and 5 are pooled as
// channels-first. A tensor of unknown rank is flattened. Tensors of rank 1
// and non-float32 tensors are refused.
//
// m is not modified.
func FindFeatureTensor(m *onnxpb.ModelProto, override string) (*FeatureChoice, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	ix := newGraphIndex(m)
	if override != "" {
		if !ix.exists(override) {
			return nil, fmt.Errorf("feature tensor %q is not in the model; candidates: %s", override, candidateList(ix.candidates()))
		}
		if _, c := ix.consts[override]; c {
			return nil, fmt.Errorf("feature tensor %q is a constant (a weight), not an activation; candidates: %s", override, candidateList(ix.candidates()))
		}
		return ix.choose(override, RuleOverride, nil, -1)
	}
	outs := m.Graph.GetOutput()
	if len(outs) == 0 {
		return nil, fmt.Errorf("model has no outputs")
	}
	out := outs[0].GetName()
	if !ix.exists(out) {
		return nil, fmt.Errorf("graph output %q is produced by no node", out)
	}
	t := out
	sawProb, sawPool := false, false
	if s := ix.shape(out); len(s) == 2 && (s[1] == 1000 || s[1] == 1001) {
		sawProb = true // ImageNet-1k class scores (1001: TF's background class)
	}
	for steps := 0; steps <= len(m.Graph.Node); steps++ {
		n := ix.node(t)
		if n == nil || !standardDomain(n) || len(n.Input) == 0 {
			break
		}
		in0 := n.Input[0]
		switch n.GetOpType() {
		case "Softmax", "LogSoftmax", "Sigmoid":
			sawProb = true
			t = in0
			continue
		case "Identity", "Flatten", "Reshape", "Squeeze", "Dropout":
			t = in0
			continue
		case "Add":
			if x, ok := ix.nonConstOperand(n); ok {
				t = x
				continue
			}
		case "Relu", "Clip":
			if sawProb {
				t = in0
				continue
			}
		case "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "AveragePool":
			if sawProb {
				sawPool = true
				t = in0
				continue
			}
		case "Gemm", "MatMul":
			if k, classes, ok := ix.denseWeightDims(n); ok {
				return ix.choose(in0, RuleClassifier, n, k, classes)
			}
		case "Conv":
			w := ix.consts[input(n, 1)]
			if sawProb && sawPool && w != nil && len(w.Dims) == 4 && w.Dims[2] == 1 && w.Dims[3] == 1 && attrI(n, "group", 1) == 1 {
				return ix.choose(in0, RuleConvHead, n, w.Dims[1], w.Dims[0])
			}
		}
		break
	}
	if sawProb {
		return nil, fmt.Errorf("model output %q looks like class scores (Softmax/Sigmoid or 1000 wide) but no Gemm/MatMul/1x1-Conv classifier with constant weights precedes it; choose the feature tensor with --feature-tensor, candidates: %s", out, candidateList(ix.candidates()))
	}
	return ix.choose(out, RuleOutput, nil, -1)
}

func standardDomain(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}

// nonConstOperand returns the data input of a two-input node whose other
// input is a constant.
func (ix *graphIndex) nonConstOperand(n *onnxpb.NodeProto) (string, bool) {
	if len(n.Input) != 2 {
		return "", false
	}
	_, c0 := ix.consts[n.Input[0]]
	_, c1 := ix.consts[n.Input[1]]
	switch {
	case c1 && !c0:
		return n.Input[0], true
	case c0 && !c1:
		return n.Input[1], true
	}
	return "", false
}

// denseWeightDims recognises a Gemm (transA=0) or MatMul with a constant 2-D
// weight and returns its input and output widths.
func (ix *graphIndex) denseWeightDims(n *onnxpb.NodeProto) (in, out int64, ok bool) {
	w := ix.consts[input(n, 1)]
	if w == nil || len(w.Dims) != 2 || w.Dims[0] <= 0 || w.Dims[1] <= 0 {
		return 0, 0, false
	}
	if _, c := ix.consts[input(n, 0)]; c {
		return 0, 0, false
	}
	if n.GetOpType() == "Gemm" {
		if attrI(n, "transA", 0) != 0 {
			return 0, 0, false
		}
		if attrI(n, "transB", 0) != 0 {
			return w.Dims[1], w.Dims[0], true
		}
	}
	return w.Dims[0], w.Dims[1], true
}

// choose builds the FeatureChoice for tensor t. classifier is the node the
// rule recognised (nil for none); k its input width when known (-1 else).
func (ix *graphIndex) choose(t, rule string, classifier *onnxpb.NodeProto, k int64, classes ...int64) (*FeatureChoice, error) {
	if et := ix.elemType(t); et != 0 && et != int32(onnxpb.TensorProto_FLOAT) {
		return nil, fmt.Errorf("feature tensor %q is %s: only float32 features are supported", t, ElemTypeName(et))
	}
	c := &FeatureChoice{Tensor: t, Rule: rule, Dim: -1, Shape: cloneDims(ix.shape(t))}
	if classifier != nil {
		c.Classifier = classifier.GetName()
		if c.Classifier == "" && len(classifier.Output) > 0 {
			c.Classifier = classifier.Output[0]
		}
		c.Classes = -1
		if len(classes) > 0 {
			c.Classes = classes[0]
		}
	}
	s := c.Shape
	switch {
	case rule == RuleConvHead:
		c.Pool, c.Layout, c.Dim = PoolGlobalAvgNCHW, "NCHW", k
		if len(s) >= 3 && s[1] >= 0 {
			c.Dim = s[1]
		}
	case s == nil && rule == RuleClassifier:
		// Gemm and MatMul with a 2-D weight take [N, K] inputs here.
		c.Dim = k
	case s == nil:
		c.Pool = PoolFlatten
	case len(s) == 2:
		c.Dim = s[1]
		if c.Dim < 0 {
			c.Dim = k
		}
	case len(s) == 4:
		c.Layout = ix.layoutOf(t)
		if c.Layout == "NHWC" {
			c.Pool, c.Dim = PoolGlobalAvgNHWC, s[3]
		} else {
			c.Pool, c.Dim = PoolGlobalAvgNCHW, s[1]
		}
	case len(s) == 3 || len(s) == 5:
		c.Pool, c.Dim = PoolGlobalAvgNCHW, s[1]
	default:
		return nil, fmt.Errorf("feature tensor %q has shape %s: expected [N,D] or [N,C,H,W]", t, formatDims(s))
	}
	if rule == RuleClassifier && len(s) > 2 {
		// A MatMul applied to a sequence or a map: keep the tensor but
		// reduce it like any other.
		c.Dim = s[1]
		if c.Pool == PoolGlobalAvgNHWC {
			c.Dim = s[3]
		}
	}
	live := ix.liveNodes([]string{t})
	for i, n := range ix.g.Node {
		if !live[i] {
			c.Removed = append(c.Removed, n.GetOpType()+" "+nodeLabel(n))
		}
	}
	return c, nil
}

func nodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.Output) > 0 {
		return "-> " + n.Output[0]
	}
	return "?"
}

// liveNodes marks the nodes needed to compute the given tensors.
func (ix *graphIndex) liveNodes(targets []string) []bool {
	live := make([]bool, len(ix.g.Node))
	stack := append([]string(nil), targets...)
	seen := map[string]bool{}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[t] {
			continue
		}
		seen[t] = true
		i, ok := ix.producer[t]
		if !ok || live[i] {
			continue
		}
		live[i] = true
		stack = append(stack, nodeReads(ix.g.Node[i])...)
	}
	return live
}

// layoutOf decides whether a rank-4 tensor is NCHW or NHWC (see
// FindFeatureTensor).
func (ix *graphIndex) layoutOf(t string) string {
	cur := t
	for steps := 0; steps < 256; steps++ {
		n := ix.node(cur)
		if n == nil {
			for _, v := range ix.realIn {
				if v.GetName() == cur {
					if d, _, ok := declaredShape(v); ok && len(d) == 4 && (d[3] == 1 || d[3] == 3) && d[1] != 1 && d[1] != 3 {
						return "NHWC"
					}
					return "NCHW"
				}
			}
			break
		}
		switch n.GetOpType() {
		case "Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
			"BatchNormalization", "InstanceNormalization", "LRN", "Resize", "Upsample", "SpaceToDepth", "DepthToSpace":
			return "NCHW"
		case "Transpose":
			perm, _ := attrIs(n, "perm")
			switch fmt.Sprint(perm) {
			case "[0 2 3 1]":
				return "NHWC"
			case "[0 3 1 2]":
				return "NCHW"
			}
			return ix.layoutByShape(t)
		case "Concat":
			switch attrI(n, "axis", 0) {
			case 1, -3:
				return "NCHW"
			case 3, -1:
				return "NHWC"
			}
		}
		next := ""
		for _, in := range n.Input {
			if _, c := ix.consts[in]; !c && in != "" {
				next = in
				break
			}
		}
		if next == "" || len(ix.shape(next)) != 4 {
			break
		}
		cur = next
	}
	return ix.layoutByShape(t)
}

func (ix *graphIndex) layoutByShape(t string) string {
	s := ix.shape(t)
	if len(s) == 4 && s[1] > 0 && s[1] == s[2] && s[3] > 0 && s[3] != s[1] {
		return "NHWC"
	}
	return "NCHW"
}

// candidates lists plausible feature tensors in graph order: inputs of
// Gemm/MatMul with constant weights, outputs of global pooling, Flatten
// outputs and their spatial 4-D inputs (VGG's last conv block, which the
// cut would pool), and the graph outputs.
func (ix *graphIndex) candidates() []Candidate {
	var out []Candidate
	seen := map[string]bool{}
	add := func(t, why string) {
		if seen[t] || t == "" {
			return
		}
		seen[t] = true
		op := ""
		if n := ix.node(t); n != nil {
			op = n.GetOpType()
		}
		c := Candidate{Tensor: t, Op: op, Shape: cloneDims(ix.shape(t)), Dim: -1, Why: why}
		switch s := c.Shape; {
		case len(s) == 2:
			c.Dim = s[1]
		case len(s) == 4 && ix.layoutOf(t) == "NHWC":
			c.Dim = s[3]
		case len(s) >= 3:
			c.Dim = s[1]
		}
		out = append(out, c)
	}
	for _, n := range ix.g.GetNode() {
		if !standardDomain(n) || len(n.Input) == 0 || len(n.Output) == 0 {
			continue
		}
		switch n.GetOpType() {
		case "Gemm", "MatMul":
			if _, _, ok := ix.denseWeightDims(n); ok {
				why := "input of " + n.GetOpType()
				if n.GetName() != "" {
					why += " " + n.GetName()
				}
				add(n.Input[0], why)
			}
		case "GlobalAveragePool", "GlobalMaxPool":
			add(n.Output[0], n.GetOpType()+" output")
		case "ReduceMean":
			if s := ix.shape(n.Output[0]); len(s) == 2 {
				add(n.Output[0], "global ReduceMean output")
			}
		case "Flatten":
			if s := ix.shape(n.Input[0]); len(s) == 4 && (s[2] != 1 || s[3] != 1) {
				add(n.Input[0], "feature map before Flatten, pooled")
			}
			add(n.Output[0], "Flatten output")
		}
	}
	for _, o := range ix.g.GetOutput() {
		if ix.exists(o.GetName()) {
			add(o.GetName(), "graph output")
		}
	}
	return out
}

func candidateList(cs []Candidate) string {
	if len(cs) == 0 {
		return "none found"
	}
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %s (%s)", c.Tensor, formatDims(c.Shape), c.Why))
	}
	const max = 20
	if len(parts) > max {
		parts = append(parts[:max], fmt.Sprintf("and %d more", len(cs)-max))
	}
	return strings.Join(parts, ", ")
}

// FeatureCandidates lists the tensors of m that could serve as feature
// tensors (see Inspect). m is not modified.
func FeatureCandidates(m *onnxpb.ModelProto) []Candidate {
	if m.GetGraph() == nil {
		return nil
	}
	return newGraphIndex(m).candidates()
}

// DenseNode is a fully connected layer of a pretrained model: where it sits
// in the graph, and its weights decoded so that training can start from them
// (--tune-layers).
type DenseNode struct {
	// Name is the Gemm/MatMul node's name (its output when unnamed).
	Name string `json:"name"`
	// Input is the tensor the layer reads, [N, In]; cutting the backbone
	// there makes this layer trainable.
	Input string `json:"input"`
	// Output is the tensor after the layer's bias and activation, [N, Out].
	Output string `json:"output"`
	// Layer holds the widths, the activation after the layer (dense.ActReLU
	// or dense.ActNone), the weight [Out, In] row-major with Gemm's alpha
	// folded in, and the bias [Out] with Gemm's beta folded in (zeros when
	// the node has no bias). The slices are fresh, owned by the caller.
	dense.Layer
}

// DenseChain returns, first to last, the run of dense layers that ends at
// featureTensor: walking backwards it skips Identity and Dropout, takes a
// Relu as the activation of the layer before it, and accepts Gemm (transA=0,
// constant 2-D weight, constant bias broadcastable to [Out]) or MatMul with
// a constant 2-D weight optionally followed by Add of a constant bias;
// Flatten and Reshape between layers are crossed. The walk stops at the
// first node that is none of these. For a VGG16 cut before fc8 it returns
// fc6 (25088->4096 relu) and fc7 (4096->4096 relu). An empty result is not
// an error. All weights are decoded; use DenseChainN to decode only the
// last few.
func DenseChain(m *onnxpb.ModelProto, featureTensor string) ([]DenseNode, error) {
	return DenseChainN(m, featureTensor, 0)
}

// DenseChainN is DenseChain limited to the last k layers (all when k <= 0);
// only their weights are decoded, which matters for VGG's 400 MB fc6.
func DenseChainN(m *onnxpb.ModelProto, featureTensor string, k int) ([]DenseNode, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	ix := newGraphIndex(m)
	if !ix.exists(featureTensor) {
		return nil, fmt.Errorf("tensor %q is not in the model", featureTensor)
	}
	type found struct {
		l          DenseNode
		w, b       *onnxpb.TensorProto
		transpose  bool
		alpha, bet float32
	}
	var rev []found
	t := featureTensor
	skip := func(t string, ops ...string) string {
		for steps := 0; steps < 64; steps++ {
			n := ix.node(t)
			if n == nil || len(n.Input) == 0 || !standardDomain(n) {
				return t
			}
			hit := false
			for _, op := range ops {
				hit = hit || n.GetOpType() == op
			}
			if !hit {
				return t
			}
			t = n.Input[0]
		}
		return t
	}
	for steps := 0; steps < len(ix.g.Node) && (k <= 0 || len(rev) < k); steps++ {
		t = skip(t, "Identity", "Dropout")
		out, act := t, dense.ActNone
		if n := ix.node(t); n != nil && n.GetOpType() == "Relu" && standardDomain(n) && len(n.Input) == 1 {
			act = dense.ActReLU
			t = skip(n.Input[0], "Identity", "Dropout")
		}
		n := ix.node(t)
		if n == nil || !standardDomain(n) {
			break
		}
		f := found{alpha: 1, bet: 1}
		var lin *onnxpb.NodeProto
		switch n.GetOpType() {
		case "Gemm":
			in, o, ok := ix.denseWeightDims(n)
			if !ok {
				break
			}
			lin = n
			f.l.In, f.l.Out = int(in), int(o)
			f.w = ix.consts[n.Input[1]]
			f.transpose = attrI(n, "transB", 0) == 0
			f.alpha, f.bet = attrF(n, "alpha", 1), attrF(n, "beta", 1)
			if c := input(n, 2); c != "" {
				if f.b = ix.consts[c]; f.b == nil {
					lin = nil
				}
			}
		case "Add", "MatMul":
			mm := n
			if n.GetOpType() == "Add" {
				x, ok := ix.nonConstOperand(n)
				if !ok {
					break
				}
				if other := n.Input[0]; other == x {
					f.b = ix.consts[n.Input[1]]
				} else {
					f.b = ix.consts[other]
				}
				mm = ix.node(x)
				if mm == nil || mm.GetOpType() != "MatMul" || !standardDomain(mm) {
					break
				}
			}
			in, o, ok := ix.denseWeightDims(mm)
			if !ok {
				break
			}
			lin = mm
			f.l.In, f.l.Out = int(in), int(o)
			f.w = ix.consts[mm.Input[1]]
			f.transpose = true
		}
		if lin == nil {
			break
		}
		if f.b != nil {
			nb, err := TensorElements(f.b.Dims)
			if err != nil || (nb != 1 && nb != int64(f.l.Out)) {
				break
			}
		}
		f.l.Name = nodeLabel(lin)
		if lin.GetName() == "" && len(lin.Output) > 0 {
			f.l.Name = lin.Output[0]
		}
		f.l.Input, f.l.Output, f.l.Act = lin.Input[0], out, act
		rev = append(rev, f)
		t = skip(lin.Input[0], "Flatten", "Reshape", "Identity", "Dropout")
	}
	layers := make([]DenseNode, len(rev))
	for i, f := range rev {
		l := f.l
		w, err := InitializerFloats(f.w)
		if err != nil {
			return nil, fmt.Errorf("dense layer %s: weight: %w", l.Name, err)
		}
		if f.transpose { // stored [In, Out]
			tw := make([]float32, len(w))
			for r := 0; r < l.In; r++ {
				row := w[r*l.Out : (r+1)*l.Out]
				for c, v := range row {
					tw[c*l.In+r] = v
				}
			}
			w = tw
		}
		if f.alpha != 1 {
			for j := range w {
				w[j] *= f.alpha
			}
		}
		l.W = w
		l.B = make([]float32, l.Out)
		if f.b != nil {
			b, err := InitializerFloats(f.b)
			if err != nil {
				return nil, fmt.Errorf("dense layer %s: bias: %w", l.Name, err)
			}
			for j := range l.B {
				l.B[j] = b[j%len(b)] * f.bet
			}
		}
		layers[len(rev)-1-i] = l
	}
	return layers, nil
}

// sortedKeys returns the keys of a string map in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
