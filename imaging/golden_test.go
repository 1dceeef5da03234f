package imaging

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

// The goldens in testdata were produced by testdata/gen.py with PIL 9.4,
// torchvision 0.14 and OpenCV 4.6 (an independent implementation); rerun it
// with /usr/bin/python3 to regenerate them.

type goldenFile struct {
	Resize []struct {
		Name, Src, Kind, Resize, Interpolation string
		ResizeShorter                          int `json:"resize_shorter"`
		Width, Height                          int
		Shape                                  []int
		Tensor, RGB                            string
	}
	Decode []struct {
		Src, RGB string
		W, H     int
		Tol      float64
	}
}

func loadGolden(t testing.TB) goldenFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		testasset.Skip(t, "goldens absent (regenerate with /usr/bin/python3 imaging/testdata/gen.py): %v", err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	return g
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return b
}

// TestGoldenResize checks the 8-bit output of every interpolation against
// PIL's Image.resize (and torchvision's Resize+CenterCrop geometry), and
// "area" against OpenCV's INTER_AREA (within one level: OpenCV rounds once,
// the two-pass resampler twice).
// The resampler replicates Pillow's fixed-point arithmetic, so the expected
// result is bit-exact; the assertion allows a difference of 1 level on at
// most 0.1% of values to absorb a last-bit float difference in a
// coefficient, and reports the exact-match rate.
func TestGoldenResize(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Resize {
		t.Run(c.Name, func(t *testing.T) {
			img, err := DecodeFile(filepath.Join("testdata", c.Src), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s, _ := Preset("imagenet")
			s = s.WithInput(c.Width, c.Height, 3, LayoutNCHW)
			s.Resize = ResizeMode(c.Resize)
			s.ResizeShorter = c.ResizeShorter
			s.Interpolation = c.Interpolation
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := s.Resized(img)
			if err != nil {
				t.Fatal(err)
			}
			want := readTestdata(t, c.RGB)
			if got.W != c.Width || got.H != c.Height || len(want) != got.W*got.H*3 {
				t.Fatalf("size %dx%d, want %dx%d (%d bytes)", got.W, got.H, c.Width, c.Height, len(want))
			}
			exact, off1, worst := 0, 0, 0
			for i, w := range want {
				d := int(got.Pix[i]) - int(w)
				if d < 0 {
					d = -d
				}
				worst = max(worst, d)
				if d == 0 {
					exact++
				} else if d == 1 {
					off1++
				}
			}
			t.Logf("%d/%d values bit-exact, %d off by 1, worst %d", exact, len(want), off1, worst)
			switch {
			case strings.HasSuffix(c.Src, ".jpg"):
				// JPEG source: the decoders' IDCTs differ a little.
				if worst > 3 || off1*10 > len(want) {
					t.Errorf("resize of a JPEG differs from PIL's by up to %d levels (%d off by 1 of %d)", worst, off1, len(want))
				}
			case c.Kind == "cv2":
				// OpenCV rounds once from float sums; we round after each
				// pass, as PIL does: at most one level apart.
				if worst > 1 {
					t.Errorf("area resize differs from OpenCV INTER_AREA by %d levels", worst)
				}
			case worst > 1 || off1*1000 > len(want):
				t.Errorf("resize differs from PIL: %d off by 1 (of %d), worst %d levels", off1, len(want), worst)
			}
		})
	}
}

// TestGoldenTorchvision checks Fill against torchvision's
// Resize+CenterCrop+ToTensor+Normalize. Tolerance: 1e-5 absolute per value.
// The pixels are identical (TestGoldenResize), so what remains is float32
// rounding: Fill computes p*float32(1/255) where torchvision divides by 255,
// a difference of at most a few ulps (about 4e-7 after dividing by std).
func TestGoldenTorchvision(t *testing.T) {
	g := loadGolden(t)
	sc := NewScratch() // shared across cases on purpose: exercises reuse
	for _, c := range g.Resize {
		if c.Kind != "torchvision" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			s, _ := Preset("imagenet")
			s = s.WithInput(c.Width, c.Height, 3, LayoutNCHW)
			s.ResizeShorter = c.ResizeShorter
			s.Interpolation = c.Interpolation
			raw := readTestdata(t, c.Tensor)
			want := make([]float32, len(raw)/4)
			for i := range want {
				want[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			if len(want) != s.TensorLen() {
				t.Fatalf("golden has %d values, spec %d", len(want), s.TensorLen())
			}
			got := make([]float32, s.TensorLen())
			if err := s.Load(filepath.Join("testdata", c.Src), got, sc); err != nil {
				t.Fatal(err)
			}
			var worst float64
			for i := range want {
				worst = max(worst, math.Abs(float64(got[i]-want[i])))
			}
			t.Logf("max |diff| %.3g over %d values", worst, len(want))
			if strings.HasSuffix(c.Src, ".jpg") {
				// JPEG source: at most 3 levels (3/255/0.224 = 0.053) from
				// the IDCT difference.
				if worst > 0.06 {
					t.Errorf("Fill of a JPEG differs from torchvision by %.3g (tolerance 0.06)", worst)
				}
				return
			}
			if worst > 1e-5 {
				t.Errorf("Fill differs from torchvision by %.3g (tolerance 1e-5)", worst)
			}
		})
	}
}

// TestGoldenDecode compares decoded pixels with the reference decoders.
// Lossless formats must match exactly; JPEGs may differ by the documented
// IDCT differences between libjpeg and image/jpeg (tol is the allowed mean
// absolute difference in levels, 0.25; no value may differ by more than 8).
// Measured: mean 0.02-0.05, worst 3.
func TestGoldenDecode(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Decode {
		t.Run(c.Src, func(t *testing.T) {
			img, err := DecodeFile(filepath.Join("testdata", c.Src), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := readTestdata(t, c.RGB)
			if img.W != c.W || img.H != c.H {
				t.Fatalf("size %dx%d, want %dx%d", img.W, img.H, c.W, c.H)
			}
			var sum float64
			worst := 0
			for i, w := range want {
				d := int(img.Pix[i]) - int(w)
				if d < 0 {
					d = -d
				}
				sum += float64(d)
				worst = max(worst, d)
			}
			mean := sum / float64(len(want))
			t.Logf("mean |diff| %.3f, worst %d", mean, worst)
			if c.Tol == 0 && worst != 0 {
				t.Errorf("lossless decode differs: worst %d levels", worst)
			}
			if c.Tol > 0 && worst > 8 {
				t.Errorf("JPEG decode differs from libjpeg by %d levels somewhere (allowed 8)", worst)
			}
			if mean > c.Tol {
				t.Errorf("mean |diff| %.3f exceeds %.3f", mean, c.Tol)
			}
		})
	}
}
