package imaging

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/draw"
)

func noiseRGB(w, h int, seed uint64) *RGB {
	r := rand.New(rand.NewPCG(seed, 1))
	img := NewRGB(w, h)
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
	}
	return img
}

// TestResizeWindowEqualsCrop: computing only a window must give exactly the
// pixels of the full resize followed by a crop, for every interpolation.
func TestResizeWindowEqualsCrop(t *testing.T) {
	src := noiseRGB(97, 61, 1)
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest} {
		for _, size := range [][2]int{{40, 30}, {97, 61}, {150, 61}, {97, 200}, {13, 7}} {
			r, _ := NewResizer(interp)
			full, err := r.Resize(nil, src, size[0], size[1])
			if err != nil {
				t.Fatal(err)
			}
			x0, y0 := size[0]/4, size[1]/3
			w, h := size[0]-x0-size[0]/5, size[1]-y0-1
			win, err := r.ResizeWindow(nil, src, size[0], size[1], x0, y0, w, h)
			if err != nil {
				t.Fatal(err)
			}
			for y := 0; y < h; y++ {
				a := full.Pix[((y0+y)*full.W+x0)*3 : ((y0+y)*full.W+x0+w)*3]
				b := win.Pix[y*w*3 : (y+1)*w*3]
				if string(a) != string(b) {
					t.Fatalf("%s %v: window row %d differs from the cropped full resize", interp, size, y)
				}
			}
		}
	}
}

// TestResizeInvariants: a constant image stays constant, the same size is
// an identity, and a 2x area reduction averages 2x2 blocks.
func TestResizeInvariants(t *testing.T) {
	flat := NewRGB(50, 37)
	for i := range flat.Pix {
		flat.Pix[i] = []uint8{17, 200, 255}[i%3]
	}
	src := noiseRGB(64, 48, 2)
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest} {
		r, _ := NewResizer(interp)
		for _, size := range [][2]int{{11, 9}, {200, 3}, {50, 37}} {
			out, err := r.Resize(nil, flat, size[0], size[1])
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range out.Pix {
				if v != []uint8{17, 200, 255}[i%3] {
					t.Fatalf("%s to %v: constant image changed at %d: %d", interp, size, i, v)
				}
			}
		}
		same, _ := r.Resize(nil, src, 64, 48)
		if string(same.Pix) != string(src.Pix) {
			t.Errorf("%s: same-size resize is not the identity", interp)
		}
	}
	r, _ := NewResizer(InterpArea)
	half, _ := r.Resize(nil, src, 32, 24) // exact 2x2 box average
	for y := 0; y < 24; y++ {
		for x := 0; x < 32; x++ {
			for c := 0; c < 3; c++ {
				s := 0
				for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
					s += int(src.Pix[((2*y+d[1])*64+2*x+d[0])*3+c])
				}
				// Two rounded passes (as in PIL): within one level of the
				// exact mean.
				want := float64(s) / 4
				if got := float64(half.Pix[(y*32+x)*3+c]); math.Abs(got-want) > 1 {
					t.Fatalf("area 2x at (%d,%d,%d) = %v, want %v", x, y, c, got, want)
				}
			}
		}
	}
	if _, err := r.ResizeWindow(nil, src, 10, 10, 5, 5, 6, 6); err == nil {
		t.Error("window outside the target accepted")
	}
	if _, err := NewResizer("lanczos"); err == nil {
		t.Error("unknown interpolation accepted")
	}
}

