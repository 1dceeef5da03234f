package faces

import (
	"context"
	"math"
	"testing"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
)

// ramp is a w x h image whose channels are linear in x and y: bilinear
// samples of it, and averages of samples spread symmetrically about a
// point, are exactly its value at that point, so crops of it can be
// checked against the geometry alone.
func ramp(w, h int) (*imaging.RGB, func(x, y float64) [3]float64) {
	f := func(x, y float64) [3]float64 { return [3]float64{10 + 2*x + 1.5*y, 150 - x + y, 50 + x} }
	img := imaging.NewRGB(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := f(float64(x), float64(y))
			for c := 0; c < 3; c++ {
				img.Pix[(y*w+x)*3+c] = uint8(v[c])
			}
		}
	}
	return img, f
}

// TestCropGeometry: crop pixels of a ramp (no border involved) equal the
// ramp at the pixel centres the frame maps them to: at the image's own
// size, at half size (each crop pixel covers 2x2 source pixels), and turned
// a quarter and an eighth of a turn.
func TestCropGeometry(t *testing.T) {
	img, f := ramp(64, 64)
	tests := []struct {
		name string
		fr   Frame
		out  int
	}{
		{"identity", Frame{CX: 32, CY: 32, Side: 32}, 32},
		{"half size", Frame{CX: 32, CY: 32, Side: 40}, 20},
		{"quarter turn", Frame{CX: 30, CY: 34, Side: 30, Angle: math.Pi / 2}, 30},
		{"eighth turn", Frame{CX: 32, CY: 32, Side: 36, Angle: math.Pi / 4}, 24},
	}
	for _, tc := range tests {
		c, err := Crop(img, tc.fr, tc.out, nil)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for j := 0; j < tc.out; j++ {
			for i := 0; i < tc.out; i++ {
				p := tc.fr.Map((float64(i)+0.5)/float64(tc.out), (float64(j)+0.5)/float64(tc.out))
				want := f(p.X-0.5, p.Y-0.5) // pixel centres at integers
				for ch := 0; ch < 3; ch++ {
					worst = max(worst, math.Abs(float64(c[(j*tc.out+i)*3+ch])-math.Floor(want[ch])))
				}
			}
		}
		// The image holds the ramp rounded down to 8 bits: within one level.
		if worst > 1.01 {
			t.Errorf("%s: crop differs from the ramp by %.3f levels", tc.name, worst)
		}
	}
	// The quarter turn moves pixels as a quarter turn should: crop point
	// (i, j) of a frame turned +90 degrees is image pixel (cx - (j+0.5-s/2),
	// cy + (i+0.5-s/2)).
	fr := Frame{CX: 32, CY: 32, Side: 8, Angle: math.Pi / 2}
	if p := fr.Map(0.5/8, 7.5/8); math.Abs(p.X-28.5) > 1e-9 || math.Abs(p.Y-28.5) > 1e-9 {
		t.Errorf("quarter turn maps crop (0, 7) to %+v, want (28.5, 28.5)", p)
	}
	if _, err := Crop(img, Frame{CX: 4, CY: 4, Side: 0}, 4, nil); err == nil {
		t.Error("zero-side frame accepted")
	}
	if _, err := Crop(img, Frame{CX: math.NaN(), CY: 4, Side: 4}, 4, nil); err == nil {
		t.Error("NaN frame accepted")
	}
	// Entirely outside the image: black.
	c, err := Crop(img, Frame{CX: -100, CY: 32, Side: 20}, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range c {
		if v != 0 {
			t.Fatalf("crop outside the image has value %v, want 0", v)
		}
	}
}

// rotate turns img by deg degrees counter-clockwise (as displayed) about
// its centre, bilinear, black outside.
func rotate(img *imaging.RGB, deg float64) *imaging.RGB {
	out := imaging.NewRGB(img.W, img.H)
	s, c := math.Sincos(deg * math.Pi / 180)
	cx, cy := float64(img.W)/2, float64(img.H)/2
	for y := 0; y < img.H; y++ {
		for x := 0; x < img.W; x++ {
			// Inverse map: output (x, y) comes from the source point turned
			// back. y points down, so counter-clockwise on screen is a
			// negative angle in these coordinates.
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			sx := cx + c*dx - s*dy - 0.5
			sy := cy + s*dx + c*dy - 0.5
			r, g, b := bilinear(img, sx, sy)
			o := out.Pix[(y*img.W+x)*3:]
			o[0], o[1], o[2] = uint8(r+0.5), uint8(g+0.5), uint8(b+0.5)
		}
	}
	return out
}

// TestAlignmentUndoesRotation: faces in a photo turned by 15 degrees come
// out of eye alignment at the turned angle, and their aligned crops look
// like the upright photo's aligned crops, much more than unaligned crops
// do (go test ./faces -run TestAlignmentUndoesRotation -v logs the
// figures).
func TestAlignmentUndoesRotation(t *testing.T) {
	d := detector(t)
	img := decodeBytes(t, "sample6.jpg", testnpm.FacePhotos(t)["sample6.jpg"])
	eyes := DefaultSpec(d.SHA256())
	upright := eyes
	upright.Align = imaging.AlignNone
	ref, err := d.Detect(context.Background(), img, eyes)
	if err != nil {
		t.Fatal(err)
	}
	for _, deg := range []float64{15, -15} {
		rot := rotate(img, deg)
		found, err := d.Detect(context.Background(), rot, eyes)
		if err != nil {
			t.Fatal(err)
		}
		var alignedDiff, plainDiff float64
		n := 0
		for _, r := range ref {
			// The same face in the turned photo: nearest box centre after
			// turning the reference centre.
			s, c := math.Sincos(deg * math.Pi / 180)
			cx, cy := float64(img.W)/2, float64(img.H)/2
			dx, dy := r.Box.X+r.Box.W/2-cx, r.Box.Y+r.Box.H/2-cy
			px, py := cx+c*dx+s*dy, cy-s*dx+c*dy
			var f *Face
			for i := range found {
				fx, fy := found[i].Box.X+found[i].Box.W/2, found[i].Box.Y+found[i].Box.H/2
				if math.Hypot(fx-px, fy-py) < r.Box.W/3 {
					f = &found[i]
				}
			}
			if f == nil {
				continue
			}
			n++
			a0, a1 := FrameOf(r, eyes).Angle, FrameOf(*f, eyes).Angle
			turn := (a0 - a1) * 180 / math.Pi
			// BlazeFace's eye keypoints wobble by a few degrees between the
			// two photos (measured: up to 5.6).
			if math.Abs(turn-deg) > 7 {
				t.Errorf("turned %v degrees: eye line turned %.1f degrees", deg, turn)
			}
			alignedDiff += cropDiff(t, img, r, rot, *f, eyes)
			plainDiff += cropDiff(t, img, r, rot, *f, upright)
		}
		if n < 3 {
			t.Fatalf("turned %v degrees: only %d of %d faces found again", deg, n, len(ref))
		}
		alignedDiff /= float64(n)
		plainDiff /= float64(n)
		t.Logf("turned %v degrees, %d faces: mean abs difference to the upright photo's crop: aligned %.1f, unaligned %.1f levels", deg, n, alignedDiff, plainDiff)
		// Measured: aligned crops differ by 0.61-0.71 of what unaligned ones
		// do (the boxes of turned faces also move and grow); aligning the
		// wrong way would make them differ more than unaligned ones.
		if alignedDiff > 0.8*plainDiff {
			t.Errorf("turned %v degrees: aligned crops differ by %.1f levels, unaligned by %.1f: alignment does not undo the turn", deg, alignedDiff, plainDiff)
		}
	}
}

func cropDiff(t *testing.T, a *imaging.RGB, fa Face, b *imaging.RGB, fb Face, spec imaging.FaceSpec) float64 {
	t.Helper()
	ca, err := Crop(a, FrameOf(fa, spec), 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Crop(b, FrameOf(fb, spec), 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	var s float64
	for i := range ca {
		s += math.Abs(float64(ca[i] - cb[i]))
	}
	return s / float64(len(ca))
}

// TestTensorLayouts: Tensor applies the backbone's recipe: layout, channel
// order, scale/mean/std, grey.
func TestTensorLayouts(t *testing.T) {
	crop := []float32{10, 20, 30, 40, 50, 60} // two pixels
	base := imaging.Spec{Width: 2, Height: 1, Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC,
		Scale: 0.5, Mean: [3]float32{1, 2, 3}, Std: [3]float32{1, 2, 4}}
	tests := []struct {
		name string
		edit func(*imaging.Spec)
		want []float32
	}{
		{"NHWC RGB", func(*imaging.Spec) {}, []float32{4, 4, 3, 19, 11.5, 6.75}},
		{"NCHW RGB", func(s *imaging.Spec) { s.Layout = imaging.LayoutNCHW }, []float32{4, 19, 4, 11.5, 3, 6.75}},
		{"NHWC BGR", func(s *imaging.Spec) { s.ChannelOrder = imaging.OrderBGR }, []float32{14, 4, 0.5, 29, 11.5, 4.25}},
		{"grey", func(s *imaging.Spec) { s.Channels = 1 }, []float32{0.5*(0.299*10+0.587*20+0.114*30) - 1, 0.5*(0.299*40+0.587*50+0.114*60) - 1}},
	}
	for _, tc := range tests {
		s := base
		tc.edit(&s)
		got := make([]float32, s.TensorLen())
		if err := Tensor(crop, s, got); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Abs(float64(got[i]-tc.want[i])) > 1e-4 {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}
