package export

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	onnxruntime "github.com/yalue/onnxruntime_go"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/dense"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
)

// samplePhoto returns face-api's demo photo name ("sample1.jpg").
func samplePhoto(t testing.TB, name string) []byte {
	t.Helper()
	b, ok := testnpm.FacePhotos(t)[name]
	if !ok {
		t.Fatalf("%s not in face-api's tarball", name)
	}
	return b
}

// faceModelFixture builds, from the pinned tarballs, BlazeFace, the
// face-expression backbone cut at its features, a face recipe with the
// given suppression and alignment, and a hand-made 3-class head on it.
func faceModelFixture(t *testing.T, sup, align string) (det []byte, cut *onnxpb.ModelProto, spec imaging.Spec, h *head.Model) {
	t.Helper()
	det, _, err := tfjs.BuildShipped(tfjs.ArchBlazeFace, npmTarball(t, tfjs.ArchBlazeFace))
	if err != nil {
		t.Fatal(err)
	}
	m, info, err := tfjs.Build(tfjs.ArchFaceExpression, npmTarball(t, tfjs.ArchFaceExpression))
	if err != nil {
		t.Fatal(err)
	}
	choice, err := backbone.FindFeatureTensor(m, info.FeatureTensor)
	if err != nil {
		t.Fatal(err)
	}
	if cut, err = backbone.CutAtFeature(m, choice); err != nil {
		t.Fatal(err)
	}
	d, err := faces.NewDetector(det, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	spec = info.Spec()
	spec.Faces = faces.DefaultSpec(d.SHA256())
	spec.Faces.Align = align
	spec.Faces.Suppression = sup
	rng := rand.New(rand.NewPCG(3, 5))
	h = &head.Model{Version: head.FormatVersion, Kind: head.KindLinear, Temperature: 1, Classes: []string{"a", "b", "c"},
		Backbone: head.BackboneRef{ID: "faces-test", FeatureTensor: choice.Tensor, Preprocess: spec.Canonical()}}
	l := dense.Layer{In: 256, Out: 3, W: make([]float32, 256*3), B: make([]float32, 3)}
	for i := range l.W {
		l.W[i] = float32(rng.NormFloat64() * 0.05)
	}
	h.Layers = []dense.Layer{l}
	return det, cut, spec, h
}

// TestFacesExportParity: the face model's boxes, scores and probabilities
// on a photo letterboxed to its input size match headtune's own path (the
// detector, faces.Crop and the head in Go) on the same pixels, with eye
// alignment and blending, and upright with plain NMS: boxes and keypoints
// within a pixel; probabilities within 1e-4 where the crop is the same (the
// Go path cropping the graph's boxes and eyes). The detector's input
// is resized by ONNX's antialiased Resize in the graph and by imaging's
// PIL-exact resampler in Go, so boxes move by a fraction of a pixel and
// the probabilities of the two crops differ more: that difference is
// logged (measured 0.01-0.03 on this random head), not held to 1e-4.
func TestFacesExportParity(t *testing.T) {
	ortReady(t)
	for _, tc := range [][2]string{{imaging.SuppressBlend, imaging.AlignEyes}, {imaging.SuppressNMS, imaging.AlignNone}} {
		t.Run(tc[0]+"-"+tc[1], func(t *testing.T) { facesParity(t, tc[0], tc[1]) })
	}
}

func facesParity(t *testing.T, sup, align string) {
	det, cut, spec, h := faceModelFixture(t, sup, align)
	cls, err := Build(cut, spec, h, Options{WithPreprocessing: true})
	if err != nil {
		t.Fatal(err)
	}
	const S = 1024
	fm, err := BuildFaces(cls, mustParse(t, det), spec, FacesOptions{PhotoSize: S})
	if err != nil {
		t.Fatal(err)
	}
	data, err := backbone.MarshalModel(fm)
	if err != nil {
		t.Fatal(err)
	}
	d, err := faces.NewDetector(det, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cutData, err := backbone.MarshalModel(cut)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := ort.NewSession(cutData, ort.SessionSpec{Input: "input_nhwc", InputShape: []int64{112, 112, 3}, Outputs: []string{"features"}, OutputSizes: []int{256}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	box := imaging.Spec{Width: S, Height: S, Resize: imaging.ResizeLetterbox, Interpolation: imaging.InterpBilinear,
		Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC, Scale: 1, Std: [3]float32{1, 1, 1}}
	worstBox, worstProb, worstOwn, total := 0.0, 0.0, 0.0, 0
	for _, name := range []string{"sample1.jpg", "sample4.jpg", "sample6.jpg"} {
		img, err := imaging.Decode(samplePhoto(t, name), imaging.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		photo, err := box.Resized(img)
		if err != nil {
			t.Fatal(err)
		}
		// Go: detect, crop, backbone, head.
		want, err := d.Detect(context.Background(), photo, spec.Faces)
		if err != nil {
			t.Fatal(err)
		}
		in := make([]float32, spec.TensorLen())
		feat := make([]float32, 256)
		predict := func(f faces.Face) []float32 {
			c, err := faces.Crop(photo, faces.FrameOf(f, spec.Faces), 112, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := faces.Tensor(c, spec, in); err != nil {
				t.Fatal(err)
			}
			if err := bb.Run(context.Background(), in, 1, feat); err != nil {
				t.Fatal(err)
			}
			p := make([]float32, 3)
			if err := h.PredictBatch(feat, 1, p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		// ONNX: the face model on the same pixels.
		x := make([]float32, S*S*3)
		for i, v := range photo.Pix[:S*S*3] {
			x[i] = float32(v)
		}
		got := runFaceModel(t, data, x, S)
		if len(got.scores) != len(want) {
			t.Fatalf("%s: the face model finds %d faces, predict %d", name, len(got.scores), len(want))
		}
		for i, f := range want {
			b := got.boxes[4*i : 4*i+4]
			for j, v := range []float64{f.Box.X, f.Box.Y, f.Box.W, f.Box.H} {
				worstBox = max(worstBox, math.Abs(v-float64(b[j])))
			}
			for k := 0; k < 6; k++ {
				worstBox = max(worstBox, math.Abs(f.Keypoints[k].X-float64(got.kps[12*i+2*k])), math.Abs(f.Keypoints[k].Y-float64(got.kps[12*i+2*k+1])))
			}
			if math.Abs(float64(f.Score-got.scores[i])) > 5e-3 {
				t.Errorf("%s face %d: score %v, predict %v", name, i, got.scores[i], f.Score)
			}
			own := predict(f)
			gf := faces.Face{Box: faces.Box{X: float64(b[0]), Y: float64(b[1]), W: float64(b[2]), H: float64(b[3])}}
			for k := range gf.Keypoints {
				gf.Keypoints[k] = faces.Point{X: float64(got.kps[12*i+2*k]), Y: float64(got.kps[12*i+2*k+1])}
			}
			same := predict(gf)
			worstProb = max(worstProb, maxAbsDiff(same, got.probs[3*i:3*i+3]))
			worstOwn = max(worstOwn, maxAbsDiff(own, got.probs[3*i:3*i+3]))
		}
		total += len(want)
	}
	// A photo without faces gives empty outputs, not an error.
	empty := runFaceModel(t, data, make([]float32, S*S*3), S)
	if len(empty.scores) != 0 || len(empty.probs) != 0 {
		t.Errorf("black photo: %d faces", len(empty.scores))
	}
	t.Logf("%s, align %s: %d faces, largest difference: boxes and keypoints %.3g px, probabilities %.3g on the same crops, %.3g with each path's own boxes", sup, align, total, worstBox, worstProb, worstOwn)
	if total < 10 {
		t.Errorf("only %d faces in the three photos", total)
	}
	if worstBox > 1 {
		t.Errorf("boxes differ by %.3g px, want within 1", worstBox)
	}
	if worstProb > 1e-4 {
		t.Errorf("probabilities differ by %.3g, want within 1e-4", worstProb)
	}
}

func mustParse(t *testing.T, b []byte) *onnxpb.ModelProto {
	t.Helper()
	m, err := backbone.ParseModel(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type faceOutputs struct{ boxes, scores, kps, probs []float32 }

// runFaceModel runs a face model on one photo; its outputs have a dynamic
// face count, so ONNX Runtime allocates them.
func runFaceModel(t *testing.T, model []byte, photo []float32, S int) faceOutputs {
	t.Helper()
	sess, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(model, []string{InputPhoto},
		[]string{OutputBoxes, OutputScores, OutputKeypoints, OutputFaceProbabilities}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	in, err := onnxruntime.NewTensor(onnxruntime.NewShape(1, int64(S), int64(S), 3), photo)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := make([]onnxruntime.Value, 4)
	if err := sess.Run([]onnxruntime.Value{in}, outs); err != nil {
		t.Fatal(err)
	}
	var r faceOutputs
	for i, dst := range []*[]float32{&r.boxes, &r.scores, &r.kps, &r.probs} {
		tt, ok := outs[i].(*onnxruntime.Tensor[float32])
		if !ok {
			t.Fatalf("output %d is %T", i, outs[i])
		}
		*dst = append([]float32(nil), tt.GetData()...)
		outs[i].Destroy()
	}
	return r
}

// TestFaceModelMetadata: a face model says what it is; ReadMetadata, which
// describes crop classifiers, refuses it by name; a recipe without faces
// makes no face model.
func TestFaceModelMetadata(t *testing.T) {
	ortReady(t)
	det, cut, spec, h := faceModelFixture(t, imaging.SuppressBlend, imaging.AlignEyes)
	cls, err := Build(cut, spec, h, Options{WithPreprocessing: true})
	if err != nil {
		t.Fatal(err)
	}
	fm, err := BuildFaces(cls, mustParse(t, det), spec, FacesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMetadata(fm); !errors.Is(err, ErrFaceModel) {
		t.Errorf("ReadMetadata on a face model: %v, want ErrFaceModel", err)
	}
	found := false
	for _, p := range fm.MetadataProps {
		if p.GetKey() == KeyFaces {
			found = strings.Contains(p.GetValue(), `"photo_size":1024`) && strings.Contains(p.GetValue(), spec.Faces.DetectorSHA256)
		}
	}
	if !found {
		t.Error("the face model's headtune.faces metadata lacks the photo size or the recipe")
	}
	whole := spec
	whole.Faces = imaging.FaceSpec{}
	if _, err := BuildFaces(cls, mustParse(t, det), whole, FacesOptions{}); err == nil {
		t.Error("a recipe without faces accepted")
	}
}
