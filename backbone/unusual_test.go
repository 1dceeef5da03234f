package backbone_test

import (
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone/onnxpb"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
)

// TestFindFeatureTensorUnusual: issue 15's models (fp16, int8 QDQ and
// QLinear, kxk-conv classifier, two outputs, reshaped tail) are detected at
// the pre-classifier tensor, with its width, pooling and dequantization,
// and the cut's single output is float32 [N, D].
func TestFindFeatureTensorUnusual(t *testing.T) {
	for _, kind := range testmodels.UnusualKinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, 16)
			e := testmodels.ExpectFor(kind, 16)
			in, err := backbone.ImageInput(m)
			if err != nil {
				t.Fatal(err)
			}
			ch := e.Channels
			if ch == 0 {
				ch = 3
			}
			if in.Name != e.Input || in.Channels != ch || in.Float16 != e.Float16 || in.Batch != e.Batch {
				t.Errorf("image input %+v, want %s %d channels float16=%v batch %d", in, e.Input, ch, e.Float16, e.Batch)
			}
			fc, err := backbone.FindFeatureTensor(m, "")
			if err != nil {
				t.Fatal(err)
			}
			if fc.Tensor != e.FeatureTensor || fc.Dim != int64(e.FeatureDim) || fc.Pool != e.Pool || fc.Classes != int64(e.Classes) ||
				(fc.Dequantize != nil) != e.Dequantized || (e.Kernel > 0 && fc.Kernel != e.Kernel) {
				t.Fatalf("detected %+v\nwant %+v", fc, e)
			}
			// Naming the detected tensor gives the same cut.
			named, err := backbone.FindFeatureTensor(m, fc.Tensor)
			if err != nil {
				t.Fatal(err)
			}
			if named.Dim != fc.Dim || named.Pool != fc.Pool || (named.Dequantize == nil) != (fc.Dequantize == nil) || named.Rule != backbone.RuleOverride {
				t.Errorf("named %+v, detected %+v", named, fc)
			}
			info, err := backbone.Inspect(m)
			if err != nil {
				t.Fatal(err)
			}
			if info.Feature == nil || info.Feature.Tensor != fc.Tensor || !slices.ContainsFunc(info.Candidates, func(c backbone.Candidate) bool { return c.Tensor == fc.Tensor }) {
				t.Errorf("inspect: feature %+v (%s), candidates %+v", info.Feature, info.FeatureError, info.Candidates)
			}
			cut, err := backbone.CutAtFeature(m, fc)
			if err != nil {
				t.Fatal(err)
			}
			if backbone.HasFloat16(cut) {
				t.Errorf("cut still computes in float16")
			}
			out := cut.Graph.Output
			if len(out) != 1 || out[0].GetType().GetTensorType().GetElemType() != 1 {
				t.Fatalf("cut outputs %v", out)
			}
			if d := out[0].GetType().GetTensorType().GetShape().GetDim(); len(d) != 2 || d[1].GetDimValue() != int64(e.FeatureDim) {
				t.Errorf("cut output shape %v, want [N,%d]", d, e.FeatureDim)
			}
		})
	}
}

// TestCutUnusualRunsInORT runs the cut of every unusual kind in ONNX
// Runtime and compares its features with the feature tensor of the whole
// model (widened from float16 where it computes in half precision,
// dequantized where the tensor is quantized), pooled as the cut pools it.
func TestCutUnusualRunsInORT(t *testing.T) {
	ortReadyForGraphTests(t)
	const size = 16
	for _, kind := range testmodels.UnusualKinds {
		t.Run(kind, func(t *testing.T) {
			m := testmodels.Model(kind, size)
			e := testmodels.ExpectFor(kind, size)
			c, cut := findAndCut(t, m)
			cutData, err := backbone.MarshalModel(cut)
			if err != nil {
				t.Fatal(err)
			}
			full, _, err := backbone.WidenFloat16(proto.Clone(m).(*onnxpb.ModelProto))
			if err != nil {
				t.Fatal(err)
			}
			ref := c.Tensor
			if q := c.Dequantize; q != nil {
				ref = "reference_dq"
				b := backbone.EditGraph(full.Graph)
				b.Node("DequantizeLinear", []string{c.Tensor, q.Scale, q.ZeroPoint}, []string{ref})
			}
			full.Graph.Output = append(full.Graph.Output, floatOutput(ref))
			fullData, err := backbone.MarshalModel(full)
			if err != nil {
				t.Fatal(err)
			}
			batch, ch := int64(3), int64(3)
			if e.Batch > 0 {
				batch = int64(e.Batch)
			}
			if e.Channels > 0 {
				ch = int64(e.Channels)
			}
			shape := []int64{batch, ch, size, size}
			x := make([]float32, batch*ch*size*size)
			r := testmodels.NewRand(7)
			for i := range x {
				x[i] = 2 * r.Float32()
			}
			got, gotShape := graphRunORT(t, cutData, e.Input, shape, x, backbone.FeatureOutput)
			want, wantShape := graphRunORT(t, fullData, e.Input, shape, x, ref)
			if !slices.Equal(gotShape[0], []int64{batch, c.Dim}) {
				t.Fatalf("cut output shape %v, want [%d %d]", gotShape[0], batch, c.Dim)
			}
			pooled, err := graphPoolReference(want[0], wantShape[0], c.Pool)
			if err != nil {
				t.Fatal(err)
			}
			worst, spread := 0.0, 0.0
			for i, v := range got[0] {
				worst = max(worst, math.Abs(float64(v)-pooled[i])/(1+math.Abs(pooled[i])))
				spread = max(spread, math.Abs(float64(v)-float64(got[0][0])))
			}
			if worst > 1e-5 {
				t.Errorf("cut features differ from the full model's %s by %g (relative)", c.Tensor, worst)
			}
			if spread == 0 {
				t.Errorf("all features equal %g: the test model saturates", got[0][0])
			}
		})
	}
}
