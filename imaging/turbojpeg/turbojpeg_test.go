package turbojpeg

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

// requireLib skips the test, saying why, when libturbojpeg cannot be loaded.
func requireLib(tb testing.TB) {
	tb.Helper()
	if !Available() {
		testasset.Skip(tb, "libturbojpeg not available (%v); install libturbojpeg0 or set %s", LoadError(), EnvLibrary)
	}
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("read testdata: %v", err)
	}
	return data
}

// synthJPEG encodes a w x h image with smooth gradients, edges and noise
// through Go's encoder (4:2:0 YCbCr).
func synthJPEG(tb testing.TB, w, h int, seed uint64) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, 1))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := img.PixOffset(x, y)
			edge := uint8(0)
			if (x/17+y/13)%2 == 0 {
				edge = 40
			}
			img.Pix[i+0] = uint8(200*x/max(w, 1)) + edge
			img.Pix[i+1] = uint8(255*y/max(h, 1)) + uint8(r.IntN(16))
			img.Pix[i+2] = uint8(128+100*math.Sin(float64(x+y)/9)) + edge/2
			img.Pix[i+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		tb.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

// goRGB decodes data with image/jpeg and returns packed RGB, converting
// colour with the standard library's own YCbCr->RGB (nearest-neighbour
// chroma upsampling).
func goRGB(tb testing.TB, data []byte) (int, int, []uint8) {
	tb.Helper()
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("image/jpeg: %v", err)
	}
	b := img.Bounds()
	pix := make([]uint8, 0, 3*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			pix = append(pix, c.R, c.G, c.B)
		}
	}
	return b.Dx(), b.Dy(), pix
}

func absDiff(a, b []uint8) (mean float64, maxd int) {
	var sum int
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		sum += d
		maxd = max(maxd, d)
	}
	return float64(sum) / float64(len(a)), maxd
}

func TestScaleFor(t *testing.T) {
	tests := []struct {
		w, h, minW, minH int
		want             Scale
	}{
		{640, 480, 224, 224, Scale{1, 2}},   // 320x240
		{640, 480, 240, 240, Scale{1, 2}},   // exactly 240
		{640, 480, 241, 241, Scale{1, 1}},   // 1/2 gives 240 < 241
		{640, 480, 256, 256, Scale{1, 1}},   // shorter side 480 -> 256 needs full
		{1920, 1080, 224, 224, Scale{1, 4}}, // 480x270
		{4000, 3000, 224, 224, Scale{1, 8}}, // 500x375
		{4000, 3000, 500, 375, Scale{1, 8}}, // exact at 1/8
		{4001, 3001, 501, 376, Scale{1, 8}}, // ceil: 501x376
		{4001, 3001, 502, 376, Scale{1, 4}},
		{100, 50, 224, 224, Scale{1, 1}}, // upscaling is the caller's job
		{640, 480, 0, 0, Scale{1, 1}},    // non-positive: full size
		{640, 480, 0, 60, Scale{1, 1}},   // width must stay full
		{640, 480, 80, 0, Scale{1, 1}},
		{640, 480, 80, 60, Scale{1, 8}},
		{480, 640, 240, 320, Scale{1, 2}}, // portrait
		{480, 640, 320, 240, Scale{1, 1}}, // same target, wrong orientation
		{1, 1, 1, 1, Scale{1, 8}},         // ceil keeps 1 pixel
		{9, 9, 2, 2, Scale{1, 8}},         // ceil(9/8) = 2
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%dx%d_min%dx%d", tc.w, tc.h, tc.minW, tc.minH), func(t *testing.T) {
			got := ScaleFor(tc.w, tc.h, tc.minW, tc.minH)
			if got != tc.want {
				t.Fatalf("ScaleFor = %v, want %v", got, tc.want)
			}
			sw, sh := got.Apply(tc.w), got.Apply(tc.h)
			if got != (Scale{1, 1}) && (sw < tc.minW || sh < tc.minH) {
				t.Fatalf("scaled %dx%d is below the minimum %dx%d", sw, sh, tc.minW, tc.minH)
			}
			// No stronger reduction may also satisfy the minimum.
			for _, s := range reductions {
				if s.Denom > got.Denom && tc.minW > 0 && tc.minH > 0 && s.Apply(tc.w) >= tc.minW && s.Apply(tc.h) >= tc.minH {
					t.Fatalf("%v also satisfies the minimum; ScaleFor chose %v", s, got)
				}
			}
		})
	}
}

