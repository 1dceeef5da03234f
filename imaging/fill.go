package imaging

import (
	"fmt"
	"image"
	"io"
	"math"
	"os"
)

// Scratch holds the buffers one worker reuses from image to image: file
// bytes, decoded and resized pixels, resampling tables and the
// normalisation lookup. After the first few images of a given geometry,
// Load and Fill allocate nothing of their own (image/jpeg and the other
// standard decoders still allocate their output). A Scratch is not safe for
// concurrent use; keep one per goroutine. The zero value is ready to use.
type Scratch struct {
	file    []byte
	decoded RGB
	spare   RGB
	resized RGB
	fitted  RGB
	resizer *Resizer

	lutSpec Spec
	lutOK   bool
	lut     [3][256]float32
	norm    [2][56]float32 // normConstants: [0] planar, [1] interleaved
}

// NewScratch returns an empty Scratch (equivalent to new(Scratch)).
func NewScratch() *Scratch { return new(Scratch) }

func (sc *Scratch) resizerFor(interp string) (*Resizer, error) {
	if sc.resizer != nil && sc.resizer.interp == interp {
		return sc.resizer, nil
	}
	r, err := NewResizer(interp)
	if err != nil {
		return nil, err
	}
	sc.resizer = r
	return r, nil
}

// Geometry describes how Spec maps a source image to the model input:
// scale the source to FullW x FullH, take the window (X0, Y0, W, H) of that,
// and place it at (PadX, PadY) in the Width x Height input (letterbox mode;
// the rest is Background). All values are pixels.
type Geometry struct {
	FullW, FullH int
	X0, Y0, W, H int
	PadX, PadY   int
}

// Geometry returns the resize plan for a srcW x srcH image (displayed
// orientation). In crop mode it follows torchvision 0.14 exactly:
// Resize(ResizeShorter) gives the shorter side ResizeShorter and the longer
// int(ResizeShorter*long/short); CenterCrop offsets are
// int(round((size-crop)/2.0)) with Python's half-to-even rounding. With
// ResizeShorter 0 the image is scaled to just cover Width x Height (for a
// square input: the shorter side becomes Width).
func (s Spec) Geometry(srcW, srcH int) Geometry {
	W, H := s.Width, s.Height
	switch s.Resize {
	case ResizeSquash:
		return Geometry{FullW: W, FullH: H, W: W, H: H}
	case ResizeLetterbox:
		scale := min(float64(W)/float64(srcW), float64(H)/float64(srcH))
		rw := min(max(int(math.Round(float64(srcW)*scale)), 1), W)
		rh := min(max(int(math.Round(float64(srcH)*scale)), 1), H)
		return Geometry{FullW: rw, FullH: rh, W: rw, H: rh, PadX: (W - rw) / 2, PadY: (H - rh) / 2}
	}
	var rw, rh int
	if sh := s.ResizeShorter; sh > 0 {
		short, long := srcW, srcH
		if srcW > srcH {
			short, long = srcH, srcW
		}
		newLong := int(float64(sh*long) / float64(short))
		if srcW <= srcH {
			rw, rh = sh, newLong
		} else {
			rw, rh = newLong, sh
		}
	} else if float64(W)/float64(srcW) >= float64(H)/float64(srcH) {
		rw, rh = W, int(float64(W*srcH)/float64(srcW))
	} else {
		rw, rh = int(float64(H*srcW)/float64(srcH)), H
	}
	rw, rh = max(rw, W), max(rh, H)
	return Geometry{
		FullW: rw, FullH: rh,
		X0: int(math.RoundToEven(float64(rw-W) / 2)),
		Y0: int(math.RoundToEven(float64(rh-H) / 2)),
		W:  W, H: H,
	}
}

// minDecodeSize is the smallest decoded size (displayed orientation) that
// still lets the resize reduce rather than enlarge: what FastJPEG decoding
// must keep.
func (s Spec) minDecodeSize() (int, int) {
	switch s.Resize {
	case ResizeCrop:
		side := s.ResizeShorter
		if side == 0 {
			side = max(s.Width, s.Height)
		}
		return side, side
	}
	return s.Width, s.Height
}

