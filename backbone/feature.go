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
	// Kernel is the kernel size of a convolutional classifier (RuleConvHead):
	// 1 for SqueezeNet's 1x1, 3 for a mini-Xception's 3x3; 0 otherwise.
	Kernel int64 `json:"kernel,omitempty"`
	// Dequantize is set when Tensor is int8/uint8: the cut appends a
	// DequantizeLinear with this scale and zero point, so the features are
	// float32. nil for float tensors.
	Dequantize *QuantParams `json:"dequantize,omitempty"`
	// Removed lists the nodes ("OpType name") that the cut drops because
	// the feature tensor does not depend on them: the classifier, and the
	// branches behind any other outputs. In graph order.
	Removed []string `json:"removed,omitempty"`
}

// QuantParams names the scale and zero-point tensors that dequantize a
// quantized tensor (DequantizeLinear's second and third inputs; ZeroPoint
// "" when absent).
type QuantParams struct {
	Scale     string `json:"scale"`
	ZeroPoint string `json:"zero_point,omitempty"`
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
// lists the candidates. Naming the tensor detection would choose gives the
// detected choice (its pooling, dequantization and classifier) with Rule
// RuleOverride. Otherwise the rules are, for each graph output in turn
// (the first output whose walk meets a classifier wins), walking backwards
// from the output (each step follows the node's data input):
//
//  1. Softmax, LogSoftmax, Sigmoid and their QLinear forms (which mark the
//     output as class scores), Identity, Flatten, Reshape, Squeeze,
//     Unsqueeze, Transpose, Cast, Dropout, QuantizeLinear,
//     DequantizeLinear, and Add whose other input is a constant (a bias)
//     are passed through.
//  2. Gemm (transA=0) or MatMul whose weight is a constant (initializer,
//     Constant node, or DequantizeLinear of one) is the classifier: its data
//     input is the feature tensor, and D is the weight's input size (Gemm:
//     dims[1] if transB else dims[0]; MatMul: dims[0]). QLinearMatMul and
//     com.microsoft QGemm with a constant weight are classifiers too: their
//     quantized input, dequantized with the node's own input scale and zero
//     point, is the feature tensor (FeatureChoice.Dequantize).
//  3. After a Softmax/LogSoftmax/Sigmoid only, Relu, Clip and global
//     pooling (GlobalAveragePool, GlobalMaxPool, ReduceMean, AveragePool,
//     QLinearGlobalAveragePool, QLinearAveragePool) are also passed
//     through, and a Conv (or QLinearConv) with constant weights and
//     group=1 is a convolutional classifier when it is 1x1 and reached
//     through a pooling (SqueezeNet) or reads a 1x1 map (Keras MobileNet's
//     Reshape-Conv-Reshape tail), or is kxk and reached through a global
//     pooling (mini-Xception): its input, globally average pooled, is the
//     feature tensor. A rank-2 first output of width 1000 or 1001
//     (ImageNet-1k logits, with TensorFlow's background class) counts as
//     class scores too, so torchvision's SqueezeNet (no Softmax) is
//     recognised.
//  4. Any other node ends the walk. If no output leads to a classifier the
//     model is taken as a feature extractor and its first output is the
//     feature tensor; but a first output that went through Softmax/Sigmoid
//     without a recognisable classifier is an error (pass an override).
//
// A chosen tensor of rank 4 is globally average pooled to [N, C]: NHWC when
// it comes (through element-wise ops) from a Transpose with perm
// [0,2,3,1] or an NHWC image input, NCHW when it comes from Conv, pooling,
// normalisation or a Transpose with perm [0,3,1,2], and otherwise from its
// shape ([N,a,a,c] with c != a is NHWC). Ranks 3 and 5 are pooled as
// channels-first. Float16 tensors are accepted (CutAtFeature widens the
// model to float32); an int8/uint8 tensor is dequantized with the scale and
// zero point its producer or consumers use, and refused when there are
// none. Tensors of rank 1 or unknown rank, tensors whose width cannot be
// inferred, and other element types are refused: inspect, models add and
// extract all use this function, so they accept and refuse the same
// tensors.
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
		if auto, err := ix.detect(); err == nil && auto.Tensor == override {
			auto.Rule = RuleOverride
			return auto, nil
		}
		return ix.choose(override, RuleOverride, nil, -1, -1, nil)
	}
	return ix.detect()
}

