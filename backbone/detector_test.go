package backbone_test

import (
	"fmt"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// detGraph builds small detector-shaped graphs: convolutions on a [N, 3,
// 32, 32] input named "x".
type detGraph struct {
	b   *backbone.Builder
	seq int
}

func newDetGraph(nhwc bool) (*detGraph, string) {
	g := &detGraph{b: backbone.NewBuilder("det")}
	if nhwc {
		in := g.b.Input("x", -1, 32, 32, 3)
		return g, g.b.Op("Transpose", "to_nchw", []string{in}, backbone.AttrInts("perm", 0, 3, 1, 2))
	}
	return g, g.b.Input("x", -1, 3, 32, 32)
}

// conv appends Conv(+LeakyRelu unless linear) with cin->cout channels.
func (g *detGraph) conv(x string, cin, cout, k, stride int, linear bool) string {
	g.seq++
	w := make([]float32, cout*cin*k*k)
	wn := g.b.Initializer(fmt.Sprintf("w%d", g.seq), []int64{int64(cout), int64(cin), int64(k), int64(k)}, w)
	p := int64(k / 2)
	y := g.b.Op("Conv", fmt.Sprintf("conv%d", g.seq), []string{x, wn},
		backbone.AttrInts("kernel_shape", int64(k), int64(k)), backbone.AttrInts("strides", int64(stride), int64(stride)),
		backbone.AttrInts("pads", p, p, p, p))
	if linear {
		return y
	}
	return g.b.Op("LeakyRelu", fmt.Sprintf("act%d", g.seq), []string{y}, backbone.AttrFloat("alpha", 0.1))
}

func (g *detGraph) upsample(x string, c, h, w int) string {
	sc := g.b.Initializer("scales", []int64{4}, []float32{1, 1, 2, 2})
	y := g.b.Op("Resize", "up", []string{x, "", sc}, backbone.AttrString("mode", "nearest"))
	// Declared, as exporters do, so the map counts at its real size.
	g.b.Graph.ValueInfo = append(g.b.Graph.ValueInfo, backbone.ValueInfo(y, onnxpb.TensorProto_FLOAT, []int64{-1, int64(c), int64(2 * h), int64(2 * w)}))
	return y
}

// yolov3Like is a trunk down to 4x4, a first head there, a lateral 1x1
// conv upsampled to 8x8 and joined with the 8x8 trunk map, a second head.
// With merge the heads are flattened and concatenated into decoded-box
// style rank-3 outputs (as yolov3-12 and tiny-yolov3-11 do before NMS);
// with nhwc the input and the head outputs are NHWC (tf2onnx, yolov4).
func yolov3Like(merge, nhwc bool) (*onnxpb.ModelProto, string) {
	g, x := newDetGraph(nhwc)
	c1 := g.conv(x, 3, 8, 3, 2, false)     // 16x16
	c2 := g.conv(c1, 8, 16, 3, 2, false)   // 8x8
	c3 := g.conv(c2, 16, 32, 3, 2, false)  // 4x4
	c4 := g.conv(c3, 32, 16, 1, 1, false)  // 4x4, the branch point
	h1a := g.conv(c4, 16, 32, 3, 1, false) // head 1
	h1 := g.conv(h1a, 32, 18, 1, 1, true)
	lat := g.conv(c4, 16, 8, 1, 1, false) // lateral, only upsampled
	up := g.upsample(lat, 8, 4, 4)
	cat := g.b.Op("Concat", "cat", []string{up, c2}, backbone.AttrInt("axis", 1))
	h2a := g.conv(cat, 24, 16, 3, 1, false)
	h2 := g.conv(h2a, 16, 18, 1, 1, true)
	heads := []string{h1, h2}
	if nhwc {
		for i, h := range heads {
			heads[i] = g.b.Op("Transpose", "to_nhwc", []string{h}, backbone.AttrInts("perm", 0, 2, 3, 1))
		}
	}
	if merge {
		shape := g.b.Int64Initializer("shape", []int64{3}, []int64{0, -1, 6})
		var flat []string
		for _, h := range heads {
			flat = append(flat, g.b.Op("Reshape", "flat", []string{h, shape}))
		}
		all := g.b.Op("Concat", "boxes_scores", flat, backbone.AttrInt("axis", 1))
		sl := func(name string, a, b int64) {
			st := g.b.Int64Initializer("st", []int64{1}, []int64{a})
			en := g.b.Int64Initializer("en", []int64{1}, []int64{b})
			ax := g.b.Int64Initializer("ax", []int64{1}, []int64{2})
			g.b.Node("Slice", []string{all, st, en, ax}, []string{name})
			g.b.Output(name, -1, -1, b-a)
		}
		sl("boxes", 0, 4)
		sl("scores", 4, 6)
	} else {
		for i, h := range heads {
			name := fmt.Sprintf("head%d", i)
			g.b.Node("Identity", []string{h}, []string{name})
			g.b.Output(name, -1, -1, -1, -1)
		}
	}
	return g.b.Model(0), c4
}

func TestDetectorFeature(t *testing.T) {
	for _, tc := range []struct {
		name        string
		merge, nhwc bool
	}{
		{"raw heads (darknet import, yolov4 zoo)", false, false},
		{"merged boxes and scores (yolov3-12, tiny-yolov3-11)", true, false},
		{"NHWC input and heads (tf2onnx yolov4)", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, want := yolov3Like(tc.merge, tc.nhwc)
			fc, err := backbone.FindFeatureTensor(m, "")
			if err != nil {
				t.Fatal(err)
			}
			if fc.Tensor != want || fc.Rule != backbone.RuleDetector || fc.Dim != 16 || fc.Pool != backbone.PoolGlobalAvgNCHW {
				t.Fatalf("got %s rule %s dim %d pool %s, want %s (detector, 16, NCHW pooling)", fc.Tensor, fc.Rule, fc.Dim, fc.Pool, want)
			}
			cut, err := backbone.CutAtFeature(m, fc)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(cut.Graph.Node); n >= len(m.Graph.Node) {
				t.Errorf("cut kept %d of %d nodes: the heads should be gone", n, len(m.Graph.Node))
			}
		})
	}
}

