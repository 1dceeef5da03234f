package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/models/tfjs"
)

// Face mode needs BlazeFace and face-api's tarball (npm, pinned) and ONNX
// Runtime: absent, the tests skip, or fail under CI=true.

// faceSetup installs blazeface and face-expression in a fresh store and
// opens the detector and the backbone in face mode.
func faceSetup(t *testing.T) (*faces.Detector, *Backbone) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime not available: %v", err)
	}
	store, err := models.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]string{"blazeface": testnpm.BlazeFace, "face-expression": testnpm.FaceAPI} {
		e, err := models.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := models.Pull(context.Background(), store, e, models.PullOptions{Tarball: testnpm.Tarball(t, spec)}); err != nil {
			t.Fatal(err)
		}
	}
	det, err := faces.OpenDetector(store, "blazeface", ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { det.Close() })
	bb, err := OpenBackbone("face-expression", BackboneOptions{Store: store, Faces: faces.DefaultSpec(det.SHA256()), Session: ort.SessionOptions{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	return det, bb
}

// expressionSession opens face-expression's whole model, its classifier
// included (7 expression probabilities per 112x112 NHWC face crop), closed
// when t ends.
func expressionSession(t *testing.T, bb *Backbone) *ort.Session {
	t.Helper()
	model, err := os.ReadFile(bb.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(model, ort.SessionSpec{Input: bb.InputName, InputShape: []int64{112, 112, 3}, Outputs: []string{"probs"}, OutputSizes: []int{7}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// TestFaceRunnerMatchesDirectCrop: the features FaceRunner gives for every
// face of the sample photos are the backbone's output on the crop made by
// hand (detect, FrameOf, Crop, Tensor), in face order; a file that is not
// an image and a photo without a face are reported, not fatal.
func TestFaceRunnerMatchesDirectCrop(t *testing.T) {
	det, bb := faceSetup(t)
	dir := t.TempDir()
	paths := testnpm.WriteFacePhotos(t, dir)
	bad := filepath.Join(dir, "bad.jpg")
	os.WriteFile(bad, []byte("no"), 0o644)
	blank := filepath.Join(dir, "blank.png")
	f, _ := os.Create(blank)
	png.Encode(f, imaging.NewRGB(300, 200).Image())
	f.Close()
	paths = append(paths, bad, blank)
	fr := &FaceRunner{Detector: det, Session: bb.Session, Spec: bb.Spec, All: true, Workers: 2}
	var got []*FaceImage
	if err := fr.Run(context.Background(), paths, func(fi *FaceImage) error {
		got = append(got, fi)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(paths) {
		t.Fatalf("%d results for %d files", len(got), len(paths))
	}
	total := 0
	in := make([]float32, bb.Spec.TensorLen())
	out := make([]float32, bb.Dim)
	for i, fi := range got {
		if fi.Index != i || fi.Path != paths[i] {
			t.Fatalf("result %d is for %s (index %d): out of order", i, fi.Path, fi.Index)
		}
		switch fi.Path {
		case bad:
			if fi.Err == nil || errors.Is(fi.Err, ErrNoFace) {
				t.Errorf("bad file: %v", fi.Err)
			}
			continue
		case blank:
			if !errors.Is(fi.Err, ErrNoFace) {
				t.Errorf("blank image: %v, want %v", fi.Err, ErrNoFace)
			}
			continue
		}
		if fi.Err != nil {
			t.Fatalf("%s: %v", fi.Path, fi.Err)
		}
		img, err := imaging.DecodeFile(fi.Path, imaging.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for j, k := range fi.Selected {
			crop, err := faces.Crop(img, faces.FrameOf(fi.Faces[k], bb.Spec.Faces), bb.Spec.Width, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := faces.Tensor(crop, bb.Spec, in); err != nil {
				t.Fatal(err)
			}
			if err := bb.Session.Run(context.Background(), in, 1, out); err != nil {
				t.Fatal(err)
			}
			row := fi.Outputs[0][j*bb.Dim : (j+1)*bb.Dim]
			worst := 0.0
			for d := range out {
				worst = max(worst, math.Abs(float64(out[d]-row[d])))
			}
			// Batched against single runs: ONNX Runtime may pick other
			// kernels per batch size.
			if worst > 1e-4 {
				t.Errorf("%s face %d: features differ from the direct crop by %.3g", fi.Path, k, worst)
			}
		}
		total += len(fi.Selected)
	}
	if total != 21 {
		t.Errorf("%d faces in the sample photos, want 21", total)
	}
}

// pseudoLabelled writes one upright crop per face of the sample photos (a
// photo of one person each) into dir/<label>/, labelled by face-api's own
// expression head on the aligned crop: "happy" when happy is its top
// class, "other" otherwise. These are face-api's answers used as
// pseudo-labels, not human labels. A photo of a dog goes into "other".
func pseudoLabelled(t *testing.T, det *faces.Detector, bb *Backbone, dir string) (nFaces int) {
	t.Helper()
	sess := expressionSession(t, bb)
	photos := testnpm.WriteFacePhotos(t, t.TempDir())
	in := make([]float32, bb.Spec.TensorLen())
	probs := make([]float32, 7)
	for _, p := range photos {
		img, err := imaging.DecodeFile(p, imaging.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found, err := det.Detect(context.Background(), img, bb.Spec.Faces)
		if err != nil {
			t.Fatal(err)
		}
		for k, f := range found {
			crop, _ := faces.Crop(img, faces.FrameOf(f, bb.Spec.Faces), 112, nil)
			if err := faces.Tensor(crop, bb.Spec, in); err != nil {
				t.Fatal(err)
			}
			if err := sess.Run(context.Background(), in, 1, probs); err != nil {
				t.Fatal(err)
			}
			label := "other"
			if top := argmax(probs); tfjs.FaceExpressionClasses[top] == "happy" {
				label = "happy"
			}
			// A portrait of this face alone: upright, wide margin.
			wide := faces.FrameOf(f, imaging.FaceSpec{Margin: 0.6, Align: imaging.AlignNone})
			pic, err := faces.CropRGB(img, wide, 200)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, label), 0o755)
			out, _ := os.Create(filepath.Join(dir, label, fmt.Sprintf("%s-%d.png", strings.TrimSuffix(filepath.Base(p), ".jpg"), k)))
			if err := png.Encode(out, pic.Image()); err != nil {
				t.Fatal(err)
			}
			out.Close()
			nFaces++
		}
	}
	dog, err := os.ReadFile("/usr/share/darknet/data/dog.jpg")
	if err != nil {
		testasset.Skip(t, "Debian darknet's dog.jpg: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "other", "dog.jpg"), dog, 0o644)
	return nFaces
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestExtractFaces: extract in face mode over one-person portraits (with
// face-api's answers as pseudo-labels) caches one face per portrait,
// reports the dog photo as "no face found" and counts it, and a second run
// computes nothing.
func TestExtractFaces(t *testing.T) {
	det, bb := faceSetup(t)
	data := t.TempDir()
	n := pseudoLabelled(t, det, bb, data)
	ds, err := imaging.OpenDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	sum, err := ExtractFaces(context.Background(), bb, det, false, ds, ExtractOptions{CacheRoot: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d portraits + dog: %d faces, %d no face, classes %v, splits %v", n, sum.Faces, sum.NoFace, sum.Classes, sum.Splits)
	if sum.NoFace != 1 || sum.Skipped != 1 || len(sum.Skips) != 1 || sum.Skips[0].Reason != "no face found" || !strings.HasSuffix(sum.Skips[0].Path, "dog.jpg") {
		t.Errorf("no-face accounting: %d no face, %d skipped, %+v", sum.NoFace, sum.Skipped, sum.Skips)
	}
	// A portrait's face is big and centred: the detector finds it again
	// (allow one miss, as on the group photos).
	if sum.Faces < n-1 || sum.Faces > n || sum.Computed != sum.Faces {
		t.Errorf("%d faces from %d portraits (%d computed)", sum.Faces, n, sum.Computed)
	}
	again, err := ExtractFaces(context.Background(), bb, det, false, ds, ExtractOptions{CacheRoot: cache})
	if err != nil {
		t.Fatal(err)
	}
	if again.Computed != 0 || again.Reused != sum.Faces || again.Faces != sum.Faces {
		t.Errorf("second run: %d computed, %d reused, %d faces; want 0, %d, %d", again.Computed, again.Reused, again.Faces, sum.Faces, sum.Faces)
	}
	f, err := LoadFeatures(cache, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.N != sum.Faces || f.D != bb.Dim || len(f.Classes) != len(sum.Classes) {
		t.Errorf("loaded %d rows of %d, classes %v; want %d rows of %d", f.N, f.D, f.Classes, sum.Faces, bb.Dim)
	}
	if f.Run.Options.Spec == nil || f.Run.Options.Spec.Faces != bb.Spec.Faces {
		t.Errorf("the last run does not record the face recipe: %+v", f.Run.Options.Spec)
	}
}

// TestAlignmentEffect measures what eye alignment changes against upright
// crops (--face-align none): on the faces of the sample photos, the eye-line angles, and how often
// face-api's own expression head gives the same top class on the two
// crops (go test ./pipeline -run TestAlignmentEffect -v logs the figures
// the README quotes).
func TestAlignmentEffect(t *testing.T) {
	det, bb := faceSetup(t)
	sess := expressionSession(t, bb)
	eyes := bb.Spec.Faces
	upright := eyes
	upright.Align = imaging.AlignNone
	in := make([]float32, bb.Spec.TensorLen())
	probs := func(img *imaging.RGB, f faces.Face, fs imaging.FaceSpec) []float32 {
		c, err := faces.Crop(img, faces.FrameOf(f, fs), 112, nil)
		if err != nil {
			t.Fatal(err)
		}
		faces.Tensor(c, bb.Spec, in)
		p := make([]float32, 7)
		if err := sess.Run(context.Background(), in, 1, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	n, same, maxAngle, sumAngle, sumDiff, maxDiff := 0, 0, 0.0, 0.0, 0.0, 0.0
	for _, p := range testnpm.WriteFacePhotos(t, t.TempDir()) {
		img, err := imaging.DecodeFile(p, imaging.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found, err := det.Detect(context.Background(), img, eyes)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			a := math.Abs(faces.FrameOf(f, eyes).Angle) * 180 / math.Pi
			maxAngle = max(maxAngle, a)
			sumAngle += a
			pa, pu := probs(img, f, eyes), probs(img, f, upright)
			if argmax(pa) == argmax(pu) {
				same++
			}
			for i := range pa {
				d := math.Abs(float64(pa[i] - pu[i]))
				sumDiff += d / 7
				maxDiff = max(maxDiff, d)
			}
			n++
		}
	}
	t.Logf("%d faces: eye line %.1f degrees from level on average, at most %.1f; face-api's top class the same on aligned and upright crops for %d of %d; probabilities differ by %.3f on average, at most %.3f",
		n, sumAngle/float64(n), maxAngle, same, n, sumDiff/float64(n), maxDiff)
	if n != 21 || maxAngle < 5 {
		t.Errorf("%d faces, largest eye-line angle %.1f degrees: the sample photos have 21 faces, several visibly tilted", n, maxAngle)
	}
	if maxDiff == 0 {
		t.Error("aligned and upright crops give identical probabilities: alignment did nothing")
	}
}