// detect applies FindFeatureTensor's rules to every output in turn.
func (ix *graphIndex) detect() (*FeatureChoice, error) {
	outs := ix.g.GetOutput()
	if len(outs) == 0 {
		return nil, fmt.Errorf("model has no outputs")
	}
	var firstErr error
	firstProb := false
	for i, o := range outs {
		name := o.GetName()
		if !ix.exists(name) {
			if i == 0 {
				return nil, fmt.Errorf("graph output %q is produced by no node", name)
			}
			continue
		}
		c, sawProb, err := ix.walk(name, i == 0)
		switch {
		case c != nil && i > 0 && ix.alias(outs[0].GetName()) == ix.alias(c.Tensor):
			// The first output is the classifier's input already (a feature
			// extractor that also outputs its own classifier's scores):
			// keep the features under the name the model gives them.
			f, err := ix.choose(outs[0].GetName(), RuleOutput, nil, -1, -1, nil)
			if err != nil {
				return nil, err
			}
			f.Classifier, f.Classes = c.Classifier, c.Classes
			return f, nil
		case c != nil:
			return c, nil
		case err != nil && firstErr == nil:
			firstErr = err
		}
		if i == 0 {
			firstProb = sawProb
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := outs[0].GetName()
	if !firstProb && ix.looksLikeDetector() {
		if t := ix.detectorFeature(); t != "" {
			return ix.choose(t, RuleDetector, nil, -1, -1, nil)
		}
	}
	if firstProb {
		return nil, fmt.Errorf("model output %q looks like class scores (Softmax/Sigmoid or 1000 wide) but no Gemm/MatMul/Conv classifier with constant weights precedes it; choose the feature tensor with --feature-tensor, candidates: %s", out, candidateList(ix.candidates()))
	}
	return ix.choose(out, RuleOutput, nil, -1, -1, nil)
}

// walk follows output out backwards to a classifier (rules 1-3). It
// returns the choice when it found one, and whether the output looked like
// class scores. first says out is the first graph output (where a width of
// 1000 marks ImageNet logits).
func (ix *graphIndex) walk(out string, first bool) (*FeatureChoice, bool, error) {
	t := out
	sawProb, sawPool := false, false
	if s := ix.shape(out); first && len(s) == 2 && (s[1] == 1000 || s[1] == 1001) {
		sawProb = true // ImageNet-1k class scores (1001: TF's background class)
	}
	for steps := 0; steps <= len(ix.g.Node); steps++ {
		n := ix.node(t)
		if n == nil || !(standardDomain(n) || n.GetDomain() == msDomain) || len(n.Input) == 0 {
			break
		}
		in0 := n.Input[0]
		switch n.GetOpType() {
		case "Softmax", "LogSoftmax", "Sigmoid", "QLinearSoftmax", "QLinearSigmoid":
			sawProb = true
			t = in0
			continue
		case "Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Dropout", "Transpose", "Cast", "QuantizeLinear", "DequantizeLinear":
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
		case "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "AveragePool", "QLinearGlobalAveragePool", "QLinearAveragePool":
			if sawProb {
				sawPool = true
				t = in0
				continue
			}
		case "Gemm", "MatMul", "QLinearMatMul", "QGemm":
			if k, classes, ok := ix.denseWeightDims(n); ok {
				c, err := ix.choose(in0, RuleClassifier, n, k, classes, quantInput(n))
				return c, sawProb, err
			}
		case "Conv", "QLinearConv":
			w := ix.constDims(input(n, weightInput(n)))
			if !sawProb || len(w) != 4 || attrI(n, "group", 1) != 1 || w[2] != w[3] {
				break
			}
			s := ix.shape(in0)
			onePixel := len(s) == 4 && s[2] == 1 && s[3] == 1
			if (w[2] == 1 && (sawPool || onePixel)) || (w[2] > 1 && sawPool) {
				c, err := ix.choose(in0, RuleConvHead, n, w[1], w[0], quantInput(n))
				if c != nil {
					c.Kernel = w[2]
				}
				return c, sawProb, err
			}
		}
		break
	}
	return nil, sawProb, nil
}

// alias follows Identity nodes back to the tensor t copies.
func (ix *graphIndex) alias(t string) string {
	for steps := 0; steps < 64; steps++ {
		n := ix.node(t)
		if n == nil || n.GetOpType() != "Identity" || !standardDomain(n) || len(n.Input) == 0 {
			break
		}
		t = n.Input[0]
	}
	return t
}

// weightInput is the input index of the weight of a Conv, Gemm or MatMul
// (1) or of its quantized form (3).
func weightInput(n *onnxpb.NodeProto) int {
	switch n.GetOpType() {
	case "QLinearConv", "QLinearMatMul", "QGemm":
		return 3
	}
	return 1
}

// quantInput returns the scale and zero point of a quantized operator's
// first input (nil for float operators).
func quantInput(n *onnxpb.NodeProto) *QuantParams {
	if weightInput(n) != 3 {
		return nil
	}
	return &QuantParams{Scale: input(n, 1), ZeroPoint: input(n, 2)}
}

// constDims returns the dims of a constant, or of a constant that a
// DequantizeLinear turns into float (QDQ weights); nil otherwise.
func (ix *graphIndex) constDims(t string) []int64 {
	if c, ok := ix.consts[t]; ok {
		return c.Dims
	}
	if n := ix.node(t); n != nil && n.GetOpType() == "DequantizeLinear" && standardDomain(n) {
		if c, ok := ix.consts[input(n, 0)]; ok {
			return c.Dims
		}
	}
	return nil
}

func (ix *graphIndex) isConstLike(t string) bool {
	if _, ok := ix.consts[t]; ok {
		return true
	}
	return ix.constDims(t) != nil
}

// quantParams finds the scale and zero point of quantized tensor t: those
// of the operator that produced it (through layout operators, which keep
// them), else those a DequantizeLinear or QLinear operator reading it uses.
func (ix *graphIndex) quantParams(t string) *QuantParams {
	for steps := 0; steps < 64; steps++ {
		n := ix.node(t)
		if n == nil {
			break
		}
		if zi, ok := quantOutputZeroPoint(n); ok {
			return &QuantParams{Scale: input(n, zi-1), ZeroPoint: input(n, zi)}
		}
		switch n.GetOpType() {
		case "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity":
			t = input(n, 0)
			continue
		}
		break
	}
	for _, i := range ix.consumers[t] {
		n := ix.g.Node[i]
		if input(n, 0) != t {
			continue
		}
		if n.GetOpType() == "DequantizeLinear" || quantInput(n) != nil {
			return &QuantParams{Scale: input(n, 1), ZeroPoint: input(n, 2)}
		}
	}
	return nil
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
	case c1 && !c0, !c0 && !c1 && ix.isConstLike(n.Input[1]) && !ix.isConstLike(n.Input[0]):
		return n.Input[0], true
	case c0 && !c1, !c0 && !c1 && ix.isConstLike(n.Input[0]) && !ix.isConstLike(n.Input[1]):
		return n.Input[1], true
	}
	return "", false
}

// denseWeightDims recognises a Gemm (transA=0) or MatMul with a constant 2-D
// weight (or a DequantizeLinear of one), or their quantized forms
// QLinearMatMul and QGemm, and returns its input and output widths.
func (ix *graphIndex) denseWeightDims(n *onnxpb.NodeProto) (in, out int64, ok bool) {
	w := ix.constDims(input(n, weightInput(n)))
	if len(w) != 2 || w[0] <= 0 || w[1] <= 0 {
		return 0, 0, false
	}
	if ix.isConstLike(input(n, 0)) {
		return 0, 0, false
	}
	if op := n.GetOpType(); op == "Gemm" || op == "QGemm" {
		if attrI(n, "transA", 0) != 0 {
			return 0, 0, false
		}
		if attrI(n, "transB", 0) != 0 {
			return w[1], w[0], true
		}
	}
	return w[0], w[1], true
}

// choose builds the FeatureChoice for tensor t. classifier is the node the
// rule recognised (nil for none); k its input width and classes its output
// width when known (-1 else); q the dequantization of a quantized t when
// the classifier says it (nil: found from the graph when t is quantized).
func (ix *graphIndex) choose(t, rule string, classifier *onnxpb.NodeProto, k, classes int64, q *QuantParams) (*FeatureChoice, error) {
	switch et := ix.elemType(t); onnxpb.TensorProto_DataType(et) {
	case 0, onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16:
		q = nil
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8:
		if q == nil {
			q = ix.quantParams(t)
		}
		if q == nil || q.Scale == "" {
			return nil, fmt.Errorf("feature tensor %q is %s and no scale dequantizes it: choose a float tensor with --feature-tensor, candidates: %s", t, ElemTypeName(et), candidateList(ix.candidates()))
		}
	default:
		return nil, fmt.Errorf("feature tensor %q is %s: only float features are supported", t, ElemTypeName(et))
	}
	c := &FeatureChoice{Tensor: t, Rule: rule, Dim: -1, Shape: cloneDims(ix.shape(t)), Dequantize: q}
	if classifier != nil {
		c.Classifier = classifier.GetName()
		if c.Classifier == "" && len(classifier.Output) > 0 {
			c.Classifier = classifier.Output[0]
		}
		c.Classes = classes
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
	if c.Dim <= 0 {
		return nil, fmt.Errorf("cannot tell the size of feature tensor %q (shape %s): the file does not record it and headtune cannot infer it through the operators before it; name another with --feature-tensor, candidates: %s", t, formatDims(s), candidateList(ix.candidates()))
	}
	live := ix.liveNodes(c.reads())
	for i, n := range ix.g.Node {
		if !live[i] {
			c.Removed = append(c.Removed, n.GetOpType()+" "+nodeLabel(n))
		}
	}
	return c, nil
}

// reads lists the tensors the cut needs: the feature tensor and its
// dequantization's scale and zero point.
func (c *FeatureChoice) reads() []string {
	r := []string{c.Tensor}
	if q := c.Dequantize; q != nil {
		r = append(r, q.Scale)
		if q.ZeroPoint != "" {
			r = append(r, q.ZeroPoint)
		}
	}
	return r
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
		case "Conv", "QLinearConv", "QLinearAveragePool", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
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
		if !(standardDomain(n) || n.GetDomain() == msDomain) || len(n.Input) == 0 || len(n.Output) == 0 {
			continue
		}
		if n.GetDomain() == msDomain {
			switch n.GetOpType() {
			case "QGemm":
				if _, _, ok := ix.denseWeightDims(n); ok {
					add(n.Input[0], "input of QGemm "+n.GetName())
				}
			case "QLinearGlobalAveragePool":
				add(n.Output[0], "QLinearGlobalAveragePool output")
			}
			continue
		}
		switch n.GetOpType() {
		case "Gemm", "MatMul", "QLinearMatMul":
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
			if !ok || ix.consts[n.Input[1]] == nil { // quantized weights are not tuned
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
			if !ok || ix.consts[mm.Input[1]] == nil {
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