// yolov2Like has one head: a 1x1 linear Conv producing a 4x4 grid.
func TestDetectorFeatureSingleGrid(t *testing.T) {
	g, x := newDetGraph(false)
	c1 := g.conv(x, 3, 8, 3, 2, false)
	c2 := g.conv(c1, 8, 16, 3, 2, false)
	c3 := g.conv(c2, 16, 32, 3, 2, false)
	c4 := g.conv(c3, 32, 64, 3, 1, false)
	grid := g.conv(c4, 64, 25, 1, 1, true)
	g.b.Output(grid, -1, 25, 4, 4)
	fc, err := backbone.FindFeatureTensor(g.b.Model(0), "")
	if err != nil {
		t.Fatal(err)
	}
	if fc.Tensor != c4 || fc.Rule != backbone.RuleDetector || fc.Dim != 64 {
		t.Fatalf("got %s (%s, %d-d), want the head's input %s", fc.Tensor, fc.Rule, fc.Dim, c4)
	}

	// The same graph ending in an activation is a convolutional feature
	// extractor: its output is the feature.
	g2, x2 := newDetGraph(false)
	out := g2.conv(g2.conv(x2, 3, 8, 3, 2, false), 8, 25, 1, 1, false)
	g2.b.Output(out, -1, 25, 16, 16)
	fc, err = backbone.FindFeatureTensor(g2.b.Model(0), "")
	if err != nil || fc.Tensor != out || fc.Rule != backbone.RuleOutput {
		t.Fatalf("feature extractor: %+v, %v; want its output", fc, err)
	}

	// Several outputs of which one is [N, D] are features, not heads.
	g3, x3 := newDetGraph(false)
	a := g3.conv(x3, 3, 8, 3, 2, false)
	p := g3.b.Op("GlobalAveragePool", "gap", []string{a})
	f := g3.b.Op("Flatten", "features", []string{p})
	g3.b.Output(f, -1, 8)
	g3.b.Output(a, -1, 8, 16, 16)
	fc, err = backbone.FindFeatureTensor(g3.b.Model(0), "")
	if err != nil || fc.Tensor != f || fc.Rule != backbone.RuleOutput {
		t.Fatalf("features plus a map: %+v, %v; want the [N, D] output", fc, err)
	}
}
