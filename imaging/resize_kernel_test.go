package imaging

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestResizeKernelsAgree: the AVX2 kernels must give the same bytes as the
// Go kernels for every interpolation, reduction and enlargement, odd widths
// (row tails of 1..15 bytes), windows, and sources whose last row ends the
// buffer (the AVX2 horizontal kernel reads 4 bytes per pixel).
func TestResizeKernelsAgree(t *testing.T) {
	if !resizeAVX2 {
		t.Skip("SKIP: this CPU has no AVX2: only the Go kernels run, nothing to compare")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type geo struct{ sw, sh, w, h int }
	geos := []geo{
		{320, 240, 224, 224}, {640, 480, 224, 224}, {1, 1, 5, 3}, {2, 3, 1, 1},
		{7, 5, 3, 11}, {17, 9, 16, 16}, {100, 1, 33, 7}, {4000, 30, 224, 5},
		{224, 224, 224, 224}, {225, 224, 224, 224}, {224, 300, 224, 224}, {31, 29, 299, 301},
	}
	for i := 0; i < 20; i++ {
		geos = append(geos, geo{1 + rng.IntN(700), 1 + rng.IntN(500), 1 + rng.IntN(300), 1 + rng.IntN(300)})
	}
	taps := map[int]bool{} // horizontal tap counts the AVX2 kernels ran with
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest} {
		for _, g := range geos {
			src := &RGB{W: g.sw, H: g.sh, Pix: make([]uint8, g.sw*g.sh*3)}
			for i := range src.Pix {
				src.Pix[i] = uint8(rng.IntN(256))
			}
			// A window in the middle as well as the whole image.
			x0, y0 := g.w/4, g.h/3
			wins := [][4]int{{0, 0, g.w, g.h}, {x0, y0, g.w - x0, g.h - y0}}
			for _, win := range wins {
				if win[2] <= 0 || win[3] <= 0 {
					continue
				}
				name := fmt.Sprintf("%s %dx%d->%dx%d window %v", interp, g.sw, g.sh, g.w, g.h, win)
				run := func(avx bool) []uint8 {
					defer func(v bool) { resizeAVX2 = v }(resizeAVX2)
					resizeAVX2 = avx
					r, err := NewResizer(interp)
					if err != nil {
						t.Fatal(err)
					}
					out, err := r.ResizeWindow(nil, src, g.w, g.h, win[0], win[1], win[2], win[3])
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if avx && r.h.fixed && win[2] >= 3 {
						taps[r.h.ksize] = true
					}
					return out.Pix
				}
				want, got := run(false), run(true)
				if !bytes.Equal(got, want) {
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%s: byte %d (pixel %d, channel %d) is %d with AVX2, %d without", name, i, i/3, i%3, got[i], want[i])
						}
					}
				}
			}
		}
	}
	// Every unrolled kernel (2..8 taps) and the looped one (9 or more) ran.
	for ks := 2; ks <= 9; ks++ {
		if !taps[ks] && !(ks == 9 && anyAbove(taps, 8)) {
			t.Errorf("no case ran the AVX2 horizontal kernel with %d taps (ran %v)", ks, taps)
		}
	}
}

func anyAbove(m map[int]bool, n int) bool {
	for k := range m {
		if k > n {
			return true
		}
	}
	return false
}

// TestNormaliseKernelsAgree: the AVX2 normalisation must give the same
// float32 bits as the lookup table for both layouts and channel orders,
// odd pixel counts (tails of 1..7 pixels) and arbitrary scale, mean and
// std.
func TestNormaliseKernelsAgree(t *testing.T) {
	if !normaliseAVX2 {
		t.Skip("SKIP: this CPU has no AVX2: only the lookup table runs, nothing to compare")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 40; trial++ {
		s, _ := Preset("imagenet")
		w, h := 1+rng.IntN(40), 1+rng.IntN(40)
		if trial == 0 {
			w, h = 224, 224
		}
		s = s.WithInput(w, h, 3, []string{LayoutNCHW, LayoutNHWC}[trial%2])
		s.ChannelOrder = []string{OrderRGB, OrderBGR}[(trial/2)%2]
		if trial >= 4 {
			s.Scale = rng.Float32()*2 - 0.5
			for c := range s.Mean {
				s.Mean[c] = rng.Float32()*200 - 100
				s.Std[c] = rng.Float32()*60 + 1e-3
			}
		}
		pix := make([]uint8, w*h*3)
		for i := range pix {
			pix[i] = uint8(rng.IntN(256))
		}
		run := func(avx bool) []float32 {
			defer func(v bool) { normaliseAVX2 = v }(normaliseAVX2)
			normaliseAVX2 = avx
			dst := make([]float32, s.TensorLen())
			s.normalise(pix, dst, NewScratch())
			return dst
		}
		want, got := run(false), run(true)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s %s %dx%d scale %g mean %v std %v: value %d is %g with AVX2, %g from the table",
					s.Layout, s.ChannelOrder, w, h, s.Scale, s.Mean, s.Std, i, got[i], want[i])
			}
		}
	}
}