// TestDecodeMatchesGo compares full-size decodes with image/jpeg. Go
// upsamples chroma by pixel replication; libjpeg-turbo's default is "fancy"
// (triangular) upsampling, so the comparison is done both ways: with
// TJFLAG_FASTUPSAMPLE (replication, same as Go) only IDCT and rounding
// differ, and pixels must agree to a few levels; with the default the
// difference at chroma edges is larger but the mean stays small.
func TestDecodeMatchesGo(t *testing.T) {
	requireLib(t)
	// Synthetic images carry far more chroma detail than photos (noise and
	// hard colour edges), where replication and fancy upsampling differ by
	// tens of levels: they are held to the fast-upsampling bound only.
	files := []struct {
		name  string
		data  []byte
		photo bool
	}{
		{"dog_420.jpg", readTestdata(t, "dog_420.jpg"), true},
		{"dog_422.jpg", readTestdata(t, "dog_422.jpg"), true},
		{"dog_444.jpg", readTestdata(t, "dog_444.jpg"), true},
		{"dog_progressive.jpg", readTestdata(t, "dog_progressive.jpg"), true},
		{"eagle_grey.jpg", readTestdata(t, "eagle_grey.jpg"), true},
		{"synth_320x240.jpg", synthJPEG(t, 320, 240, 1), false},
		{"synth_97x61.jpg", synthJPEG(t, 97, 61, 2), false},
	}
	modes := []struct {
		name    string
		flags   int
		maxMean float64
		maxAbs  int
	}{
		{"fastupsample", tjflagFastUpsample, 0.3, 4},
		{"default", 0, 1.5, 40},
	}
	for _, f := range files {
		gw, gh, gpix := goRGB(t, f.data)
		for _, m := range modes {
			t.Run(f.name+"/"+m.name, func(t *testing.T) {
				w, h, pix, err := decode(f.data, 0, 0, nil, m.flags)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if w != gw || h != gh || len(pix) != len(gpix) {
					t.Fatalf("size %dx%d (%d bytes), image/jpeg gives %dx%d (%d bytes)", w, h, len(pix), gw, gh, len(gpix))
				}
				mean, maxd := absDiff(pix, gpix)
				t.Logf("%s %s: mean abs diff %.3f, max %d levels", f.name, m.name, mean, maxd)
				if m.flags == 0 && !f.photo {
					return
				}
				if mean > m.maxMean || maxd > m.maxAbs {
					t.Fatalf("differs from image/jpeg: mean %.3f (limit %.2f), max %d (limit %d)", mean, m.maxMean, maxd, m.maxAbs)
				}
			})
		}
	}
	t.Run("public_Decode_is_default", func(t *testing.T) {
		data := files[0].data
		_, _, a, err := Decode(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, b, err := decode(data, 0, 0, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("Decode differs from decode with default flags")
		}
	})
}

// boxDown averages f x f blocks of packed RGB (edge blocks are partial).
func boxDown(w, h int, pix []uint8, f int) (int, int, []uint8) {
	ow, oh := (w+f-1)/f, (h+f-1)/f
	out := make([]uint8, 3*ow*oh)
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			for c := 0; c < 3; c++ {
				sum, n := 0, 0
				for y := oy * f; y < min(h, oy*f+f); y++ {
					for x := ox * f; x < min(w, ox*f+f); x++ {
						sum += int(pix[3*(y*w+x)+c])
						n++
					}
				}
				out[3*(oy*ow+ox)+c] = uint8((sum + n/2) / n)
			}
		}
	}
	return ow, oh, out
}

// TestDecodeScaled checks output sizes for a table of images and targets,
// and that the reduced image shows the same picture as a box-filtered full
// decode (a DCT-domain reduction is close to a box average).
func TestDecodeScaled(t *testing.T) {
	requireLib(t)
	tests := []struct {
		w, h, minW, minH int
		wantW, wantH     int
	}{
		{640, 480, 224, 224, 320, 240},
		{640, 480, 256, 256, 640, 480},
		{640, 480, 0, 0, 640, 480},
		{640, 480, 80, 60, 80, 60},
		{640, 480, 1, 1, 80, 60},
		{480, 640, 224, 224, 240, 320},
		{1000, 750, 224, 224, 500, 375}, // 1/4 would be 250x188
		{1000, 750, 180, 180, 250, 188}, // ceil(750/4) = 188
		{1001, 333, 100, 40, 126, 42},   // 1/8: ceil(1001/8)=126, ceil(333/8)=42
		{37, 23, 5, 3, 5, 3},
		{37, 23, 5, 4, 10, 6},
		{17, 9, 300, 300, 17, 9},
	}
	var buf []uint8
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%dx%d_min%dx%d", tc.w, tc.h, tc.minW, tc.minH), func(t *testing.T) {
			data := synthJPEG(t, tc.w, tc.h, uint64(i))
			w, h, pix, err := DecodeScaled(data, tc.minW, tc.minH, buf)
			if err != nil {
				t.Fatalf("DecodeScaled: %v", err)
			}
			buf = pix
			if w != tc.wantW || h != tc.wantH || len(pix) != 3*w*h {
				t.Fatalf("got %dx%d (%d bytes), want %dx%d", w, h, len(pix), tc.wantW, tc.wantH)
			}
			info, err := DecodeInfo(data)
			if err != nil || info.Width != tc.w || info.Height != tc.h {
				t.Fatalf("DecodeInfo = %+v, %v; want %dx%d", info, err, tc.w, tc.h)
			}
			f := tc.w / w
			if f == 1 || w*f != tc.w || h*f != tc.h {
				return // the box comparison needs exact multiples
			}
			fw, fh, full, err := Decode(data, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, ref := boxDown(fw, fh, full, f)
			mean, maxd := absDiff(pix, ref)
			t.Logf("1/%d vs box-filtered full decode: mean %.2f, max %d", f, mean, maxd)
			if mean > 3 {
				t.Fatalf("scaled decode does not look like the image: mean abs diff %.2f to a box filter", mean)
			}
		})
	}
}

