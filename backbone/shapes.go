package backbone

import "github.com/headtune/headtune/backbone/onnxpb"

// InferShapes returns the statically known shape of every tensor of m that
// the graph declares or that headtune's shape inference can derive (the
// inference feature detection uses): dims of -1 are unknown (usually the
// batch axis), a missing entry means the rank is unknown. The map and its
// slices are fresh and owned by the caller; m is not modified.
func InferShapes(m *onnxpb.ModelProto) map[string][]int64 {
	if m.GetGraph() == nil {
		return map[string][]int64{}
	}
	return newGraphIndex(m).shapes
}
