package imaging

import (
	"fmt"
	"image"
	"math"
)

// The resampler reproduces Pillow's ImagingResample (Resample.c, Pillow
// 7-10) for 8-bit images: coefficients are computed in float64 exactly as
// Pillow does, converted to 22-bit fixed point, and applied as a horizontal
// pass (rounded to 8 bits) followed by a vertical pass. With the same source
// pixels the output is bit-identical to PIL's Image.resize for bilinear and
// bicubic; torchvision 0.14 uses that for PIL images. "area" uses the same
// machinery with exact pixel-coverage weights (OpenCV's INTER_AREA), which
// equal PIL's BOX for integer reduction factors but, unlike BOX, do not
// alias at fractional ones.

const (
	precisionBits = 32 - 8 - 2 // Pillow's PRECISION_BITS for 8-bit images
	fixedHalf     = 1 << (precisionBits - 1)
)

type filterFunc func(x float64) float64

func bilinearFilter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

func bicubicFilter(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64(float64((a+2)*x)-(a+3))*x)*x) + 1
	}
	if x < 2 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0
}

// boxFilter is PIL's BOX kernel. "area" computes exact coverage weights
// instead (see coeffs.build); the kernel only sets the support.
func boxFilter(x float64) float64 {
	if x > -0.5 && x <= 0.5 {
		return 1
	}
	return 0
}

// filterFor returns the kernel and its support (in source pixels at scale 1)
// for an interpolation name; nearest has no kernel.
func filterFor(interp string) (filterFunc, float64, error) {
	switch interp {
	case InterpBilinear:
		return bilinearFilter, 1, nil
	case InterpBicubic:
		return bicubicFilter, 2, nil
	case InterpArea:
		return boxFilter, 0.5, nil
	case InterpNearest:
		return nil, 0, nil
	}
	return nil, 0, fmt.Errorf("unknown interpolation %q (want bilinear, bicubic, area or nearest)", interp)
}

// coeffs holds the fixed-point weights of one axis: output i reads source
// samples start[i] .. start[i]+count[i]-1 with weights w[i*ksize:].
type coeffs struct {
	key      axisKey
	ksize    int
	start    []int32
	count    []int32
	w        []int32
	identity bool // output i is source i+off exactly: a copy
	off      int
	fixed    bool    // every output has exactly ksize taps
	pairs    []int32 // w expanded for horizontalPairsAVX2; built on first use
}

// expandPairs lays out a fixed-tap table for horizontalPairsAVX2: for the
// output pair p and tap j, 8 int32s at (p*ksize+j)*8: output 2p's weight
// four times (R, G, B and the stray fourth byte), then output 2p+1's.
func (c *coeffs) expandPairs() {
	ks, np := c.ksize, c.key.n/2
	c.pairs = growI32(c.pairs, np*ks*8)
	for p := 0; p < np; p++ {
		for j := 0; j < ks; j++ {
			d := c.pairs[(p*ks+j)*8 : (p*ks+j+1)*8]
			a, b := c.w[2*p*ks+j], c.w[(2*p+1)*ks+j]
			d[0], d[1], d[2], d[3] = a, a, a, a
			d[4], d[5], d[6], d[7] = b, b, b, b
		}
	}
}

type axisKey struct {
	in, out, first, n int
	interp            string
	pad               bool // give every output exactly ksize taps (see build)
}

