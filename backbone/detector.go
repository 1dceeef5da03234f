package backbone

import (
	"github.com/headtune/headtune/backbone/onnxpb"
)

// RuleDetector: the model is an object detector (YOLO and the like) with
// no classifier to walk back from; the feature tensor is the deepest
// backbone feature map before the graph branches into detection heads.
const RuleDetector = "detector"

// looksLikeDetector says whether FindFeatureTensor should look for a
// detector's trunk instead of taking the first output as the features:
// either every float output has rank 3 or more (several raw head grids,
// or decoded boxes and scores), with at least two outputs, or the single
// output is a spatial grid straight out of a 1x1 Conv (YOLOv2's one head).
// A model with any [N, D] float output is a feature extractor or a
// classifier and never a detector here.
func (ix *graphIndex) looksLikeDetector() bool {
	outs := ix.g.GetOutput()
	float := 0
	for _, o := range outs {
		name := o.GetName()
		if et := ix.elemType(name); et != 0 && et != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		float++
		s := ix.shape(name)
		if len(s) < 3 {
			return false
		}
	}
	if float == 0 {
		return false
	}
	if len(outs) >= 2 {
		return true
	}
	out := outs[0].GetName()
	s := ix.shape(out)
	if len(s) != 4 || s[2]*s[3] <= 1 {
		return false
	}
	n := ix.node(out)
	for n != nil && n.GetOpType() == "Identity" && len(n.Input) > 0 {
		n = ix.node(n.Input[0])
	}
	if n == nil || n.GetOpType() != "Conv" || !standardDomain(n) {
		return false
	}
	w := ix.consts[input(n, 1)]
	return w != nil && len(w.Dims) == 4 && w.Dims[2] == 1 && w.Dims[3] == 1
}

// detectorFeature finds a detector's feature map. Among the float rank-4
// tensors that every detection head (a Conv followed by no other Conv)
// depends on and that still feed a Conv (so not a head's own output or
// its post-processing), it takes those of
// the smallest spatial size, leaves out lateral maps whose only readers
// upsample them (the 1x1 Conv before a YOLOv3/v4 neck's upsampling), and
// returns the last in graph order: for YOLOv3 the 13x13x512 map (at 416)
// where the first head and the upsampling branch part, for YOLOv2 the
// input of its single 1x1 head Conv. "" when there is none.
func (ix *graphIndex) detectorFeature() string {
	nodes := ix.g.GetNode()
	// convAfter: whether a Conv reads the tensor directly or further down.
	// ONNX keeps nodes in topological order, so backward passes suffice.
	convAfter := map[string]bool{}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		c := n.GetOpType() == "Conv"
		for _, o := range n.Output {
			c = c || convAfter[o]
		}
		for _, in := range nodeReads(n) {
			convAfter[in] = convAfter[in] || c
		}
	}
	// The heads are the last convolutions: Convs after which no Conv
	// follows. Counting heads rather than graph outputs finds the same
	// branch point whether the heads are separate outputs or decoded and
	// concatenated into boxes and scores.
	headBit := map[int]uint64{}
	for i, n := range nodes {
		if n.GetOpType() != "Conv" || len(n.Output) == 0 || convAfter[n.Output[0]] {
			continue
		}
		if len(headBit) == 64 {
			return ""
		}
		headBit[i] = 1 << len(headBit)
	}
	if len(headBit) == 0 {
		return ""
	}
	all := uint64(1)<<len(headBit) - 1
	if len(headBit) == 64 {
		all = ^uint64(0)
	}
	reach := map[string]uint64{} // heads each tensor leads to
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		r := headBit[i]
		for _, o := range n.Output {
			r |= reach[o]
		}
		for _, in := range nodeReads(n) {
			reach[in] |= r
		}
	}
	best, bestArea := "", int64(-1)
	for _, n := range nodes {
		if !standardDomain(n) || len(n.Output) == 0 || n.GetOpType() == "Identity" {
			continue
		}
		t := n.Output[0]
		if reach[t] != all || !convAfter[t] {
			continue
		}
		if et := ix.elemType(t); et != 0 && et != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		s := ix.shape(t)
		if len(s) != 4 {
			continue
		}
		h, w := s[2], s[3]
		if ix.layoutOf(t) == "NHWC" {
			h, w = s[1], s[2]
		}
		if h <= 0 || w <= 0 {
			continue
		}
		if ix.onlyUpsampled(t) {
			continue
		}
		if a := h * w; bestArea < 0 || a <= bestArea {
			best, bestArea = t, a
		}
	}
	return best
}

// onlyUpsampled reports whether t only ever reaches an upsampling
// (Resize, Upsample) before any Conv: every reader is an upsampling or a
// node other than Conv whose outputs are themselves only upsampled (the
// activation between a lateral 1x1 Conv and its upsampling).
func (ix *graphIndex) onlyUpsampled(t string) bool {
	return ix.lateral(t, map[string]bool{}, 0)
}

func (ix *graphIndex) lateral(t string, memo map[string]bool, depth int) bool {
	if v, ok := memo[t]; ok {
		return v
	}
	memo[t] = false // cycles and deep chains count as not lateral
	readers := ix.consumers[t]
	if len(readers) == 0 || depth > 16 {
		return false
	}
	for _, i := range readers {
		n := ix.g.Node[i]
		switch n.GetOpType() {
		case "Resize", "Upsample":
			continue
		case "Conv", "ConvTranspose":
			return false
		}
		for _, o := range n.Output {
			if !ix.lateral(o, memo, depth+1) {
				return false
			}
		}
	}
	memo[t] = true
	return true
}
