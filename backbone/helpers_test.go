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
