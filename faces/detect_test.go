package faces

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models"
)

// truthFace is a face counted by eye: centre and side in pixels.
type truthFace [3]float64

func sampleTruth(t *testing.T) map[string][]truthFace {
	t.Helper()
	b, err := os.ReadFile("testdata/sample_faces.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string][]truthFace{}
	for k, v := range raw {
		if k[0] == '_' {
			continue
		}
		var fs []truthFace
		if err := json.Unmarshal(v, &fs); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = fs
	}
	return out
}

// match pairs detections with faces counted by eye: a detection matches the
// first unmatched face whose centre is within half its side of the box
// centre. It returns how many faces were found and the unmatched
// detections (false positives).
func match(found []Face, truth []truthFace) (hits int, fps []Face) {
	used := make([]bool, len(truth))
	for _, f := range found {
		cx, cy := f.Box.X+f.Box.W/2, f.Box.Y+f.Box.H/2
		ok := false
		for i, tr := range truth {
			if !used[i] && math.Abs(cx-tr[0]) < tr[2]/2 && math.Abs(cy-tr[1]) < tr[2]/2 {
				used[i], ok = true, true
				hits++
				break
			}
		}
		if !ok {
			fps = append(fps, f)
		}
	}
	return hits, fps
}

// TestSamplePhotos is the bar: on face-api's six demo photos (22
// faces counted by eye) the default recipe finds at least 21 with no false
// positive, with either suppression, and the eye keypoints lie inside the
// boxes.
func TestSamplePhotos(t *testing.T) {
	d := detector(t)
	ph := testnpm.FacePhotos(t)
	truth := sampleTruth(t)
	for _, sup := range []string{imaging.SuppressBlend, imaging.SuppressNMS} {
		spec := DefaultSpec(d.SHA256())
		spec.Suppression = sup
		total, hits, fpCount := 0, 0, 0
		for _, name := range sortedKeys(truth) {
			img := decodeBytes(t, name, ph[name])
			found, err := d.Detect(context.Background(), img, spec)
			if err != nil {
				t.Fatal(err)
			}
			h, fps := match(found, truth[name])
			total += len(truth[name])
			hits += h
			fpCount += len(fps)
			for _, f := range fps {
				t.Errorf("%s %s: false positive %+v score %.3f", sup, name, f.Box, f.Score)
			}
			for i, f := range found {
				for _, k := range []int{RightEye, LeftEye} {
					p := f.Keypoints[k]
					if p.X < f.Box.X || p.X > f.Box.X+f.Box.W || p.Y < f.Box.Y || p.Y > f.Box.Y+f.Box.H {
						t.Errorf("%s %s face %d: %s at %+v outside the box %+v", sup, name, i, KeypointNames[k], p, f.Box)
					}
				}
				if i > 0 && found[i-1].Area() < f.Area() {
					t.Errorf("%s %s: face %d is larger than face %d: not sorted largest first", sup, name, i, i-1)
				}
			}
		}
		t.Logf("%s: %d of %d faces, %d false positives at threshold %.2f", sup, hits, total, fpCount, spec.Threshold)
		if total != 22 || hits < 21 {
			t.Errorf("%s: found %d of %d faces, want at least 21 of 22", sup, hits, total)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// TestNoFaceImages: pictures without people give no face at the default
// threshold: Fashion-MNIST items and Debian darknet's animal photos.
func TestNoFaceImages(t *testing.T) {
	d := detector(t)
	spec := DefaultSpec(d.SHA256())
	check := func(name string, img *imaging.RGB) {
		found, err := d.Detect(context.Background(), img, spec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range found {
			t.Errorf("%s: false face %+v score %.3f", name, f.Box, f.Score)
		}
	}
	items := fashionMNIST(t, 200)
	for i, img := range items {
		check(fmt.Sprintf("fashion-mnist test item %d", i), img)
	}
	n := 0
	for _, name := range []string{"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg"} {
		p := filepath.Join("/usr/share/darknet/data", name)
		b, err := os.ReadFile(p)
		if err != nil {
			testasset.Skip(t, "Debian darknet's photos (apt-get install darknet): %v", err)
		}
		check(p, decodeBytes(t, p, b))
		n++
	}
	t.Logf("%d Fashion-MNIST items and %d darknet photos: no face", len(items), n)
}

// fashionMNIST reads the first n test items of Debian's dataset-fashion-mnist
// as 28x28 grey RGB images.
func fashionMNIST(t *testing.T, n int) []*imaging.RGB {
	t.Helper()
	p := "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
	f, err := os.Open(p)
	if err != nil {
		testasset.Skip(t, "Fashion-MNIST (apt-get install dataset-fashion-mnist): %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(zr, hdr); err != nil {
		t.Fatal(err)
	}
	out := make([]*imaging.RGB, n)
	px := make([]byte, 28*28)
	for i := range out {
		if _, err := io.ReadFull(zr, px); err != nil {
			t.Fatal(err)
		}
		m := imaging.NewRGB(28, 28)
		for j, v := range px {
			m.Pix[3*j], m.Pix[3*j+1], m.Pix[3*j+2] = v, v, v
		}
		out[i] = m
	}
	return out
}

// TestInputSpecMatchesCatalog: the catalog records BlazeFace's input recipe
// in meta.json; it must be the one Detect uses.
func TestInputSpecMatchesCatalog(t *testing.T) {
	e, err := models.Lookup("blazeface")
	if err != nil {
		t.Fatal(err)
	}
	if e.Task != models.TaskFaceDetector {
		t.Errorf("catalog task %q, want %q", e.Task, models.TaskFaceDetector)
	}
	if got, want := e.Preprocess.Canonical(), InputSpec().Canonical(); !bytes.Equal(got, want) {
		t.Errorf("catalog recipe\n%s\ndiffers from InputSpec\n%s", got, want)
	}
}

// TestDetectRefusesForeignRecipe: a recipe made with another detector file,
// another detector or an invalid threshold is refused, never silently
// applied.
func TestDetectRefusesForeignRecipe(t *testing.T) {
	d := detector(t)
	img := imaging.NewRGB(64, 64)
	good := DefaultSpec(d.SHA256())
	tests := []struct {
		name string
		edit func(*imaging.FaceSpec)
	}{
		{"other file", func(s *imaging.FaceSpec) { s.DetectorSHA256 = fmt.Sprintf("%064x", 1) }},
		{"other detector", func(s *imaging.FaceSpec) { s.Detector = "ssd/1" }},
		{"threshold 0", func(s *imaging.FaceSpec) { s.Threshold = 0 }},
		{"threshold NaN", func(s *imaging.FaceSpec) { s.Threshold = float32(math.NaN()) }},
		{"unknown alignment", func(s *imaging.FaceSpec) { s.Align = "nose" }},
		{"zero recipe", func(s *imaging.FaceSpec) { *s = imaging.FaceSpec{} }},
	}
	for _, tc := range tests {
		s := good
		tc.edit(&s)
		if _, err := d.Detect(context.Background(), img, s); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := d.Detect(context.Background(), img, good); err != nil {
		t.Errorf("good recipe: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Detect(ctx, img, good); err == nil {
		t.Error("cancelled context: no error")
	}
}

// rgbFromImage converts any image.Image to imaging.RGB.
func rgbFromImage(m image.Image) *imaging.RGB {
	b := m.Bounds()
	out := imaging.NewRGB(b.Dx(), b.Dy())
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, g, bb, _ := m.At(b.Min.X+x, b.Min.Y+y).RGBA()
			i := (y*out.W + x) * 3
			out.Pix[i], out.Pix[i+1], out.Pix[i+2] = uint8(r>>8), uint8(g>>8), uint8(bb>>8)
		}
	}
	return out
}

func encodeJPEG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 92}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// grey returns the luma of img as an image.Gray.
func grey(img *imaging.RGB) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, img.W, img.H))
	for i := 0; i < img.W*img.H; i++ {
		p := img.Pix[3*i:]
		g.Pix[i] = uint8((299*int(p[0]) + 587*int(p[1]) + 114*int(p[2]) + 500) / 1000)
	}
	return g
}

var _ = color.RGBA{}
