package faces

import (
	"fmt"
	"math"

	"github.com/headtune/headtune/imaging"
)

// Frame is where a face's crop lies in the image: a square of side Side
// pixels centred on (CX, CY), rotated by Angle radians (counter-clockwise
// from the image's x axis to the crop's; positive when the subject's left
// eye is higher than the right).
type Frame struct {
	CX, CY, Side, Angle float64
}

// FrameOf returns the crop frame of face f under spec: centred on the box,
// side (1 + 2*Margin) times the box's larger side, and, with Align "eyes",
// rotated by the angle of the line from the right eye to the left eye, so
// that the eyes come out level.
func FrameOf(f Face, spec imaging.FaceSpec) Frame {
	fr := Frame{
		CX:   f.Box.X + f.Box.W/2,
		CY:   f.Box.Y + f.Box.H/2,
		Side: max(f.Box.W, f.Box.H) * (1 + 2*float64(spec.Margin)),
	}
	if spec.Align == imaging.AlignEyes {
		r, l := f.Keypoints[RightEye], f.Keypoints[LeftEye]
		if dx, dy := l.X-r.X, l.Y-r.Y; dx != 0 || dy != 0 {
			fr.Angle = math.Atan2(dy, dx)
		}
	}
	return fr
}

// Map returns the image position of the crop point (u, v), given in
// fractions of the crop's side from its top-left corner (0..1 each).
func (fr Frame) Map(u, v float64) Point {
	du, dv := (u-0.5)*fr.Side, (v-0.5)*fr.Side
	s, c := math.Sincos(fr.Angle)
	return Point{fr.CX + c*du - s*dv, fr.CY + s*du + c*dv}
}

// SamplesPerSide is k: a crop pixel averages k x k bilinear samples spread
// evenly over its footprint.
const SamplesPerSide = 4

// Crop samples the frame fr of img into an out x out float RGB image (0..255
// per channel, packed RGB, rows top to bottom), written to dst (reused when
// large enough) and returned. See the package documentation for the
// sampling rule.
func Crop(img *imaging.RGB, fr Frame, out int, dst []float32) ([]float32, error) {
	if img == nil || img.W <= 0 || img.H <= 0 || len(img.Pix) < img.W*img.H*3 {
		return nil, fmt.Errorf("crop face: empty or inconsistent image")
	}
	if out <= 0 || !(fr.Side > 0) || math.IsInf(fr.Side, 0) || math.IsNaN(fr.CX+fr.CY+fr.Angle) {
		return nil, fmt.Errorf("crop face: bad frame %+v for a %d-pixel crop", fr, out)
	}
	n := out * out * 3
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	const k = SamplesPerSide
	step := fr.Side / float64(k*out) // source pixels between samples
	s, c := math.Sincos(fr.Angle)
	// Sample (a, b) of the k*out x k*out grid sits at offset
	// ((a+0.5)*step - side/2, (b+0.5)*step - side/2) from the centre in the
	// crop's frame; in image pixel coordinates (centres at integers) that
	// is the centre minus 0.5 plus the rotated offset.
	half := fr.Side / 2
	x0, y0 := fr.CX-0.5, fr.CY-0.5
	var row [3 * 4096]float64
	acc := row[:0]
	if 3*out <= len(row) {
		acc = row[:3*out]
	} else {
		acc = make([]float64, 3*out)
	}
	for j := 0; j < out; j++ {
		clear(acc)
		for sy := 0; sy < k; sy++ {
			dv := (float64(j*k+sy)+0.5)*step - half
			bx, by := x0-s*dv, y0+c*dv
			for i := 0; i < out; i++ {
				var r, g, b float64
				for sx := 0; sx < k; sx++ {
					du := (float64(i*k+sx)+0.5)*step - half
					pr, pg, pb := bilinear(img, bx+c*du, by+s*du)
					r += pr
					g += pg
					b += pb
				}
				acc[3*i] += r
				acc[3*i+1] += g
				acc[3*i+2] += b
			}
		}
		o := dst[j*out*3 : (j+1)*out*3]
		for i, v := range acc {
			o[i] = float32(v / (k * k))
		}
	}
	return dst, nil
}