// build computes the coefficients of outputs first..first+n-1 of a resize of
// `in` samples to `out` samples, as Pillow's precompute_coeffs and
// normalize_coeffs_8bpc do. It reuses c's slices.
func (c *coeffs) build(k axisKey) {
	c.key = k
	c.identity, c.fixed = false, false
	c.pairs = c.pairs[:0]
	if k.in == k.out {
		// Pillow skips the pass when the size does not change; the
		// coefficients would be the identity anyway.
		c.identity, c.off = true, k.first
		return
	}
	if k.interp == InterpNearest {
		c.ksize = 1
		c.start = growI32(c.start, k.n)
		c.count = growI32(c.count, k.n)
		c.w = growI32(c.w, k.n)
		scale := float64(k.in) / float64(k.out)
		for i := 0; i < k.n; i++ {
			x := int(math.Floor(float64(float64(float64(k.first+i)+0.5) * scale)))
			x = min(max(x, 0), k.in-1)
			c.start[i], c.count[i], c.w[i] = int32(x), 1, 1<<precisionBits
		}
		return
	}
	filter, fsupport, _ := filterFor(k.interp)
	scale := float64(k.in) / float64(k.out)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := fsupport * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	area := k.interp == InterpArea
	if area {
		// Footprint of one output pixel: scale source pixels, touching
		// at most ceil(scale)+1 of them.
		ksize = int(math.Ceil(scale)) + 2
	}
	c.ksize = ksize
	c.start = growI32(c.start, k.n)
	c.count = growI32(c.count, k.n)
	c.w = growI32(c.w, k.n*ksize)
	var tmp [64]float64
	var dw []float64
	if ksize <= len(tmp) {
		dw = tmp[:ksize]
	} else {
		dw = make([]float64, ksize)
	}
	ss := 1.0 / filterscale
	for i := 0; i < k.n; i++ {
		xx := k.first + i
		var xmin, xmax int
		ww := 0.0
		if area {
			// Exact coverage: the source, as a piecewise-constant
			// image, averaged over [lo, hi).
			lo, hi := float64(xx)*scale, float64(xx+1)*scale
			xmin = max(int(math.Floor(lo)), 0)
			xmax = min(int(math.Ceil(hi)), k.in, xmin+ksize) - xmin
			for x := 0; x < xmax; x++ {
				j := float64(x + xmin)
				w := min(hi, j+1) - max(lo, j)
				if w < 0 {
					w = 0
				}
				dw[x] = w
				ww += w
			}
		} else {
			center := float64(float64(xx)+0.5) * scale
			xmin = int(center - support + 0.5)
			if xmin < 0 {
				xmin = 0
			}
			xmax = int(center + support + 0.5)
			if xmax > k.in {
				xmax = k.in
			}
			xmax -= xmin
			for x := 0; x < xmax; x++ {
				w := filter(float64(float64(float64(x+xmin)-center)+0.5) * ss)
				dw[x] = w
				ww += w
			}
		}
		row := c.w[i*ksize : (i+1)*ksize]
		for x := 0; x < xmax; x++ {
			w := dw[x]
			if ww != 0 {
				w /= ww
			}
			if w < 0 {
				row[x] = int32(-0.5 + float64(w*(1<<precisionBits)))
			} else {
				row[x] = int32(0.5 + float64(w*(1<<precisionBits)))
			}
		}
		for x := xmax; x < ksize; x++ {
			row[x] = 0
		}
		c.start[i], c.count[i] = int32(xmin), int32(xmax)
	}
	if k.pad {
		c.padTaps()
	}
}

// padTaps gives every output the same number of taps (the largest count)
// so that the horizontal kernel runs a fixed, unrolled loop, and repacks
// the table with that stride. The extra taps have weight 0, so sums (and
// results) are unchanged. Near the right edge the window moves left and
// the weights right.
func (c *coeffs) padTaps() {
	n, ks := c.key.n, c.ksize
	mc := 0
	for _, cnt := range c.count[:n] {
		mc = max(mc, int(cnt))
	}
	if mc == 0 || mc > c.key.in {
		return
	}
	var tmp [64]int32
	var row []int32
	if mc <= len(tmp) {
		row = tmp[:mc]
	} else {
		row = make([]int32, mc)
	}
	for i := 0; i < n; i++ {
		cnt, st := int(c.count[i]), int(c.start[i])
		clear(row)
		off := 0
		if st+mc > c.key.in {
			off = st + mc - c.key.in
		}
		copy(row[off:], c.w[i*ks:i*ks+cnt])
		copy(c.w[i*mc:(i+1)*mc], row) // i*mc <= i*ks: never overwrites a row not yet moved
		c.start[i], c.count[i] = int32(st-off), int32(mc)
	}
	c.ksize = mc
	c.fixed = true
}

func growI32(s []int32, n int) []int32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]int32, n)
}