// TestFillLayouts checks every layout/order/channel combination against a
// direct per-pixel formula on a squash to the source size (an identity
// resize), so each output value can be predicted exactly.
func TestFillLayouts(t *testing.T) {
	src := noiseRGB(7, 5, 3)
	sc := NewScratch()
	for _, layout := range []string{LayoutNCHW, LayoutNHWC} {
		for _, order := range []string{OrderRGB, OrderBGR} {
			for _, ch := range []int{3, 1} {
				s, _ := Preset("imagenet")
				s.Resize, s.ResizeShorter = ResizeSquash, 0
				s = s.WithInput(7, 5, ch, layout)
				s.ChannelOrder = order
				dst := make([]float32, s.TensorLen())
				if err := s.Fill(src, dst, sc); err != nil {
					t.Fatal(err)
				}
				for y := 0; y < 5; y++ {
					for x := 0; x < 7; x++ {
						p := src.Pix[(y*7+x)*3 : (y*7+x)*3+3]
						for c := 0; c < ch; c++ {
							var v float64
							if ch == 1 {
								v = 0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2])
							} else if order == OrderRGB {
								v = float64(p[c])
							} else {
								v = float64(p[2-c])
							}
							want := (v/255 - float64(s.Mean[c])) / float64(s.Std[c])
							var got float32
							if layout == LayoutNCHW {
								got = dst[c*35+y*7+x]
							} else {
								got = dst[(y*7+x)*ch+c]
							}
							if math.Abs(float64(got)-want) > 1e-5 {
								t.Fatalf("%s %s %dch at (%d,%d,%d): %v, want %v", layout, order, ch, x, y, c, got, want)
							}
						}
					}
				}
			}
		}
	}
	s, _ := Preset("imagenet")
	if err := s.Fill(src, make([]float32, 10), sc); err == nil || !strings.Contains(err.Error(), "needs 150528") {
		t.Errorf("short destination: %v", err)
	}
}

func TestLetterbox(t *testing.T) {
	src := NewRGB(40, 10)
	for i := range src.Pix {
		src.Pix[i] = 200
	}
	s, _ := Preset("raw")
	s.Resize, s.ResizeShorter = ResizeLetterbox, 0
	s = s.WithInput(20, 20, 3, LayoutNCHW)
	s.Background = [3]uint8{1, 2, 3}
	out, err := s.Resized(src)
	if err != nil {
		t.Fatal(err)
	}
	// 40x10 fits as 20x5 at rows 7..11.
	for y := 0; y < 20; y++ {
		for x := 0; x < 20; x++ {
			p := out.Pix[(y*20+x)*3 : (y*20+x)*3+3]
			inside := y >= 7 && y < 12
			if inside && (p[0] != 200 || p[2] != 200) || !inside && (p[0] != 1 || p[1] != 2 || p[2] != 3) {
				t.Fatalf("(%d,%d) = %v (inside=%v)", x, y, p, inside)
			}
		}
	}
}

// TestLoadNoAllocs: after warm-up, preprocessing a decoded image allocates
// nothing.
func TestFillNoAllocs(t *testing.T) {
	src := noiseRGB(640, 480, 4)
	s, _ := Preset("imagenet")
	dst := make([]float32, s.TensorLen())
	sc := NewScratch()
	allocs := testing.AllocsPerRun(5, func() {
		if err := s.Fill(src, dst, sc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Fill allocates %v times per image after warm-up", allocs)
	}
}

// TestAntialiasing downsizes a 1-pixel checkerboard (the worst case for
// aliasing) from 640x480 to the 224x224 crop: an antialiased filter must
// give nearly uniform grey, while point-sampling bilinear (x/image/draw's
// ApproxBiLinear, the usual Go baseline) returns the pattern's extremes.
func TestAntialiasing(t *testing.T) {
	src := NewRGB(640, 480)
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			v := uint8(0)
			if (x+y)%2 == 0 {
				v = 255
			}
			i := (y*640 + x) * 3
			src.Pix[i], src.Pix[i+1], src.Pix[i+2] = v, v, v
		}
	}
	spread := func(pix []uint8, stride, w, h, bpp int) (lo, hi uint8) {
		lo = 255
		for y := 2; y < h-2; y++ { // ignore the borders
			for x := 2; x < w-2; x++ {
				v := pix[y*stride+x*bpp]
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		return lo, hi
	}
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea} {
		s, _ := Preset("imagenet")
		s.Interpolation = interp
		out, err := s.Resized(src)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := spread(out.Pix, 224*3, 224, 224, 3)
		t.Logf("%s: output range %d..%d", interp, lo, hi)
		if int(hi)-int(lo) > 40 {
			t.Errorf("%s aliases: output range %d..%d on a checkerboard", interp, lo, hi)
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, 224, 224))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src.Image(), image.Rect(80, 20, 560, 460), draw.Src, nil)
	lo, hi := spread(dst.Pix, dst.Stride, 224, 224, 4)
	t.Logf("x/image/draw ApproxBiLinear: output range %d..%d", lo, hi)
	if int(hi)-int(lo) < 100 {
		t.Logf("note: the baseline did not alias on this pattern")
	}
}

