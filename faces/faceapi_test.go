package faces

import (
	"context"
	"math"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
)

// faceAPICrop is face-api's expression input for a face whose detection box
// is box: the box region, padded to a centred black square and resized to
// 112 (landmark net input); its 68 landmarks; their bounding box grown by
// 20% (FaceLandmarks.align's minBoxPadding); that region padded and resized
// the same way. It returns the final crop as the expression net's tensor.
func faceAPICrop(t *testing.T, img *imaging.RGB, box Box, landmarks *ort.Session) []float32 {
	t.Helper()
	fit := imaging.Spec{Width: 112, Height: 112, Resize: imaging.ResizeLetterbox, Interpolation: imaging.InterpBilinear,
		Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC, Scale: 1, Std: [3]float32{1, 1, 1}}
	region := func(x, y, w, h float64) (*imaging.RGB, int, int) {
		x0, y0 := max(int(math.Round(x)), 0), max(int(math.Round(y)), 0)
		x1, y1 := min(int(math.Round(x+w)), img.W), min(int(math.Round(y+h)), img.H)
		out := imaging.NewRGB(x1-x0, y1-y0)
		for r := y0; r < y1; r++ {
			copy(out.Pix[(r-y0)*out.W*3:(r-y0+1)*out.W*3], img.Pix[(r*img.W+x0)*3:(r*img.W+x1)*3])
		}
		return out, x0, y0
	}
	in := make([]float32, fit.TensorLen())
	sub, ox, oy := region(box.X, box.Y, box.W, box.H)
	if err := fit.Fill(sub, in, nil); err != nil {
		t.Fatal(err)
	}
	lm := make([]float32, 136)
	if err := landmarks.Run(context.Background(), in, 1, lm); err != nil {
		t.Fatal(err)
	}
	side := float64(max(sub.W, sub.H))
	padX, padY := (side-float64(sub.W))/2, (side-float64(sub.H))/2
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for k := 0; k < 68; k++ {
		x := float64(lm[2*k])*side - padX + float64(ox)
		y := float64(lm[2*k+1])*side - padY + float64(oy)
		minX, minY, maxX, maxY = min(minX, x), min(minY, y), max(maxX, x), max(maxY, y)
	}
	w, h := maxX-minX, maxY-minY
	sub, _, _ = region(minX-0.1*w, minY-0.1*h, 1.2*w, 1.2*h)
	if err := fit.Fill(sub, in, nil); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestCropAgainstFaceAPI measures how close headtune's crops come to what
// face-api feeds its expression net (landmarks from face-api's
// FaceLandmark68Net on the detection box, their bounding box plus 20%,
// padded to a square), using BlazeFace's box as the detection: for each
// margin and alignment, the mean cosine similarity of the expression net's
// features and how often its top class agrees, over the 21 faces of the
// sample photos (go test ./faces -run TestCropAgainstFaceAPI -v logs the
// table the README quotes). It asserts that the default recipe is at least
// as close to face-api as the worst setting tried, and that the features
// are close at all.
func TestCropAgainstFaceAPI(t *testing.T) {
	d := detector(t)
	tgz := testnpm.Tarball(t, testnpm.FaceAPI)
	lb, err := tfjs.BuildFaceLandmarks(tgz)
	if err != nil {
		t.Fatal(err)
	}
	lmBytes, err := backbone.MarshalModel(lb.Model(0))
	if err != nil {
		t.Fatal(err)
	}
	lmSess, err := ort.NewSession(lmBytes, ort.SessionSpec{Input: "input_nhwc", InputShape: []int64{112, 112, 3}, Outputs: []string{"landmarks"}, OutputSizes: []int{136}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lmSess.Close()
	em, info, err := tfjs.Build(tfjs.ArchFaceExpression, tgz)
	if err != nil {
		t.Fatal(err)
	}
	emBytes, err := backbone.MarshalModel(em)
	if err != nil {
		t.Fatal(err)
	}
	exSess, err := ort.NewSession(emBytes, ort.SessionSpec{Input: info.InputName, InputShape: []int64{112, 112, 3}, Outputs: []string{"features", "probs"}, OutputSizes: []int{256, 7}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer exSess.Close()
	run := func(in []float32) ([]float32, int) {
		f, p := make([]float32, 256), make([]float32, 7)
		if err := exSess.Run(context.Background(), in, 1, f, p); err != nil {
			t.Fatal(err)
		}
		best := 0
		for i := range p {
			if p[i] > p[best] {
				best = i
			}
		}
		return f, best
	}
	cos := func(a, b []float32) float64 {
		var ab, aa, bb float64
		for i := range a {
			ab += float64(a[i]) * float64(b[i])
			aa += float64(a[i]) * float64(a[i])
			bb += float64(b[i]) * float64(b[i])
		}
		return ab / math.Sqrt(aa*bb)
	}
	spec := info.Spec()
	type setting struct {
		align  string
		margin float32
	}
	var settings []setting
	for _, a := range []string{imaging.AlignEyes, imaging.AlignNone} {
		for _, m := range []float32{0, 0.1, 0.2, 0.25, 0.3, 0.4} {
			settings = append(settings, setting{a, m})
		}
	}
	sumCos := make([]float64, len(settings))
	agree := make([]int, len(settings))
	n := 0
	ph := testnpm.FacePhotos(t)
	for _, name := range sortedKeys(ph) {
		img := decodeBytes(t, name, ph[name])
		found, err := d.Detect(context.Background(), img, DefaultSpec(d.SHA256()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			ref, refTop := run(faceAPICrop(t, img, f.Box, lmSess))
			in := make([]float32, spec.TensorLen())
			for i, s := range settings {
				fs := DefaultSpec(d.SHA256())
				fs.Align, fs.Margin = s.align, s.margin
				c, err := Crop(img, FrameOf(f, fs), 112, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := Tensor(c, spec, in); err != nil {
					t.Fatal(err)
				}
				feat, top := run(in)
				sumCos[i] += cos(ref, feat)
				if top == refTop {
					agree[i]++
				}
			}
			n++
		}
	}
	t.Logf("%d faces; against face-api's landmark crop: align margin  mean cosine  same top class", n)
	worst, def := 1.0, 0.0
	for i, s := range settings {
		c := sumCos[i] / float64(n)
		t.Logf("  %-5s %.2f  %.3f  %d/%d", s.align, s.margin, c, agree[i], n)
		worst = min(worst, c)
		if s.align == DefaultAlign && s.margin == DefaultMargin {
			def = c
		}
	}
	if def < worst || def < 0.5 {
		t.Errorf("default recipe: mean cosine %.3f to face-api's crop features (worst setting %.3f)", def, worst)
	}
}