func growU8(s []uint8, n int) []uint8 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]uint8, n)
}

// Resizer resamples packed 8-bit RGB images. It caches the coefficient
// tables of the last geometry and keeps its scratch rows, so resizing a
// stream of same-sized images allocates nothing after the first. A Resizer
// is not safe for concurrent use: keep one per worker (Scratch does).
type Resizer struct {
	interp string
	h, v   coeffs
	tmp    []uint8 // horizontal-pass output, rows x outW x 3
	acc    []int32 // one row of vertical accumulators
}

// NewResizer returns a Resizer for "bilinear", "bicubic", "area" or
// "nearest".
func NewResizer(interp string) (*Resizer, error) {
	if _, _, err := filterFor(interp); err != nil {
		return nil, err
	}
	return &Resizer{interp: interp}, nil
}

// Interpolation returns the interpolation name the Resizer was made for.
func (r *Resizer) Interpolation() string { return r.interp }

// Resize scales src to w x h pixels, reusing dst's memory when it is large
// enough (dst may be nil). It returns the image written, which is dst when
// dst was non-nil. src and dst must not share memory.
func (r *Resizer) Resize(dst, src *RGB, w, h int) (*RGB, error) {
	return r.ResizeWindow(dst, src, w, h, 0, 0, w, h)
}

// ResizeWindow computes the window (x0, y0, w, h) of src scaled to fullW x
// fullH, i.e. Resize to fullW x fullH followed by a crop, without computing
// the pixels outside the window. The window must lie inside fullW x fullH.
// The pixels equal those of the full resize exactly.
func (r *Resizer) ResizeWindow(dst, src *RGB, fullW, fullH, x0, y0, w, h int) (*RGB, error) {
	if src == nil || src.W <= 0 || src.H <= 0 || len(src.Pix) < src.W*src.H*3 {
		return nil, fmt.Errorf("resize: empty or inconsistent source image")
	}
	if fullW <= 0 || fullH <= 0 || w <= 0 || h <= 0 || x0 < 0 || y0 < 0 || x0+w > fullW || y0+h > fullH {
		return nil, fmt.Errorf("resize: window %dx%d+%d+%d does not fit in %dx%d", w, h, x0, y0, fullW, fullH)
	}
	if int64(fullW)*int64(fullH) > 1<<31 {
		return nil, fmt.Errorf("resize: target %dx%d is too large", fullW, fullH)
	}
	if dst == nil {
		dst = &RGB{}
	}
	dst.W, dst.H = w, h
	dst.Pix = growU8(dst.Pix, w*h*3)

	r.prepare(src.W, src.H, fullW, fullH, x0, y0, w, h)

	// Source rows the vertical pass reads.
	var yFirst, yLast int
	if r.v.identity {
		yFirst, yLast = r.v.off, r.v.off+h
	} else {
		yFirst = int(r.v.start[0])
		yLast = int(r.v.start[h-1] + r.v.count[h-1])
		for i := 0; i < h; i++ { // bounds are monotonic, but be safe
			yFirst = min(yFirst, int(r.v.start[i]))
			yLast = max(yLast, int(r.v.start[i]+r.v.count[i]))
		}
	}
	rows := yLast - yFirst

	if r.v.identity {
		// Only the horizontal pass: write straight into dst.
		r.horizontal(dst.Pix, src, yFirst, rows, w)
		return dst, nil
	}
	var mid []uint8
	if r.h.identity && r.h.off == 0 && w == src.W {
		mid = src.Pix[yFirst*src.W*3 : yLast*src.W*3]
	} else {
		r.tmp = growU8(r.tmp, rows*w*3)
		r.horizontal(r.tmp, src, yFirst, rows, w)
		mid = r.tmp
	}
	r.vertical(dst.Pix, mid, w, yFirst, h)
	return dst, nil
}