// TestLoadMatchesDecodeFill: Load on a file equals Decode + Fill, reuses
// the scratch across differently sized images, and names the file in
// errors.
func TestLoadMatchesDecodeFill(t *testing.T) {
	s, _ := Preset("imagenet")
	s = s.WithInput(64, 64, 3, LayoutNHWC)
	sc := NewScratch()
	for _, name := range []string{"src_landscape.png", "src_portrait.png", "fmt_odd420.jpg", "orient6.png", "src_landscape.png"} {
		p := filepath.Join("testdata", name)
		got := make([]float32, s.TensorLen())
		if err := s.Load(p, got, sc); err != nil {
			t.Fatal(err)
		}
		img, err := DecodeFile(p, DecodeOptions{Background: s.Background})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, s.TensorLen())
		if err := s.Fill(img, want, nil); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: Load differs from Decode+Fill at %d: %v vs %v", name, i, got[i], want[i])
			}
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.png")
	os.WriteFile(bad, []byte("not an image"), 0o644)
	err := s.Load(bad, make([]float32, s.TensorLen()), sc)
	if err == nil || !strings.HasPrefix(err.Error(), "decode "+bad+": unknown image format") {
		t.Errorf("error %v", err)
	}
	if err := s.Load(filepath.Join(t.TempDir(), "missing.jpg"), make([]float32, s.TensorLen()), sc); err == nil || !strings.Contains(err.Error(), "missing.jpg") {
		t.Errorf("missing file error %v", err)
	}
}

// TestLoadBytesFastJPEG: with FastJPEG the hook gets the smallest decode
// size the resize needs (the shorter side target, in both dimensions).
func TestLoadBytesFastJPEG(t *testing.T) {
	defer func(f func([]byte, int, int) (*RGB, bool, error)) { FastJPEGDecoder = f }(FastJPEGDecoder)
	var gotW, gotH, calls int
	FastJPEGDecoder = func(data []byte, minW, minH int) (*RGB, bool, error) {
		calls++
		gotW, gotH = minW, minH
		return noiseRGB(300, 280, 5), true, nil
	}
	jpg := encodeJPEG(t, quadrants(640, 480), 80)
	s, _ := Preset("imagenet")
	dst := make([]float32, s.TensorLen())
	if err := s.LoadBytes(jpg, dst, nil); err != nil || calls != 0 {
		t.Fatalf("FastJPEG off: calls %d, err %v", calls, err)
	}
	s.FastJPEG = true
	if err := s.LoadBytes(jpg, dst, nil); err != nil || calls != 1 {
		t.Fatalf("FastJPEG on: calls %d, err %v", calls, err)
	}
	if gotW != 256 || gotH != 256 {
		t.Errorf("hook asked for at least %dx%d, want 256x256", gotW, gotH)
	}
}