func TestDstReuse(t *testing.T) {
	requireLib(t)
	data := synthJPEG(t, 64, 48, 3)
	big := make([]uint8, 3*64*48+100)
	_, _, pix, err := Decode(data, big)
	if err != nil {
		t.Fatal(err)
	}
	if &pix[0] != &big[0] || len(pix) != 3*64*48 {
		t.Fatalf("large dst not reused (len %d)", len(pix))
	}
	small := make([]uint8, 10)
	_, _, pix, err = Decode(data, small)
	if err != nil {
		t.Fatal(err)
	}
	if &pix[0] == &small[0] {
		t.Fatal("small dst used for a larger image")
	}
}

// TestBadInput feeds corrupt, truncated and unsupported data; every case
// must fail with an error and never crash.
func TestBadInput(t *testing.T) {
	requireLib(t)
	good := readTestdata(t, "dog_420.jpg")
	prog := readTestdata(t, "dog_progressive.jpg")
	flipped := bytes.Clone(good)
	for i := len(flipped) / 3; i < len(flipped)-2; i += 97 {
		flipped[i] ^= 0xA5
	}
	badSOF := bytes.Clone(good)
	// Find the SOF0 marker and zero the image height and width.
	if i := bytes.Index(badSOF, []byte{0xFF, 0xC0}); i >= 0 {
		copy(badSOF[i+5:i+9], []byte{0, 0, 0, 0})
	} else {
		t.Fatal("no SOF0 in dog_420.jpg")
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0xFF}},
		{"soi only", []byte{0xFF, 0xD8}},
		{"png magic", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")},
		{"text", []byte(strings.Repeat("not a jpeg ", 100))},
		{"header only", good[:300]},
		{"truncated half", good[:len(good)/2]},
		{"truncated before EOI", good[:len(good)-2]},
		{"progressive truncated", prog[:len(prog)*2/3]},
		{"zero size in SOF", badSOF},
		{"cmyk", readTestdata(t, "eagle_cmyk.jpg")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, min := range []int{0, 16} {
				w, h, pix, err := DecodeScaled(tc.data, min, min, nil)
				if err == nil {
					t.Fatalf("no error (got %dx%d, %d bytes)", w, h, len(pix))
				}
				if pix != nil {
					t.Fatalf("pixels returned with error %v", err)
				}
				t.Logf("min %d: %v", min, err)
			}
		})
	}
	// Flipped bits inside entropy-coded data may decode to garbage without a
	// warning; the only requirement is no crash and a consistent result.
	t.Run("flipped bits", func(t *testing.T) {
		w, h, pix, err := DecodeScaled(flipped, 0, 0, nil)
		if err == nil && len(pix) != 3*w*h {
			t.Fatalf("inconsistent result %dx%d with %d bytes", w, h, len(pix))
		}
		t.Logf("flipped: %v", err)
	})
	t.Run("limit", func(t *testing.T) {
		prev := SetMaxPixels(100)
		defer SetMaxPixels(prev)
		if _, _, _, err := Decode(good, nil); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
			t.Fatalf("want a size-limit error, got %v", err)
		}
		// 1/8 of 203x157 is 26x20 = 520 pixels: still over 100.
		if _, _, _, err := DecodeScaled(good, 1, 1, nil); err == nil {
			t.Fatal("want a size-limit error at 1/8")
		}
	})
	t.Run("warning is typed", func(t *testing.T) {
		_, _, _, err := Decode(good[:len(good)/2], nil)
		var te *Error
		if !errors.As(err, &te) {
			t.Fatalf("want *Error, got %T %v", err, err)
		}
		if !te.Warning {
			t.Logf("truncation reported as fatal by this library: %v", te)
		}
	})
}

