package export

import (
	"fmt"
	"math"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// Consumer limits that Build works around or reports. Every export goes
// through portable, so the graph that ONNX Runtime runs is the graph the
// other consumers read.
//
// OpenCV's DNN module as Debian and Ubuntu ship it (4.6) reads Clip only in
// its opset-6 form, with min and max as attributes: a Clip whose bounds are
// inputs (opset 11 and later, the form every exporter writes for ReLU6)
// stops the import with "ERROR during processing node with 3 inputs". It
// reads neither Min nor Max with a constant operand. What it does read is
// Relu and Sub, and
//
//	Clip(x, 0, hi) = r − Relu(r − hi),   r = Relu(x)
//
// holds bit for bit in float32 whenever r − hi is exact: for r ≤ 2·hi
// always (Sterbenz), above that while hi is a multiple of ulp(r), which for
// ReLU6 (hi = 6) means every r < 2^25. Then r − (r − hi) = hi exactly, and
// below hi the second Relu gives 0 and r comes back unchanged; so ONNX
// Runtime's results do not change (TestPortableClipExact). The
// first Relu keeps the convolution in front of it fusable (Conv+Relu), and
// the two extra element-wise nodes are cheap next to the convolutions;
// BenchmarkPortableClip measures both forms in one run.

// portable rewrites, in g, the operator forms listed above into forms every
// consumer reads, and returns the number of nodes rewritten. Forms it
// cannot rewrite are left as they are (Limits reports them). Nodes are
// replaced, never modified: g may share its nodes with the caller's model
// (Build's shallow copy).
func portable(b *backbone.Builder, g *onnxpb.GraphProto) (rewritten int) {
	scalar := constScalars(g)
	bounds := map[float32]string{} // one initializer per bound value
	var out []*onnxpb.NodeProto
	for _, n := range g.Node {
		lo, hi, ok := clipBounds(n, scalar)
		if !ok || lo != 0 || !(hi > 0) {
			out = append(out, n)
			continue
		}
		base := n.GetName()
		if base == "" {
			base = n.Output[0]
		}
		mk := func(op string, in []string, outName, suffix string) *onnxpb.NodeProto {
			return &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: []string{outName}, Name: proto.String(b.Unique(base + suffix))}
		}
		if math.IsInf(float64(hi), 1) {
			out = append(out, mk("Relu", []string{n.Input[0]}, n.Output[0], "/relu"))
			rewritten++
			continue
		}
		r := b.Unique(base + "/relu")
		excess := b.Unique(base + "/excess")
		over := b.Unique(base + "/over")
		bound := bounds[hi]
		if bound == "" {
			bound = b.Initializer(fmt.Sprintf("headtune/portable/clip_max_%g", hi), nil, []float32{hi})
			bounds[hi] = bound
		}
		out = append(out,
			mk("Relu", []string{n.Input[0]}, r, "/relu"),
			mk("Sub", []string{r, bound}, excess, "/sub_max"),
			mk("Relu", []string{excess}, over, "/relu_excess"),
			mk("Sub", []string{r, over}, n.Output[0], "/sub_excess"),
		)
		rewritten++
	}
	// b.Initializer added initializers only; the node list is rebuilt in
	// the same order.
	g.Node = out
	return rewritten
}

// clipBounds returns the constant bounds of a standard Clip node with
// bounds as inputs (an absent max is +Inf, an absent min -Inf); ok is false
// for any other node, a Clip without bound inputs (which every consumer
// reads) or one whose bounds are computed.
func clipBounds(n *onnxpb.NodeProto, scalar func(string) (float32, bool)) (lo, hi float32, ok bool) {
	if n.GetOpType() != "Clip" || !isStandard(n) || len(n.Input) < 2 {
		return 0, 0, false
	}
	in := func(i int) string {
		if i < len(n.Input) {
			return n.Input[i]
		}
		return ""
	}
	if in(1) == "" && in(2) == "" {
		return 0, 0, false
	}
	lo, hi = float32(math.Inf(-1)), float32(math.Inf(1))
	var okLo, okHi bool = true, true
	if in(1) != "" {
		lo, okLo = scalar(in(1))
	}
	if in(2) != "" {
		hi, okHi = scalar(in(2))
	}
	return lo, hi, okLo && okHi
}

// Limits returns one line for each consumer that cannot run m, saying why
// (nil when every consumer headtune tests reads it). Build already rewrote
// what it could; what is left are forms with no equivalent a consumer
// reads, such as a Clip with computed bounds.
func Limits(m *onnxpb.ModelProto) []string {
	g := m.GetGraph()
	if g == nil {
		return nil
	}
	scalar := constScalars(g)
	forms := map[string]int{}
	for _, n := range g.Node {
		if n.GetOpType() != "Clip" || !isStandard(n) || len(n.Input) < 2 {
			continue
		}
		lo, hi, ok := clipBounds(n, scalar)
		switch {
		case !ok:
			forms["Clip with computed bounds"]++
		case lo != 0 || !(hi > 0):
			forms[fmt.Sprintf("Clip with bounds [%g, %g]", lo, hi)]++
		}
	}
	var notes []string
	for _, form := range sortedKeys(forms) {
		notes = append(notes, fmt.Sprintf("OpenCV DNN 4.6 cannot read this export: %d %s node(s) (it reads Clip only with attribute bounds, which opset 11 and later do not allow)", forms[form], form))
	}
	return notes
}

// constScalars returns a lookup of float32 scalar constants (initializers
// and Constant nodes) of g.
func constScalars(g *onnxpb.GraphProto) func(string) (float32, bool) {
	consts := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		consts[t.GetName()] = t
	}
	for _, n := range g.Node {
		if n.GetOpType() == "Constant" && isStandard(n) && len(n.Output) == 1 {
			for _, a := range n.Attribute {
				if a.GetName() == "value" && a.T != nil {
					consts[n.Output[0]] = a.T
				}
			}
		}
	}
	return func(name string) (float32, bool) {
		t := consts[name]
		if t == nil || t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			return 0, false
		}
		n, err := backbone.TensorElements(t.Dims)
		if err != nil || n != 1 {
			return 0, false
		}
		v, err := backbone.InitializerFloats(t)
		if err != nil || len(v) != 1 {
			return 0, false
		}
		return v[0], true
	}
}

func isStandard(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
