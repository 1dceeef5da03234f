package turbojpeg

import (
	"math"
	"testing"

	"github.com/headtune/headtune/imaging"
)

func TestRegisteredHook(t *testing.T) {
	if imaging.FastJPEGDecoder == nil {
		t.Fatal("importing turbojpeg did not set imaging.FastJPEGDecoder")
	}
	requireLib(t)
	tests := []struct {
		file         string
		minW, minH   int // displayed orientation
		wantW, wantH int // displayed orientation
	}{
		{"dog_420.jpg", 0, 0, 203, 157},
		{"dog_420.jpg", 100, 78, 102, 79}, // 1/2: ceil(203/2) x ceil(157/2)
		{"dog_420.jpg", 26, 20, 26, 20},   // 1/8
		{"dog_420.jpg", 27, 20, 51, 40},   // 1/4
		// Orientation 6: stored 203x157, displayed 157x203. The minimum is
		// given displayed, imaging swaps it into stored orientation.
		{"dog_orient6.jpg", 20, 26, 20, 26},
		{"dog_orient6.jpg", 26, 20, 40, 51},
		{"eagle_grey.jpg", 16, 12, 16, 13},  // ceil(97/8) = 13
		{"eagle_cmyk.jpg", 16, 12, 128, 97}, // declined: image/jpeg at full size
	}
	for _, tc := range tests {
		data := readTestdata(t, tc.file)
		img, err := imaging.Decode(data, imaging.DecodeOptions{FastJPEG: true, MinWidth: tc.minW, MinHeight: tc.minH})
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if img.W != tc.wantW || img.H != tc.wantH {
			t.Errorf("%s min %dx%d: got %dx%d, want %dx%d", tc.file, tc.minW, tc.minH, img.W, img.H, tc.wantW, tc.wantH)
		}
	}
}

// TestFastSpecCloseToExact compares the model-input tensors of the exact
// path (image/jpeg at full size) and the fast path (DCT-scaled decode) for
// a 224x224 unit-range spec: they must describe the same picture.
func TestFastSpecCloseToExact(t *testing.T) {
	requireLib(t)
	spec, err := imaging.Preset("unit")
	if err != nil {
		t.Fatal(err)
	}
	spec.Width, spec.Height = 64, 64 // 203x157 -> 1/2 is the reduction used
	fast := spec
	fast.FastJPEG = true
	for _, f := range []string{"dog_420.jpg", "dog_444.jpg", "dog_progressive.jpg", "dog_orient6.jpg", "eagle_grey.jpg"} {
		data := readTestdata(t, f)
		a := make([]float32, spec.TensorLen())
		b := make([]float32, spec.TensorLen())
		if err := spec.LoadBytes(data, a, nil); err != nil {
			t.Fatal(err)
		}
		if err := fast.LoadBytes(data, b, nil); err != nil {
			t.Fatal(err)
		}
		var dot, na, nb, sad float64
		for i := range a {
			dot += float64(a[i]) * float64(b[i])
			na += float64(a[i]) * float64(a[i])
			nb += float64(b[i]) * float64(b[i])
			sad += math.Abs(float64(a[i] - b[i]))
		}
		cos := dot / math.Sqrt(na*nb)
		mad := sad / float64(len(a)) * 255
		t.Logf("%s: cosine %.5f, mean abs diff %.2f levels", f, cos, mad)
		if cos < 0.995 || mad > 6 {
			t.Errorf("%s: fast tensor too far from exact: cosine %.5f, mean abs diff %.2f levels", f, cos, mad)
		}
	}
}
