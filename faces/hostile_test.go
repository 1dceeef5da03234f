package faces

import (
	"context"
	"encoding/binary"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
)

// sample1 is face-api's sample1.jpg decoded with its faces counted by eye.
func sample1(t *testing.T) (*imaging.RGB, []truthFace) {
	t.Helper()
	return decodeBytes(t, "sample1.jpg", testnpm.FacePhotos(t)["sample1.jpg"]), sampleTruth(t)["sample1.jpg"]
}

// scaleTruth scales faces counted by eye to a resized image.
func scaleTruth(tr []truthFace, k float64) []truthFace {
	out := make([]truthFace, len(tr))
	for i, f := range tr {
		out[i] = truthFace{f[0] * k, f[1] * k, f[2] * k}
	}
	return out
}

// TestHostileSizes: tiny images, one-pixel faces and a huge image go
// through detection and cropping without error; what is found is inside
// the image's frame of reference and faces of a huge photo are where they
// are in the original.
func TestHostileSizes(t *testing.T) {
	d := detector(t)
	spec := DefaultSpec(d.SHA256())
	img, truth := sample1(t)
	noise := func(w, h int) *imaging.RGB {
		m := imaging.NewRGB(w, h)
		r := rand.New(rand.NewPCG(1, uint64(w*h)))
		for i := range m.Pix {
			m.Pix[i] = uint8(r.IntN(256))
		}
		return m
	}
	shrunk := func(w, h int) *imaging.RGB {
		s := imaging.Spec{Width: w, Height: h, Resize: imaging.ResizeSquash, Interpolation: imaging.InterpArea,
			Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC, Scale: 1, Std: [3]float32{1, 1, 1}}
		m, err := s.Resized(img)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		img  *imaging.RGB
	}{
		{"1x1", noise(1, 1)},
		{"1x500", noise(1, 500)},
		{"500x1", noise(500, 1)},
		{"3x2", noise(3, 2)},
		{"photo at 24x16 (one-pixel faces)", shrunk(24, 16)},
		{"photo at 96x64 (two-pixel eyes)", shrunk(96, 64)},
	}
	for _, tc := range tests {
		found, err := d.Detect(context.Background(), tc.img, spec)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for _, f := range found {
			if max(f.Box.W, f.Box.H) < DefaultMinSize {
				t.Errorf("%s: face %+v below the minimum size", tc.name, f.Box)
			}
		}
		if len(found) > 0 {
			t.Errorf("%s: %d faces in an image too small to hold one of %d pixels", tc.name, len(found), DefaultMinSize)
		}
	}

	// Huge: sample1 enlarged 3x by pixel repetition to 5760x3840 (22
	// megapixels): the same faces, at 3x the coordinates.
	const k = 3
	big := imaging.NewRGB(img.W*k, img.H*k)
	for y := 0; y < big.H; y++ {
		src := img.Pix[(y/k)*img.W*3:]
		dst := big.Pix[y*big.W*3:]
		for x := 0; x < big.W; x++ {
			copy(dst[3*x:3*x+3], src[3*(x/k):3*(x/k)+3])
		}
	}
	found, err := d.Detect(context.Background(), big, spec)
	if err != nil {
		t.Fatal(err)
	}
	if hits, fps := match(found, scaleTruth(truth, k)); hits != len(truth) || len(fps) > 0 {
		t.Errorf("5760x3840: %d of %d faces, %d false positives", hits, len(truth), len(fps))
	}
	for _, f := range found {
		c, err := CropRGB(big, FrameOf(f, spec), 112)
		if err != nil || c.W != 112 {
			t.Errorf("crop of a face in the huge image: %v", err)
		}
	}
}

// TestBorderFaces: a face cut by the image's edge is still found and
// cropped; the part of the crop beyond the image is black.
func TestBorderFaces(t *testing.T) {
	d := detector(t)
	spec := DefaultSpec(d.SHA256())
	img, truth := sample1(t)
	// Keep x >= 470: the left face (centre x 513, side 186) loses its left
	// third; the others are whole.
	const x0 = 470
	cut := imaging.NewRGB(img.W-x0, img.H)
	for y := 0; y < img.H; y++ {
		copy(cut.Pix[y*cut.W*3:(y+1)*cut.W*3], img.Pix[(y*img.W+x0)*3:(y+1)*img.W*3])
	}
	tr := make([]truthFace, len(truth))
	for i, f := range truth {
		tr[i] = truthFace{f[0] - x0, f[1], f[2]}
	}
	found, err := d.Detect(context.Background(), cut, spec)
	if err != nil {
		t.Fatal(err)
	}
	hits, fps := match(found, tr)
	t.Logf("face cut by the border: %d of %d faces found", hits, len(tr))
	if hits < 2 || len(fps) > 0 {
		t.Errorf("%d of %d faces (two are whole), %d false positives", hits, len(tr), len(fps))
	}
	var edge *Face
	for i := range found {
		if found[i].Box.X < 30 {
			edge = &found[i]
		}
	}
	if edge == nil {
		t.Log("the cut face was not detected; cropping it from its counted box instead")
		edge = &Face{Box: Box{X: -50, Y: 410, W: 186, H: 186}}
		edge.Keypoints[RightEye], edge.Keypoints[LeftEye] = Point{-20, 465}, Point{47, 458}
	}
	fr := FrameOf(*edge, spec)
	c, err := CropRGB(cut, fr, 64)
	if err != nil {
		t.Fatal(err)
	}
	// The crop's left column maps well beyond x = -1: black.
	if p := fr.Map(0.5/64, 0.5); p.X > -2 {
		t.Fatalf("test geometry: left column at x %.1f, expected beyond the border", p.X)
	}
	for y := 0; y < 64; y++ {
		if p := c.Pix[y*64*3 : y*64*3+3]; p[0]|p[1]|p[2] != 0 {
			t.Fatalf("crop pixel (0, %d) beyond the image is %v, want black", y, p)
		}
	}
}