// ResizeInto applies the spec's geometry and interpolation to img and
// writes the Width x Height result into dst (reused when large enough; nil
// allocates). It returns the image written.
func (s Spec) ResizeInto(dst, img *RGB, sc *Scratch) (*RGB, error) {
	if sc == nil {
		sc = new(Scratch)
	}
	if img == nil || img.W <= 0 || img.H <= 0 || len(img.Pix) < img.W*img.H*3 {
		return nil, fmt.Errorf("preprocess: empty or inconsistent image")
	}
	r, err := sc.resizerFor(s.Interpolation)
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	g := s.Geometry(img.W, img.H)
	if dst == nil {
		dst = &RGB{}
	}
	if s.Resize != ResizeLetterbox {
		return r.ResizeWindow(dst, img, g.FullW, g.FullH, g.X0, g.Y0, g.W, g.H)
	}
	fit, err := r.ResizeWindow(&sc.fitted, img, g.FullW, g.FullH, 0, 0, g.W, g.H)
	if err != nil {
		return nil, err
	}
	dst.reset(s.Width, s.Height)
	bg := s.Background
	row := dst.Pix[:s.Width*3]
	for x := 0; x < s.Width; x++ {
		row[3*x], row[3*x+1], row[3*x+2] = bg[0], bg[1], bg[2]
	}
	w3 := s.Width * 3
	for y := 0; y < s.Height; y++ {
		o := dst.Pix[y*w3 : (y+1)*w3]
		if y >= g.PadY && y < g.PadY+g.H {
			copy(o, row[:g.PadX*3])
			copy(o[g.PadX*3:], fit.Pix[(y-g.PadY)*g.W*3:(y-g.PadY+1)*g.W*3])
			copy(o[(g.PadX+g.W)*3:], row[(g.PadX+g.W)*3:])
		} else if y > 0 {
			copy(o, row)
		}
	}
	return dst, nil
}

// Resized returns the Width x Height RGB image the model would see before
// normalisation (for debugging and previews). It allocates.
func (s Spec) Resized(img *RGB) (*RGB, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.ResizeInto(nil, img, nil)
}

func (sc *Scratch) lutFor(s Spec) *[3][256]float32 {
	if sc.lutOK && sc.lutSpec == s {
		return &sc.lut
	}
	for c := 0; c < 3; c++ {
		for p := 0; p < 256; p++ {
			// The conversion keeps the compiler from fusing the multiply
			// and subtract: the AVX2 kernels round after each operation.
			sc.lut[c][p] = (float32(float32(p)*s.Scale) - s.Mean[c]) / s.Std[c]
		}
	}
	sc.norm[0], sc.norm[1] = normConstants(s, true), normConstants(s, false)
	sc.lutSpec, sc.lutOK = s, true
	return &sc.lut
}

// normConstants lays out the spec's scale, means and standard deviations
// for the AVX2 kernels: k[0:8] the scale; k[8:32] and k[32:56] three
// vectors of 8 means and of 8 deviations. Planar: vector c is source
// channel c's (R, G, B), whichever plane it goes to. Interleaved: lane l of
// vector v is value 8v+l of a 24-value run, channel (8v+l)%3.
func normConstants(s Spec, planar bool) [56]float32 {
	var k [56]float32
	for l := 0; l < 8; l++ {
		k[l] = s.Scale
	}
	for v := 0; v < 3; v++ {
		for l := 0; l < 8; l++ {
			c := v
			if planar && s.ChannelOrder == OrderBGR {
				c = 2 - v // source channel v lands in plane 2-v
			} else if !planar {
				c = (8*v + l) % 3
			}
			k[8+8*v+l], k[32+8*v+l] = s.Mean[c], s.Std[c]
		}
	}
	return k
}

// Fill resizes img with the spec's geometry and writes its normalised
// tensor into dst, which must hold exactly TensorLen() float32s: planar
// [C][H][W] for NCHW, interleaved [H][W][C] for NHWC, channels in
// ChannelOrder, value (p*Scale - Mean[c]) / Std[c] computed in float32. A
// 1-channel spec uses ITU-R BT.601 luma 0.299R + 0.587G + 0.114B (not
// rounded to 8 bits) with Mean[0] and Std[0]. sc may be nil (allocates).
func (s Spec) Fill(img *RGB, dst []float32, sc *Scratch) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if len(dst) != s.TensorLen() {
		return fmt.Errorf("preprocess: destination holds %d values, the %dx%dx%d input needs %d", len(dst), s.Width, s.Height, s.Channels, s.TensorLen())
	}
	if sc == nil {
		sc = new(Scratch)
	}
	res, err := s.ResizeInto(&sc.resized, img, sc)
	if err != nil {
		return err
	}
	s.normalise(res.Pix[:s.Width*s.Height*3], dst, sc)
	return nil
}

