package tfjs

import (
	"context"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/quantize"
)

// TestQuantizeRegistryBackbones quantizes each registry-built backbone
// (calibrated on random images in its input range) and compares int8 with
// float32 features on other random images: every Conv becomes int8, only
// the face model's input arithmetic (Sub, Div) stays float, InceptionV3's
// pool branches get their AveragePool moved after the 1x1 Conv (with the
// same float features), and the features stay close.
func TestQuantizeRegistryBackbones(t *testing.T) {
	orttest.Init(t)
	for _, tc := range refCases {
		t.Run(tc.arch, func(t *testing.T) {
			data, info := buildCached(t, tc.arch)
			m, err := backbone.ParseModel(data)
			if err != nil {
				t.Fatal(err)
			}
			shape := []int64{int64(info.Height), int64(info.Width), int64(info.Channels)}
			p, err := quantize.Prepare(m, info.FeatureTensor, quantize.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// InceptionV3 up to mixed5: mixed0-2 and mixed4-5 each have a
			// pool branch (mixed3 pools with MaxPool, stride 2).
			wantSwaps := map[string]int{ArchInceptionV3: 5}[tc.arch]
			if p.PoolConvSwaps != wantSwaps {
				t.Errorf("%d pool/conv swaps, want %d", p.PoolConvSwaps, wantSwaps)
			}
			if p.PoolConvSwaps > 0 {
				swapped, err := backbone.MarshalModel(p.Model())
				if err != nil {
					t.Fatal(err)
				}
				per := int(info.Height * info.Width * info.Channels)
				x := randomInput(7, 2*per, tc.hi)
				dim := info.FeatureDim
				a := newORTModel(t, data, info.InputName, 2, info.Height, info.Width, info.Channels, 2, []string{info.FeatureTensor}, []int{dim}).run(t, x)[0]
				b := newORTModel(t, swapped, info.InputName, 2, info.Height, info.Width, info.Channels, 2, []string{info.FeatureTensor}, []int{dim}).run(t, x)[0]
				d, scale := maxAbsDiff(a, b), 0.0
				for _, v := range a {
					scale = max(scale, math.Abs(float64(v)))
				}
				t.Logf("swapped float model: max |difference| %.3g (max |feature| %.3g)", d, scale)
				// Float rounding only: summation order changes (the 1x1 Conv
				// sums over channels before the pool sums over the window).
				if d > 1e-5*max(1, scale) {
					t.Errorf("swapped float model differs from the original by %.3g", d)
				}
			}
			convs := 0
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "Conv" {
					convs++
				}
			}
			for _, l := range p.Left {
				if l.Op == "Conv" || (l.Op != "Sub" && l.Op != "Div") {
					t.Errorf("%s (%s) left float: %s", l.Node, l.Op, l.Reason)
				}
			}
			const n = 4
			per := int(shape[0] * shape[1] * shape[2])
			calib, err := backbone.MarshalModel(p.CalibrationModel())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ort.NewSession(calib, ort.SessionSpec{Input: p.Input, InputShape: shape, Outputs: p.CalibrationOutputs(), OutputSizes: p.Sizes}, ort.SessionOptions{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			st := quantize.NewStats(p, n, 1, 0)
			outs := make([][]float32, len(p.Sizes))
			for k, sz := range p.Sizes {
				outs[k] = make([]float32, sz)
			}
			for i := 0; i < n; i++ {
				if err := s.Run(context.Background(), randomInput(uint64(i), per, tc.hi), 1, outs...); err != nil {
					t.Fatal(err)
				}
				if err := st.Add(outs, 1); err != nil {
					t.Fatal(err)
				}
			}
			rg, err := st.Ranges(quantize.Percentile, 0)
			if err != nil {
				t.Fatal(err)
			}
			q, rep, err := p.Quantize(rg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Nodes < convs {
				t.Errorf("%d nodes quantized, the model has %d Conv", rep.Nodes, convs)
			}
			qdata, err := backbone.MarshalModel(q)
			if err != nil {
				t.Fatal(err)
			}
			dim := info.FeatureDim
			x := randomInput(99, 2*per, tc.hi)
			fl := newORTModel(t, data, info.InputName, 2, info.Height, info.Width, info.Channels, 2, []string{info.FeatureTensor}, []int{dim}).run(t, x)[0]
			i8 := newORTModel(t, qdata, info.InputName, 2, info.Height, info.Width, info.Channels, 2, []string{info.FeatureTensor}, []int{dim}).run(t, x)[0]
			for img := 0; img < 2; img++ {
				a, b := fl[img*dim:(img+1)*dim], i8[img*dim:(img+1)*dim]
				var ab, aa, bb float64
				for j := range a {
					ab += float64(a[j]) * float64(b[j])
					aa += float64(a[j]) * float64(a[j])
					bb += float64(b[j]) * float64(b[j])
				}
				c := ab / math.Sqrt(aa*bb)
				t.Logf("image %d: int8/float32 feature cosine %.5f (%d nodes int8, %.1f MB -> %.1f MB)", img, c, rep.Nodes, float64(len(data))/1e6, float64(len(qdata))/1e6)
				// face-expression's dense blocks lose more (README, "int8
				// backbones against float32").
				want := 0.99
				if tc.arch == ArchFaceExpression {
					want = 0.9
				}
				if c < want || maxAbsDiff(a, b) == 0 {
					t.Errorf("image %d: cosine %.5f (want >= %g and not identical)", img, c, want)
				}
			}
		})
	}
}