// orient returns a JPEG whose stored pixels are img transformed so that
// EXIF orientation o displays img again.
func orient(t *testing.T, img *imaging.RGB, o uint16) []byte {
	t.Helper()
	var w, h int
	var at func(x, y int) (int, int) // stored (x, y) -> displayed position
	switch o {
	case 3:
		w, h = img.W, img.H
		at = func(x, y int) (int, int) { return img.W - 1 - x, img.H - 1 - y }
	case 6: // display rotates the stored image 90 clockwise
		w, h = img.H, img.W
		at = func(x, y int) (int, int) { return img.W - 1 - y, x }
	case 8: // display rotates it 90 counter-clockwise
		w, h = img.H, img.W
		at = func(x, y int) (int, int) { return y, img.H - 1 - x }
	default:
		t.Fatalf("orientation %d not handled", o)
	}
	st := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			dx, dy := at(x, y)
			s := img.Pix[(dy*img.W+dx)*3:]
			copy(st.Pix[(y*w+x)*4:], []uint8{s[0], s[1], s[2], 255})
		}
	}
	return withOrientation(encodeJPEG(t, st), o)
}

// withOrientation inserts an EXIF APP1 segment with orientation o after
// the JPEG's SOI marker.
func withOrientation(jpg []byte, o uint16) []byte {
	bo := binary.LittleEndian
	tiff := []byte("II\x2a\x00")
	tiff = bo.AppendUint32(tiff, 8)
	tiff = bo.AppendUint16(tiff, 1)
	tiff = bo.AppendUint16(tiff, 0x0112)
	tiff = bo.AppendUint16(tiff, 3)
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0)
	tiff = bo.AppendUint32(tiff, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := []byte{0xff, 0xd8, 0xff, 0xe1}
	out = binary.BigEndian.AppendUint16(out, uint16(len(seg)+2))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// TestEXIFRotatedPhotos: photos stored sideways or upside down with an EXIF
// orientation give boxes and keypoints in the displayed orientation, the
// same as the upright photo's within a few pixels.
func TestEXIFRotatedPhotos(t *testing.T) {
	d := detector(t)
	spec := DefaultSpec(d.SHA256())
	img, _ := sample1(t)
	up := decodeBytes(t, "upright", encodeJPEG(t, img.Image()))
	ref, err := d.Detect(context.Background(), up, spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []uint16{3, 6, 8} {
		m := decodeBytes(t, "rotated", orient(t, img, o))
		if m.W != img.W || m.H != img.H {
			t.Fatalf("orientation %d: decoded %dx%d, want %dx%d", o, m.W, m.H, img.W, img.H)
		}
		found, err := d.Detect(context.Background(), m, spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != len(ref) {
			t.Fatalf("orientation %d: %d faces, upright %d", o, len(found), len(ref))
		}
		worst := 0.0
		for i := range ref {
			a, b := ref[i], found[i]
			for _, v := range [][2]float64{{a.Box.X, b.Box.X}, {a.Box.Y, b.Box.Y}, {a.Box.W, b.Box.W}, {a.Keypoints[0].X, b.Keypoints[0].X}, {a.Keypoints[1].Y, b.Keypoints[1].Y}} {
				worst = max(worst, math.Abs(v[0]-v[1]))
			}
		}
		t.Logf("orientation %d: %d faces, largest difference from upright %.2f px", o, len(found), worst)
		// Re-encoding the rotated pixels changes JPEG blocks, hence a few
		// pixels of the box; a wrong orientation moves it by hundreds.
		if worst > 6 {
			t.Errorf("orientation %d: boxes differ from the upright photo's by %.1f px", o, worst)
		}
	}
}

// TestGreyAndCMYK: grey and CMYK JPEGs decode to RGB and their faces are
// found.
func TestGreyAndCMYK(t *testing.T) {
	d := detector(t)
	spec := DefaultSpec(d.SHA256())
	img, truth := sample1(t)
	g := decodeBytes(t, "grey", encodeJPEG(t, grey(img)))
	found, err := d.Detect(context.Background(), g, spec)
	if err != nil {
		t.Fatal(err)
	}
	hits, fps := match(found, truth)
	t.Logf("grey JPEG: %d of %d faces", hits, len(truth))
	if hits < 2 || len(fps) > 0 {
		t.Errorf("grey JPEG: %d of %d faces, %d false positives", hits, len(truth), len(fps))
	}
	b, err := os.ReadFile("testdata/cmyk_sample1.jpg")
	if err != nil {
		t.Fatal(err)
	}
	c := decodeBytes(t, "cmyk_sample1.jpg", b)
	found, err = d.Detect(context.Background(), c, spec)
	if err != nil {
		t.Fatal(err)
	}
	hits, fps = match(found, scaleTruth(truth, float64(c.W)/float64(img.W)))
	t.Logf("CMYK JPEG %dx%d: %d of %d faces", c.W, c.H, hits, len(truth))
	if hits < 2 || len(fps) > 0 {
		t.Errorf("CMYK JPEG: %d of %d faces, %d false positives", hits, len(truth), len(fps))
	}
}