// TestConcurrent decodes from many goroutines (each reusing its buffer) and
// compares with serial results; run with -race to check the handle pool.
func TestConcurrent(t *testing.T) {
	requireLib(t)
	var inputs [][]byte
	for _, n := range []string{"dog_420.jpg", "dog_422.jpg", "dog_444.jpg", "dog_progressive.jpg", "eagle_grey.jpg"} {
		inputs = append(inputs, readTestdata(t, n))
	}
	inputs = append(inputs, synthJPEG(t, 160, 120, 9))
	want := make([][]uint8, len(inputs))
	for i, d := range inputs {
		_, _, pix, err := DecodeScaled(d, 40, 40, nil)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = pix
	}
	workers := max(4, 2*runtime.GOMAXPROCS(0))
	iters := 30
	if testing.Short() {
		iters = 5
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var buf []uint8
			for it := 0; it < iters; it++ {
				i := (g + it) % len(inputs)
				_, _, pix, err := DecodeScaled(inputs[i], 40, 40, buf)
				if err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(pix, want[i]) {
					errc <- fmt.Errorf("goroutine %d: input %d differs from the serial decode", g, i)
					return
				}
				buf = pix
				if it%7 == 0 {
					// Interleave failures: they must not poison a pooled handle.
					if _, _, _, err := Decode(inputs[i][:len(inputs[i])/2], nil); err == nil {
						errc <- errors.New("truncated input decoded")
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestUnavailable runs this test binary again with HEADTUNE_TURBOJPEG_LIB
// pointing at a missing file, so the no-library path is exercised even where
// the library is installed.
func TestUnavailable(t *testing.T) {
	if os.Getenv("TURBOJPEG_TEST_CHILD") == "1" {
		if Available() {
			t.Fatal("Available() with a missing library")
		}
		if err := LoadError(); err == nil || !strings.Contains(err.Error(), "/nonexistent/libturbojpeg.so.0") {
			t.Fatalf("LoadError = %v, want it to name the path", err)
		}
		if _, _, _, err := DecodeScaled([]byte{0xFF, 0xD8}, 1, 1, nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("DecodeScaled error = %v, want ErrUnavailable", err)
		}
		if Path() != "" || Version() != "" {
			t.Fatalf("Path %q Version %q without a library", Path(), Version())
		}
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("SKIP: cannot find the test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestUnavailable$", "-test.v")
	cmd.Env = append(os.Environ(), "TURBOJPEG_TEST_CHILD=1", EnvLibrary+"=/nonexistent/libturbojpeg.so.0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestUnavailable")) {
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

func TestLoadInfo(t *testing.T) {
	requireLib(t)
	if Path() == "" || Version() == "" {
		t.Fatalf("Path %q, Version %q with the library loaded", Path(), Version())
	}
	t.Logf("loaded %s (%s)", Path(), Version())
	if err := Load("/nonexistent/other.so"); err == nil {
		t.Fatal("Load of another library after the first succeeded")
	}
}

func FuzzDecodeScaled(f *testing.F) {
	for _, n := range []string{"dog_420.jpg", "dog_422.jpg", "dog_444.jpg", "dog_progressive.jpg", "eagle_grey.jpg", "eagle_cmyk.jpg"} {
		d := readTestdata(f, n)
		f.Add(d, 0, 0)
		f.Add(d, 30, 20)
		f.Add(d[:len(d)/2], 1, 1)
	}
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD9}, 0, 0)
	f.Add([]byte{}, 5, 5)
	if !Available() {
		testasset.Skip(f, "libturbojpeg not available (%v)", LoadError())
	}
	prev := SetMaxPixels(1 << 20) // keep crafted giant headers cheap
	f.Cleanup(func() { SetMaxPixels(prev) })
	f.Fuzz(func(t *testing.T, data []byte, minW, minH int) {
		w, h, pix, err := DecodeScaled(data, minW%5000, minH%5000, nil)
		if err != nil {
			if pix != nil {
				t.Fatalf("pixels with error %v", err)
			}
			return
		}
		if w <= 0 || h <= 0 || len(pix) != 3*w*h {
			t.Fatalf("inconsistent result %dx%d, %d bytes", w, h, len(pix))
		}
		info, err := DecodeInfo(data)
		if err != nil {
			t.Fatalf("decoded but header fails: %v", err)
		}
		if s := ScaleFor(info.Width, info.Height, minW%5000, minH%5000); s.Apply(info.Width) != w || s.Apply(info.Height) != h {
			t.Fatalf("size %dx%d, want %v of %dx%d", w, h, s, info.Width, info.Height)
		}
	})
}
