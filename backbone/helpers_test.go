package backbone_test

import (
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

func ptr[T any](v T) *T { return &v }

// findAndCut detects m's feature tensor and cuts m there, failing t on
// either error.
func findAndCut(t testing.TB, m *onnxpb.ModelProto) (*backbone.FeatureChoice, *onnxpb.ModelProto) {
	t.Helper()
	c, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	cut, err := backbone.CutAtFeature(m, c)
	if err != nil {
		t.Fatal(err)
	}
	return c, cut
}

// floatOutput declares a float32 graph output of unknown shape named name:
// appended to a model's outputs, it exposes that intermediate tensor.
func floatOutput(name string) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{Name: ptr(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: ptr(int32(onnxpb.TensorProto_FLOAT))}}}}
}