// bilinear samples img at pixel coordinates (x, y) (centres at integers);
// taps outside the image count as black (ONNX GridSample's "zeros"
// padding).
func bilinear(img *imaging.RGB, x, y float64) (float64, float64, float64) {
	fx, fy := math.Floor(x), math.Floor(y)
	xl, yl := int(fx), int(fy)
	lx, ly := x-fx, y-fy
	w := img.W
	if xl >= 0 && yl >= 0 && xl+1 < w && yl+1 < img.H {
		// All four taps inside: the common case, without branches per tap.
		i := (yl*w + xl) * 3
		p := img.Pix[i : i+6 : i+6]
		j := i + 3*w
		q := img.Pix[j : j+6 : j+6]
		w00, w10 := (1-lx)*(1-ly), lx*(1-ly)
		w01, w11 := (1-lx)*ly, lx*ly
		return w00*float64(p[0]) + w10*float64(p[3]) + w01*float64(q[0]) + w11*float64(q[3]),
			w00*float64(p[1]) + w10*float64(p[4]) + w01*float64(q[1]) + w11*float64(q[4]),
			w00*float64(p[2]) + w10*float64(p[5]) + w01*float64(q[2]) + w11*float64(q[5])
	}
	if xl < -1 || yl < -1 || xl >= w || yl >= img.H {
		return 0, 0, 0
	}
	wt := [4]float64{(1 - lx) * (1 - ly), lx * (1 - ly), (1 - lx) * ly, lx * ly}
	var r, g, b float64
	for t, d := range [4][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
		px, py := xl+d[0], yl+d[1]
		if px < 0 || py < 0 || px >= w || py >= img.H {
			continue
		}
		p := img.Pix[(py*w+px)*3:]
		r += wt[t] * float64(p[0])
		g += wt[t] * float64(p[1])
		b += wt[t] * float64(p[2])
	}
	return r, g, b
}

// Tensor writes face crop pixels (packed float RGB, 0..255, as Crop returns,
// spec.Width x spec.Height) into dst as spec's normalised tensor:
// channels in ChannelOrder, Layout NCHW or NHWC, (p*Scale - Mean[c]) /
// Std[c]; a 1-channel spec takes BT.601 luma. dst must hold
// spec.TensorLen() values.
func Tensor(crop []float32, spec imaging.Spec, dst []float32) error {
	n := spec.Width * spec.Height
	if len(crop) < 3*n {
		return fmt.Errorf("face tensor: crop holds %d values, the %dx%d input needs %d", len(crop), spec.Width, spec.Height, 3*n)
	}
	if len(dst) != spec.TensorLen() {
		return fmt.Errorf("face tensor: destination holds %d values, the input needs %d", len(dst), spec.TensorLen())
	}
	if spec.Channels == 1 {
		for i := 0; i < n; i++ {
			p := crop[3*i:]
			l := 0.299*p[0] + 0.587*p[1] + 0.114*p[2]
			dst[i] = (l*spec.Scale - spec.Mean[0]) / spec.Std[0]
		}
		return nil
	}
	order := [3]int{0, 1, 2}
	if spec.ChannelOrder == imaging.OrderBGR {
		order = [3]int{2, 1, 0}
	}
	for i := 0; i < n; i++ {
		p := crop[3*i:]
		for c := 0; c < 3; c++ {
			v := (p[order[c]]*spec.Scale - spec.Mean[c]) / spec.Std[c]
			if spec.Layout == imaging.LayoutNCHW {
				dst[c*n+i] = v
			} else {
				dst[3*i+c] = v
			}
		}
	}
	return nil
}

// CropRGB is Crop rounded to 8-bit RGB, for previews and files.
func CropRGB(img *imaging.RGB, fr Frame, out int) (*imaging.RGB, error) {
	f, err := Crop(img, fr, out, nil)
	if err != nil {
		return nil, err
	}
	m := imaging.NewRGB(out, out)
	for i, v := range f {
		m.Pix[i] = uint8(min(max(math.Round(float64(v)), 0), 255))
	}
	return m, nil
}