// TestLoadBytesRegion: LoadBytes converts only the part of a JPEG that the
// crop reads; the tensor must equal the one from a full conversion, with
// garbage left in the unconverted pixels.
func TestLoadBytesRegion(t *testing.T) {
	var files [][]byte
	for _, sz := range [][2]int{{640, 480}, {480, 640}, {333, 201}, {201, 333}, {97, 97}, {50, 9}, {3, 40}} {
		files = append(files, encodeJPEG(t, noisyPhoto(sz[0], sz[1]), 85))
	}
	g := image.NewGray(image.Rect(0, 0, 301, 207))
	copy(g.Pix, noiseRGB(301, 207, 9).Pix)
	files = append(files, encodeJPEG(t, g, 85))
	for _, name := range []string{"fmt_photo444.jpg", "fmt_photo422.jpg", "fmt_odd420.jpg"} {
		files = append(files, readTestdata(t, name))
	}
	sc := NewScratch()
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest} {
		for _, shorter := range []int{0, 40, 73} {
			s, _ := Preset("imagenet")
			s = s.WithInput(32, 24, 3, LayoutNCHW)
			s.Interpolation = interp
			s.ResizeShorter = shorter
			for i, data := range files {
				garbage := make([]uint8, 700*700*3)
				for j := range garbage {
					garbage[j] = uint8(j*7 + 13)
				}
				sc.decoded = RGB{Pix: garbage[:0]}
				got := make([]float32, s.TensorLen())
				if err := s.LoadBytes(data, got, sc); err != nil {
					t.Fatal(err)
				}
				img, err := Decode(data, DecodeOptions{Background: s.Background})
				if err != nil {
					t.Fatal(err)
				}
				want := make([]float32, s.TensorLen())
				if err := s.Fill(img, want, nil); err != nil {
					t.Fatal(err)
				}
				for k := range want {
					if got[k] != want[k] {
						t.Fatalf("%s shorter %d file %d (%dx%d): value %d differs: %v vs %v", interp, shorter, i, img.W, img.H, k, got[k], want[k])
					}
				}
				if i == 1 && shorter == 0 { // 480x640 cropped to 4:3: row 0 is never read
					if p := sc.decoded.Pix[:3]; p[0] != 13 || p[1] != 20 || p[2] != 27 {
						t.Errorf("%s: pixel (0,0) was converted (%v): the region was not used", interp, p)
					}
				}
			}
		}
	}
}

// noisyPhoto is smooth colour with noise, so JPEG chroma is non-trivial.
func noisyPhoto(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	n := noiseRGB(w, h, uint64(w*h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x)
			img.Pix[4*i] = uint8(x*255/w) ^ n.Pix[3*i]&31
			img.Pix[4*i+1] = uint8(y*255/h) ^ n.Pix[3*i+1]&31
			img.Pix[4*i+2] = uint8((x+y)*127/(w+h)) ^ n.Pix[3*i+2]&63
			img.Pix[4*i+3] = 255
		}
	}
	return img
}

// TestPaddedTaps: padding the horizontal tables to a fixed tap count must
// keep every output's (source index -> weight) map unchanged.
func TestPaddedTaps(t *testing.T) {
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest} {
		for _, in := range []int{1, 2, 3, 5, 8, 17, 64, 255, 640} {
			for _, out := range []int{1, 2, 3, 7, 16, 33, 224, 341, 700} {
				var plain, padded coeffs
				plain.build(axisKey{in: in, out: out, n: out, interp: interp})
				padded.build(axisKey{in: in, out: out, n: out, interp: interp, pad: true})
				if plain.identity {
					continue
				}
				weights := func(c *coeffs, i int) map[int]int32 {
					m := map[int]int32{}
					for j, w := range c.w[i*c.ksize : i*c.ksize+int(c.count[i])] {
						if w != 0 {
							m[int(c.start[i])+j] = w
						}
					}
					return m
				}
				for i := 0; i < out; i++ {
					a, b := weights(&plain, i), weights(&padded, i)
					if fmt.Sprint(a) != fmt.Sprint(b) {
						t.Fatalf("%s %d->%d output %d: %v vs padded %v", interp, in, out, i, a, b)
					}
					if padded.fixed && (int(padded.start[i]) < 0 || int(padded.start[i])+padded.ksize > in) {
						t.Fatalf("%s %d->%d output %d: padded window %d+%d outside the source", interp, in, out, i, padded.start[i], padded.ksize)
					}
				}
			}
		}
	}
}