// prepare builds (or reuses) the coefficient tables of a window.
func (r *Resizer) prepare(srcW, srcH, fullW, fullH, x0, y0, w, h int) {
	hk := axisKey{in: srcW, out: fullW, first: x0, n: w, interp: r.interp, pad: true}
	if r.h.key != hk || (r.h.start == nil && !r.h.identity) {
		r.h.build(hk)
	}
	vk := axisKey{in: srcH, out: fullH, first: y0, n: h, interp: r.interp}
	if r.v.key != vk || (r.v.start == nil && !r.v.identity) {
		r.v.build(vk)
	}
}

// span returns the source samples [lo, hi) that some output reads with a
// non-zero weight.
func (c *coeffs) span() (lo, hi int) {
	if c.identity {
		return c.off, c.off + c.key.n
	}
	lo, hi = c.key.in, 0
	for i := 0; i < c.key.n; i++ {
		st := int(c.start[i])
		for j, w := range c.w[i*c.ksize : i*c.ksize+int(c.count[i])] {
			if w != 0 {
				lo, hi = min(lo, st+j), max(hi, st+j+1)
			}
		}
	}
	if hi <= lo {
		return 0, c.key.in
	}
	return lo, hi
}

// sourceRect returns the part of a srcW x srcH source whose pixels
// ResizeWindow with the same geometry reads with non-zero weight; pixels
// outside it may hold anything without changing the result. The tables it
// builds are reused by that ResizeWindow call.
func (r *Resizer) sourceRect(srcW, srcH, fullW, fullH, x0, y0, w, h int) image.Rectangle {
	full := image.Rect(0, 0, srcW, srcH)
	if srcW <= 0 || srcH <= 0 || fullW <= 0 || fullH <= 0 || w <= 0 || h <= 0 || x0 < 0 || y0 < 0 ||
		x0+w > fullW || y0+h > fullH || int64(fullW)*int64(fullH) > 1<<31 {
		return full
	}
	r.prepare(srcW, srcH, fullW, fullH, x0, y0, w, h)
	xl, xh := r.h.span()
	yl, yh := r.v.span()
	return image.Rect(xl, yl, xh, yh).Intersect(full)
}

// horizontal resamples rows yFirst..yFirst+rows-1 of src into out (rows x w
// x 3).
func (r *Resizer) horizontal(out []uint8, src *RGB, yFirst, rows, w int) {
	sw3 := src.W * 3
	w3 := w * 3
	if r.h.identity {
		off := r.h.off * 3
		for y := 0; y < rows; y++ {
			s := src.Pix[(yFirst+y)*sw3 : (yFirst+y+1)*sw3]
			copy(out[y*w3:(y+1)*w3], s[off:off+w3])
		}
		return
	}
	ks := r.h.ksize
	starts, counts, ws := r.h.start[:w], r.h.count[:w], r.h.w
	if r.h.fixed && resizeAVX2 && w >= 3 {
		// Pixels 0..np-1 go through the kernel in pairs; at least one is
		// left for Go, because the kernel's 4-byte stores would write
		// past the row.
		np := (w - 1) &^ 1
		if len(r.h.pairs) == 0 {
			r.h.expandPairs()
		}
		kern := horizontalPairsFor(ks)
		for y := 0; y < rows; y++ {
			o := out[y*w3 : (y+1)*w3]
			s := src.Pix[(yFirst+y)*sw3:]
			if len(s) <= sw3 {
				// Last row of the buffer: the kernel's 4-byte loads
				// would read past it.
				horizontalGeneric(o, s[:sw3], starts, counts, ws, ks)
				continue
			}
			kern(o, s, starts[:np], r.h.pairs, ks)
			horizontalGeneric(o[np*3:], s, starts[np:], counts[np:], ws[np*ks:], ks)
		}
		return
	}
	if r.h.fixed && ks >= 2 && ks <= 8 {
		kern := [...]func(o, s []uint8, starts, ws []int32){
			2: horizontal2, 3: horizontal3, 4: horizontal4, 5: horizontal5,
			6: horizontal6, 7: horizontal7, 8: horizontal8,
		}[ks]
		for y := 0; y < rows; y++ {
			kern(out[y*w3:(y+1)*w3], src.Pix[(yFirst+y)*sw3:(yFirst+y+1)*sw3], starts, ws)
		}
		return
	}
	for y := 0; y < rows; y++ {
		horizontalGeneric(out[y*w3:(y+1)*w3], src.Pix[(yFirst+y)*sw3:(yFirst+y+1)*sw3], starts, counts, ws, ks)
	}
}

