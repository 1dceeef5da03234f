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
	bin := fr.Side / float64(out) // source pixels per crop pixel
	k := max(1, int(math.Ceil(bin)))
	// RoiAlign's adaptive sampling grid is ceil(roi/out) per axis; enormous
	// faces (a whole 100-megapixel photo as one face) are capped so one crop
	// never costs more than about 64 samples per output pixel.
	k = min(k, 8)
	inv := 1 / float64(k*k)
	s, c := math.Sincos(fr.Angle)
	// Image position of crop point (du, dv) relative to the centre, in
	// image pixel coordinates (centres at integers): p - 0.5.
	x0 := fr.CX - 0.5
	y0 := fr.CY - 0.5
	half := fr.Side / 2
	for j := 0; j < out; j++ {
		for i := 0; i < out; i++ {
			var r, g, b float64
			for sy := 0; sy < k; sy++ {
				dv := (float64(j)+(float64(sy)+0.5)/float64(k))*bin - half
				for sx := 0; sx < k; sx++ {
					du := (float64(i)+(float64(sx)+0.5)/float64(k))*bin - half
					pr, pg, pb := bilinear(img, x0+c*du-s*dv, y0+s*du+c*dv)
					r += pr
					g += pg
					b += pb
				}
			}
			o := dst[(j*out+i)*3:]
			o[0], o[1], o[2] = float32(r*inv), float32(g*inv), float32(b*inv)
		}
	}
	return dst, nil
}

// bilinear samples img at pixel coordinates (x, y) (centres at integers)
// with RoiAlign's border rule: black beyond one pixel outside, the edge
// repeated within it.
func bilinear(img *imaging.RGB, x, y float64) (float64, float64, float64) {
	w, h := float64(img.W), float64(img.H)
	if y < -1 || y > h || x < -1 || x > w {
		return 0, 0, 0
	}
	y = max(y, 0)
	x = max(x, 0)
	yl, xl := int(y), int(x)
	var yh, xh int
	if yl >= img.H-1 {
		yl, yh, y = img.H-1, img.H-1, float64(img.H-1)
	} else {
		yh = yl + 1
	}
	if xl >= img.W-1 {
		xl, xh, x = img.W-1, img.W-1, float64(img.W-1)
	} else {
		xh = xl + 1
	}
	ly, lx := y-float64(yl), x-float64(xl)
	hy, hx := 1-ly, 1-lx
	p := img.Pix
	a := (yl*img.W + xl) * 3
	bb := (yl*img.W + xh) * 3
	cc := (yh*img.W + xl) * 3
	d := (yh*img.W + xh) * 3
	w1, w2, w3, w4 := hy*hx, hy*lx, ly*hx, ly*lx
	return w1*float64(p[a]) + w2*float64(p[bb]) + w3*float64(p[cc]) + w4*float64(p[d]),
		w1*float64(p[a+1]) + w2*float64(p[bb+1]) + w3*float64(p[cc+1]) + w4*float64(p[d+1]),
		w1*float64(p[a+2]) + w2*float64(p[bb+2]) + w3*float64(p[cc+2]) + w4*float64(p[d+2])
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
