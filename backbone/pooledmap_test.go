package backbone_test

import (
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
)

// TestPooledMap: the map whose global average is the feature vector is
// found behind GlobalAveragePool + Reshape/Flatten and for a pooled cut,
// and the conv run before it is what --tune-layers may tune; features
// after dense layers or NHWC maps have none.
func TestPooledMap(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		convs int // straight run before the map; -1: no pooled map
	}{
		{"mobilenet", 3}, // stem conv+bn, depthwise, pointwise+bn, each ReLU6
		{"features4d", 2},
		{"resnet", 0},   // the map is a residual Add
		{"yolo-cls", 0}, // SiLU is not a supported activation
		{"vgg", -1},
		{"features4d-nhwc", -1},
	} {
		m := testmodels.Model(tc.kind, 16)
		fc, err := backbone.FindFeatureTensor(m, "")
		if err != nil {
			t.Fatal(err)
		}
		mp := backbone.PooledMap(m, fc)
		if (mp == "") != (tc.convs < 0) {
			t.Errorf("%s: pooled map %q for feature %s (pool %q)", tc.kind, mp, fc.Tensor, fc.Pool)
			continue
		}
		if mp == "" {
			continue
		}
		chain, err := backbone.ConvChainN(m, mp, 0)
		if err != nil || len(chain) != tc.convs {
			t.Errorf("%s: %d convolutions before %s, want %d (%v)", tc.kind, len(chain), mp, tc.convs, err)
		}
	}
}