// horizontalGeneric resamples one row of packed RGB for any tap count:
// output x reads counts[x] source pixels from starts[x] with weights
// ws[x*ks:].
func horizontalGeneric(o, s []uint8, starts, counts, ws []int32, ks int) {
	for x := range starts {
		x0 := int(starts[x])
		n := int(counts[x])
		k := ws[x*ks : x*ks+n]
		p := s[x0*3 : (x0+n)*3]
		var cr, cg, cb int32 = fixedHalf, fixedHalf, fixedHalf
		for len(k) >= 2 && len(p) >= 6 {
			w0, w1 := k[0], k[1]
			cr += int32(p[0])*w0 + int32(p[3])*w1
			cg += int32(p[1])*w0 + int32(p[4])*w1
			cb += int32(p[2])*w0 + int32(p[5])*w1
			k, p = k[2:], p[6:]
		}
		if len(k) == 1 && len(p) >= 3 {
			w0 := k[0]
			cr += int32(p[0]) * w0
			cg += int32(p[1]) * w0
			cb += int32(p[2]) * w0
		}
		d := o[x*3 : x*3+3 : x*3+3]
		d[0] = clip8(cr)
		d[1] = clip8(cg)
		d[2] = clip8(cb)
	}
}

// horizontalN resample one row with exactly N taps per output pixel
// (padded coefficient tables), fully unrolled.
func horizontal2(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+6 : int(st)*3+6]
		k := ws[x*2 : x*2+2 : x*2+2]
		k0, k1 := k[0], k[1]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal3(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+9 : int(st)*3+9]
		k := ws[x*3 : x*3+3 : x*3+3]
		k0, k1, k2 := k[0], k[1], k[2]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal4(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+12 : int(st)*3+12]
		k := ws[x*4 : x*4+4 : x*4+4]
		k0, k1, k2, k3 := k[0], k[1], k[2], k[3]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal5(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+15 : int(st)*3+15]
		k := ws[x*5 : x*5+5 : x*5+5]
		k0, k1, k2, k3, k4 := k[0], k[1], k[2], k[3], k[4]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3 + int32(p[12])*k4
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3 + int32(p[13])*k4
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3 + int32(p[14])*k4
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal6(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+18 : int(st)*3+18]
		k := ws[x*6 : x*6+6 : x*6+6]
		k0, k1, k2, k3, k4, k5 := k[0], k[1], k[2], k[3], k[4], k[5]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3 + int32(p[12])*k4 + int32(p[15])*k5
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3 + int32(p[13])*k4 + int32(p[16])*k5
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3 + int32(p[14])*k4 + int32(p[17])*k5
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal7(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+21 : int(st)*3+21]
		k := ws[x*7 : x*7+7 : x*7+7]
		k0, k1, k2, k3, k4, k5, k6 := k[0], k[1], k[2], k[3], k[4], k[5], k[6]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3 + int32(p[12])*k4 + int32(p[15])*k5 + int32(p[18])*k6
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3 + int32(p[13])*k4 + int32(p[16])*k5 + int32(p[19])*k6
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3 + int32(p[14])*k4 + int32(p[17])*k5 + int32(p[20])*k6
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

func horizontal8(o, s []uint8, starts, ws []int32) {
	for x, st := range starts {
		p := s[int(st)*3 : int(st)*3+24 : int(st)*3+24]
		k := ws[x*8 : x*8+8 : x*8+8]
		k0, k1, k2, k3, k4, k5, k6, k7 := k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
		cr := fixedHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3 + int32(p[12])*k4 + int32(p[15])*k5 + int32(p[18])*k6 + int32(p[21])*k7
		cg := fixedHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3 + int32(p[13])*k4 + int32(p[16])*k5 + int32(p[19])*k6 + int32(p[22])*k7
		cb := fixedHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3 + int32(p[14])*k4 + int32(p[17])*k5 + int32(p[20])*k6 + int32(p[23])*k7
		d := o[x*3 : x*3+3 : x*3+3]
		d[0], d[1], d[2] = clip8(cr), clip8(cg), clip8(cb)
	}
}