// normalise writes packed RGB pixels (exactly Width*Height of them) into
// dst.
func (s Spec) normalise(pix []uint8, dst []float32, sc *Scratch) {
	n := s.Width * s.Height
	if s.Channels == 1 {
		sc0, m0, d0 := s.Scale, s.Mean[0], s.Std[0]
		for i := 0; i < n; i++ {
			p := pix[3*i : 3*i+3 : 3*i+3]
			l := float32(0.299)*float32(p[0]) + float32(0.587)*float32(p[1]) + float32(0.114)*float32(p[2])
			dst[i] = (l*sc0 - m0) / d0
		}
		return
	}
	lut := sc.lutFor(s)
	src := [3]int{0, 1, 2}
	if s.ChannelOrder == OrderBGR {
		src = [3]int{2, 1, 0}
	}
	if s.Layout == LayoutNHWC {
		l0, l1, l2 := &lut[0], &lut[1], &lut[2]
		a, b, c := src[0], src[1], src[2]
		dst = dst[:3*n]
		i := 0
		if normaliseAVX2 && s.ChannelOrder != OrderBGR {
			i = n &^ 7
			normaliseInterleavedAVX2(dst[:3*i], pix[:3*i], &sc.norm[1])
		}
		for ; i < n; i++ {
			p := pix[3*i : 3*i+3 : 3*i+3]
			d := dst[3*i : 3*i+3 : 3*i+3]
			d[0] = l0[p[a]]
			d[1] = l1[p[b]]
			d[2] = l2[p[c]]
		}
		return
	}
	l0, l1, l2 := &lut[0], &lut[1], &lut[2]
	a, b, c := src[0], src[1], src[2]
	p0, p1, p2 := dst[:n], dst[n:2*n], dst[2*n:3*n]
	pix = pix[:3*n]
	i := 0
	if normaliseAVX2 {
		i = n &^ 7
		r, g, b := p0, p1, p2
		if s.ChannelOrder == OrderBGR {
			r, b = p2, p0
		}
		normalisePlanarAVX2(r[:i], g[:i], b[:i], pix[:3*i], &sc.norm[0])
	}
	for ; i < n; i++ {
		p := pix[3*i : 3*i+3 : 3*i+3]
		p0[i] = l0[p[a]]
		p1[i] = l1[p[b]]
		p2[i] = l2[p[c]]
	}
}

// readFileInto reads a whole file into buf's memory, growing it if needed.
func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return buf, err
	}
	if !st.Mode().IsRegular() {
		return buf, fmt.Errorf("not a regular file")
	}
	size := st.Size()
	if size > 1<<31 {
		return buf, fmt.Errorf("file of %d bytes is too large for an image", size)
	}
	buf = growU8(buf, int(size)+1) // +1 detects growth while reading
	n, err := io.ReadFull(f, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return buf[:n], nil
	}
	if err != nil {
		return buf, err
	}
	// File grew: read the rest.
	rest, err := io.ReadAll(f)
	if err != nil {
		return buf, err
	}
	return append(buf[:n], rest...), nil
}

// Load reads, decodes, resizes and normalises one image file into dst
// (TensorLen() float32s), reusing sc's buffers (sc may be nil). Errors name
// the file.
func (s Spec) Load(path string, dst []float32, sc *Scratch) error {
	if sc == nil {
		sc = new(Scratch)
	}
	var err error
	sc.file, err = readFileInto(path, sc.file)
	if err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if err := s.LoadBytes(sc.file, dst, sc); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// LoadBytes decodes an encoded image held in memory (see Decode), resizes
// and normalises it into dst. data is not retained.
func (s Spec) LoadBytes(data []byte, dst []float32, sc *Scratch) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if sc == nil {
		sc = new(Scratch)
	}
	mw, mh := s.minDecodeSize()
	var region func(w, h int) image.Rectangle
	if s.Resize == ResizeCrop {
		// Convert only the pixels the crop reads (JPEG): a 4:3 photo
		// cropped to a square skips a third of its colour conversion.
		region = func(w, h int) image.Rectangle {
			r, err := sc.resizerFor(s.Interpolation)
			if err != nil {
				return image.Rectangle{}
			}
			g := s.Geometry(w, h)
			return r.sourceRect(w, h, g.FullW, g.FullH, g.X0, g.Y0, g.W, g.H)
		}
	}
	img, err := decodeWith(data, DecodeOptions{
		Background: s.Background,
		FastJPEG:   s.FastJPEG,
		MinWidth:   mw, MinHeight: mh,
		Dst: &sc.decoded,
	}, &sc.spare, region)
	if err != nil {
		return err
	}
	return s.Fill(img, dst, sc)
}

// LoadTensor is Spec.Load as a function: it fills dst with the tensor of
// the image at path under spec s.
func LoadTensor(s Spec, path string, dst []float32, sc *Scratch) error {
	return s.Load(path, dst, sc)
}
