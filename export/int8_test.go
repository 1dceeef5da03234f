package export

import (
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/quantize"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testmodels"
)

// int8Model quantizes TestModel(kind) with ranges calibrated on the float
// fixture's images (ONNX Runtime runs the calibration model).
func int8Model(t *testing.T, kind string) *onnxpb.ModelProto {
	t.Helper()
	m := testmodels.Model(kind, testSize)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := quantize.Prepare(m, choice.Tensor, quantize.Options{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := backbone.ImageInput(m)
	if err != nil {
		t.Fatal(err)
	}
	shape := imaging.Spec{Layout: info.Layout, Channels: info.Channels, Height: info.Height, Width: info.Width}.InputShape()
	fl := getFixture(t, kind, testSize, 0, testImages, testClasses)
	n, x := fl.n, fl.norm
	data, err := backbone.MarshalModel(p.CalibrationModel())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(data, ort.SessionSpec{Input: p.Input, InputShape: shape, Outputs: p.CalibrationOutputs(), OutputSizes: p.Sizes}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs := make([][]float32, len(p.Sizes))
	for k, sz := range p.Sizes {
		outs[k] = make([]float32, n*sz)
	}
	if err := s.Run(t.Context(), x, n, outs...); err != nil {
		t.Fatal(err)
	}
	st := quantize.NewStats(p, n, 1, 0)
	if err := st.Add(outs, n); err != nil {
		t.Fatal(err)
	}
	rg, err := st.Ranges(quantize.Percentile, 0)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := p.Quantize(rg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestExportParityInt8: a head trained on an int8 backbone's features is
// exported with that int8 backbone (its QDQ nodes inside), and the export
// gives head.PredictBatch's probabilities on those same int8 features to
// parityTol, also after a --tune-layers cut and with preprocessing.
func TestExportParityInt8(t *testing.T) {
	ortReady(t)
	cases := []struct {
		name, kind, head string
		tune             int
		opt              Options
	}{
		{"resnet/linear", "resnet", head.KindLinear, 0, Options{}},
		{"mobilenet/hand-mlp/pixels/features", "mobilenet", "hand", 0, Options{WithPreprocessing: true, WithFeatures: true}},
		{"vgg/tuned2/linear", "vgg", head.KindLinear, 2, Options{}},
		{"keras-nhwc/linear", "keras", head.KindLinear, 0, Options{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := newFixture(int8Model(t, c.kind), c.kind+"-int8", "imagenet", c.tune, testImages, testClasses)
			if err != nil {
				t.Fatal(err)
			}
			var h *head.Model
			if c.head == "hand" {
				h = handHead(f, []int{20, 9}, 2.5)
			} else {
				h = headFor(t, f, c.head)
			}
			if h.Tuned != c.tune {
				t.Fatalf("head has %d tuned layers, want %d", h.Tuned, c.tune)
			}
			c.opt.Version = "test-1.0"
			m, err := Build(f.cut, f.spec, h, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			qdq := 0
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "QuantizeLinear" || n.GetOpType() == "DequantizeLinear" {
					qdq++
				}
			}
			if qdq == 0 {
				t.Fatal("the export does not carry the int8 backbone (no QuantizeLinear/DequantizeLinear)")
			}
			outs, want := runExport(t, f, h, m, c.opt)
			d := maxAbsDiff(outs[0], want)
			t.Logf("max |probability difference| = %.3g (%d Q/DQ nodes in the export)", d, qdq)
			if d > parityTol {
				t.Errorf("exported probabilities differ from head.PredictBatch by %.3g > %g", d, parityTol)
			}
			if spread := maxAbsDiff(want[:f.k], want[f.k:2*f.k]); spread < 1e-4 {
				t.Errorf("first two rows nearly identical (%.3g): degenerate test data", spread)
			}
			if c.opt.WithFeatures {
				if fd := maxAbsDiff(outs[1], f.feats); fd > 1e-5 {
					t.Errorf("features output differs from the int8 cut's by %.3g", fd)
				}
			}
		})
	}
}