// vertical resamples mid (rows of w x 3 starting at source row yFirst) into
// out (h rows).
func (r *Resizer) vertical(out, mid []uint8, w, yFirst, h int) {
	w3 := w * 3
	r.acc = growI32(r.acc, w3)
	acc := r.acc[:w3]
	ks := r.v.ksize
	for y := 0; y < h; y++ {
		y0 := int(r.v.start[y]) - yFirst
		n := int(r.v.count[y])
		k := r.v.w[y*ks : y*ks+n]
		o := out[y*w3 : (y+1)*w3]
		if n == 1 && k[0] == 1<<precisionBits {
			copy(o, mid[y0*w3:(y0+1)*w3])
			continue
		}
		verticalRow(o, mid[y0*w3:], w3, k, acc)
	}
}

// verticalRow writes one output row: o[i] = clip(sum_j rows[j][i]*k[j])
// where rows[j] = mid[j*w3:]. Common tap counts are unrolled so that each
// output byte is computed in registers.
func verticalRow(o, mid []uint8, w3 int, k []int32, acc []int32) {
	o = o[:w3]
	if resizeAVX2 && w3 >= 16 {
		n := w3 &^ 15
		verticalRowAVX2(o[:n], mid[:(len(k)-1)*w3+n], w3, k)
		for i := n; i < w3; i++ {
			a := int32(fixedHalf)
			for j, wt := range k {
				a += int32(mid[j*w3+i]) * wt
			}
			o[i] = clip8(a)
		}
		return
	}
	switch len(k) {
	case 2:
		r0, r1 := mid[:w3], mid[w3:2*w3]
		k0, k1 := k[0], k[1]
		for i := range o {
			o[i] = clip8(fixedHalf + int32(r0[i])*k0 + int32(r1[i])*k1)
		}
		return
	case 3:
		r0, r1, r2 := mid[:w3], mid[w3:2*w3], mid[2*w3:3*w3]
		k0, k1, k2 := k[0], k[1], k[2]
		for i := range o {
			o[i] = clip8(fixedHalf + int32(r0[i])*k0 + int32(r1[i])*k1 + int32(r2[i])*k2)
		}
		return
	case 4:
		r0, r1, r2, r3 := mid[:w3], mid[w3:2*w3], mid[2*w3:3*w3], mid[3*w3:4*w3]
		k0, k1, k2, k3 := k[0], k[1], k[2], k[3]
		for i := range o {
			o[i] = clip8(fixedHalf + int32(r0[i])*k0 + int32(r1[i])*k1 + int32(r2[i])*k2 + int32(r3[i])*k3)
		}
		return
	case 5:
		r0, r1, r2, r3, r4 := mid[:w3], mid[w3:2*w3], mid[2*w3:3*w3], mid[3*w3:4*w3], mid[4*w3:5*w3]
		k0, k1, k2, k3, k4 := k[0], k[1], k[2], k[3], k[4]
		for i := range o {
			o[i] = clip8(fixedHalf + int32(r0[i])*k0 + int32(r1[i])*k1 + int32(r2[i])*k2 + int32(r3[i])*k3 + int32(r4[i])*k4)
		}
		return
	}
	acc = acc[:w3]
	r0 := mid[:w3]
	k0 := k[0]
	for i := range acc {
		acc[i] = fixedHalf + int32(r0[i])*k0
	}
	for j := 1; j < len(k); j++ {
		row := mid[j*w3 : (j+1)*w3]
		wt := k[j]
		row = row[:len(acc)]
		for i, p := range row {
			acc[i] += int32(p) * wt
		}
	}
	for i, a := range acc {
		o[i] = clip8(a)
	}
}

func clip8(v int32) uint8 {
	v >>= precisionBits
	if uint32(v) <= 255 {
		return uint8(v)
	}
	if v < 0 {
		return 0
	}
	return 255
}
