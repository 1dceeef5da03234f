package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// RGB is a packed 8-bit RGB image: pixel (x, y) is Pix[(y*W+x)*3 : +3] in
// R, G, B order, rows top to bottom without padding. len(Pix) >= W*H*3; any
// extra capacity is spare memory kept for reuse.
type RGB struct {
	W, H int
	Pix  []uint8
}

// NewRGB allocates a w x h black image.
func NewRGB(w, h int) *RGB { return &RGB{W: w, H: h, Pix: make([]uint8, w*h*3)} }

// reset sizes m to w x h, reusing its memory when large enough. Pixels are
// not cleared.
func (m *RGB) reset(w, h int) {
	m.W, m.H = w, h
	m.Pix = growU8(m.Pix, w*h*3)
}

// Image returns an *image.RGBA copy of m (for encoding or display while
// debugging; not for hot paths).
func (m *RGB) Image() *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, m.W, m.H))
	for i, j := 0, 0; i < m.W*m.H*3; i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = m.Pix[i], m.Pix[i+1], m.Pix[i+2], 255
	}
	return out
}

// DefaultMaxPixels is the decompression-bomb limit used when
// DecodeOptions.MaxPixels is 0: 100 megapixels (300 MB decoded).
const DefaultMaxPixels = 100_000_000

// DecodeOptions tunes Decode. The zero value decodes at full size with a
// 100 MP limit, applies JPEG EXIF orientation and composites transparency
// over black.
type DecodeOptions struct {
	// MaxPixels refuses images whose header announces more than this many
	// pixels (width*height) before any pixel memory is allocated. 0 means
	// DefaultMaxPixels.
	MaxPixels int64
	// Background is the RGB colour under transparent pixels (PNG, GIF,
	// WebP, BMP, TIFF alpha).
	Background [3]uint8
	// IgnoreOrientation keeps pixels in stored order instead of applying
	// the EXIF orientation tag.
	IgnoreOrientation bool
	// FastJPEG lets FastJPEGDecoder (when set) decode JPEGs at a DCT-reduced
	// scale no smaller than MinWidth x MinHeight (in displayed orientation,
	// after EXIF rotation). Without FastJPEG, or when FastJPEGDecoder is nil
	// or declines, JPEGs are decoded at full size by image/jpeg.
	FastJPEG            bool
	MinWidth, MinHeight int
	// Dst, when non-nil, receives the image and its memory is reused when
	// large enough; Decode then returns Dst.
	Dst *RGB
}

// FastJPEGDecoder, when non-nil, decodes a JPEG at the largest DCT scaling
// (1/1, 1/2, 1/4 or 1/8) whose result is at least minW x minH pixels, in
// stored orientation (EXIF orientation is applied by the caller; minW and
// minH are given in stored orientation too). ok=false with a nil error
// means "not handled, fall back to image/jpeg". The returned image belongs
// to the caller. It is set at init by the imaging/turbojpeg package when
// libturbojpeg can be loaded, and used only when DecodeOptions.FastJPEG is
// true (Spec.FastJPEG). libjpeg's IDCT and chroma upsampling differ from
// image/jpeg's by a few levels per pixel, so features computed with and
// without it are close but not bit-identical.
var FastJPEGDecoder func(data []byte, minW, minH int) (img *RGB, ok bool, err error)

// FastJPEGDecodeInto is FastJPEGDecoder with buffer reuse: it decodes into
// dst[:3*w*h] when cap(dst) is large enough (allocating otherwise) and
// returns the image it wrote, whose Pix is then dst's memory. When both
// hooks are set, this one is used; it spares an allocation and a copy per
// image.
var FastJPEGDecodeInto func(data []byte, minW, minH int, dst []uint8) (img RGB, ok bool, err error)

// Format names returned by Sniff.
const (
	FormatJPEG = "JPEG"
	FormatPNG  = "PNG"
	FormatGIF  = "GIF"
	FormatBMP  = "BMP"
	FormatTIFF = "TIFF"
	FormatWebP = "WebP"
)

// Sniff names the image format from the first bytes of data ("JPEG", "PNG",
// "GIF", "BMP", "TIFF", "WebP"), or returns "" when none matches.
func Sniff(data []byte) string {
	switch {
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return FormatJPEG
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return FormatGIF
	case bytes.HasPrefix(data, []byte("BM")):
		return FormatBMP
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return FormatTIFF
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return FormatWebP
	}
	return ""
}

// describeStart renders the first bytes of an unrecognised file for an
// error message: hex, plus the text when it is printable ASCII.
func describeStart(data []byte) string {
	n := min(len(data), 8)
	var hex strings.Builder
	printable := true
	for i, b := range data[:n] {
		if i > 0 {
			hex.WriteByte(' ')
		}
		fmt.Fprintf(&hex, "%02x", b)
		if b < 0x20 || b > 0x7e {
			printable = false
		}
	}
	if printable && n > 0 {
		return fmt.Sprintf("%s %q", hex.String(), data[:n])
	}
	return hex.String()
}

// codecs are the decoders of each sniffed format (Sniff only returns these).
var codecs = map[string]struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}{
	FormatJPEG: {jpeg.DecodeConfig, jpeg.Decode},
	FormatPNG:  {png.DecodeConfig, png.Decode},
	FormatGIF:  {gif.DecodeConfig, gif.Decode},
	FormatBMP:  {bmp.DecodeConfig, bmp.Decode},
	FormatTIFF: {tiff.DecodeConfig, tiff.Decode},
	FormatWebP: {webp.DecodeConfig, webp.Decode},
}

// DecodeConfig returns the format and the stored size of an image without
// decoding its pixels. The size is as stored, before EXIF orientation.
func DecodeConfig(data []byte) (format string, w, h int, err error) {
	if len(data) == 0 {
		return "", 0, 0, errors.New("empty file")
	}
	format = Sniff(data)
	if format == "" {
		return "", 0, 0, fmt.Errorf("unknown image format (starts with %s)", describeStart(data))
	}
	var cfg image.Config
	err = safely(format, func() error {
		var e error
		cfg, e = codecs[format].config(bytes.NewReader(data))
		return e
	})
	if err != nil {
		return format, 0, 0, err
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return format, 0, 0, fmt.Errorf("invalid %s: image size %dx%d", format, cfg.Width, cfg.Height)
	}
	return format, cfg.Width, cfg.Height, nil
}

// safely runs a decoder, turning a panic (third-party decoders on hostile
// input) into an error and truncation into "truncated FORMAT".
func safely(format string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid %s: decoder failed: %v", format, r)
		}
	}()
	err = f()
	if err == nil {
		return nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("truncated %s", format)
	}
	msg := err.Error()
	// Decoder messages start with their package name ("png: ...").
	for _, p := range []string{"jpeg: ", "png: ", "gif: ", "bmp: ", "tiff: ", "webp: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if strings.Contains(msg, "unexpected EOF") || strings.Contains(msg, "short") && strings.Contains(msg, "data") {
		return fmt.Errorf("truncated %s", format)
	}
	return fmt.Errorf("invalid %s: %s", format, msg)
}

// DecodeFile reads and decodes one image file; see Decode. Errors name the
// file: "decode a/b.jpg: truncated JPEG".
func DecodeFile(path string, opt DecodeOptions) (*RGB, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	img, err := Decode(data, opt)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return img, nil
}

// Decode decodes a JPEG, PNG, GIF (first frame), BMP, TIFF or WebP image
// into packed 8-bit RGB. The format is sniffed from the content. The EXIF
// orientation (1-8) of JPEG, PNG (eXIf), WebP and TIFF files is applied, as
// PIL's ImageOps.exif_transpose does; alpha is composited over opt.Background;
// grey, paletted, CMYK and 16-bit images are converted (16-bit by taking
// the high byte). The header is checked against opt.MaxPixels before any
// pixel is decoded. data is not retained.
func Decode(data []byte, opt DecodeOptions) (*RGB, error) {
	return decodeWith(data, opt, nil, nil)
}

// decodeWith is Decode with a caller-owned spare buffer for the EXIF
// rotation (may be nil) and an optional region function: given the stored
// size of an image without EXIF rotation, it returns the rectangle the
// caller will read. Pixels outside it may be left unconverted (stale).
func decodeWith(data []byte, opt DecodeOptions, spare *RGB, region func(w, h int) image.Rectangle) (*RGB, error) {
	format, w, h, err := DecodeConfig(data)
	if err != nil {
		return nil, err
	}
	limit := opt.MaxPixels
	if limit <= 0 {
		limit = DefaultMaxPixels
	}
	if int64(w)*int64(h) > limit {
		return nil, fmt.Errorf("image %dx%d exceeds the %s limit", w, h, describeLimit(limit))
	}
	orient := 1
	if !opt.IgnoreOrientation {
		orient = orientation(format, data)
	}
	dst := opt.Dst
	if dst == nil {
		dst = &RGB{}
	}
	out := dst
	if orient != 1 {
		if spare == nil {
			spare = &RGB{}
		}
		out = spare // decode into spare, rotate into dst
	}

	decoded := false
	if format == FormatJPEG && opt.FastJPEG && (FastJPEGDecoder != nil || FastJPEGDecodeInto != nil) {
		minW, minH := opt.MinWidth, opt.MinHeight
		if orient >= 5 {
			minW, minH = minH, minW
		}
		if FastJPEGDecodeInto != nil {
			f, ok, ferr := FastJPEGDecodeInto(data, minW, minH, out.Pix[:0])
			if ferr == nil && ok && f.W > 0 && f.H > 0 && int64(f.W)*int64(f.H) <= limit && len(f.Pix) >= f.W*f.H*3 {
				*out = f
				decoded = true
			}
		} else {
			fimg, ok, ferr := FastJPEGDecoder(data, minW, minH)
			if ferr == nil && ok && fimg != nil && fimg.W > 0 && fimg.H > 0 && int64(fimg.W)*int64(fimg.H) <= limit && len(fimg.Pix) >= fimg.W*fimg.H*3 {
				// The image is ours: adopt its memory unless ours is
				// already big enough.
				if cap(out.Pix) >= fimg.W*fimg.H*3 {
					out.reset(fimg.W, fimg.H)
					copy(out.Pix, fimg.Pix[:fimg.W*fimg.H*3])
				} else {
					*out = *fimg
				}
				decoded = true
			}
		}
		// On error, fall through to image/jpeg: it reports its own error
		// if the file really is broken.
	}
	if !decoded {
		var img image.Image
		err := safely(format, func() error {
			var e error
			img, e = codecs[format].decode(bytes.NewReader(data))
			return e
		})
		if err != nil {
			return nil, err
		}
		b := img.Bounds()
		if b.Dx() <= 0 || b.Dy() <= 0 {
			return nil, fmt.Errorf("invalid %s: empty image", format)
		}
		if int64(b.Dx())*int64(b.Dy()) > limit {
			return nil, fmt.Errorf("image %dx%d exceeds the %s limit", b.Dx(), b.Dy(), describeLimit(limit))
		}
		if fb := img.Bounds(); fb != image.Rect(0, 0, w, h) && fb.In(image.Rect(0, 0, w, h)) {
			// A GIF whose first frame covers only part of the logical
			// screen: paste it at its offset on a Background canvas.
			var frame RGB
			toRGB(&frame, img, opt.Background)
			out.reset(w, h)
			fillRGB(out.Pix, opt.Background)
			for y := 0; y < frame.H; y++ {
				o := ((fb.Min.Y+y)*w + fb.Min.X) * 3
				copy(out.Pix[o:o+frame.W*3], frame.Pix[y*frame.W*3:(y+1)*frame.W*3])
			}
		} else {
			var rg image.Rectangle
			if region != nil && orient == 1 && img.Bounds() == image.Rect(0, 0, w, h) {
				rg = region(w, h)
			}
			toRGBRegion(out, img, opt.Background, rg)
		}
	}
	if orient != 1 {
		orientInto(dst, out, orient)
	}
	return dst, nil
}

// fillRGB paints every pixel of pix with c.
func fillRGB(pix []uint8, c [3]uint8) {
	if len(pix) < 3 {
		return
	}
	pix[0], pix[1], pix[2] = c[0], c[1], c[2]
	for n := 3; n < len(pix); n *= 2 {
		copy(pix[n:], pix[:n])
	}
}

func describeLimit(limit int64) string {
	if limit >= 1_000_000 && limit%1_000_000 == 0 {
		return fmt.Sprintf("%d MP", limit/1_000_000)
	}
	if limit >= 100_000 {
		return fmt.Sprintf("%.1f MP", float64(limit)/1e6)
	}
	return fmt.Sprintf("%d-pixel", limit)
}

// toRGB converts any image.Image to packed RGB in dst, compositing alpha
// over bg. The common concrete types take row-wise fast paths.
func toRGB(dst *RGB, img image.Image, bg [3]uint8) {
	toRGBRegion(dst, img, bg, image.Rectangle{})
}

// toRGBRegion is toRGB where only the pixels inside rg (image coordinates
// from 0,0) need to be right; empty rg means all. JPEG's YCbCr and grey
// images skip the rest; other types convert everything.
func toRGBRegion(dst *RGB, img image.Image, bg [3]uint8, rg image.Rectangle) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dst.reset(w, h)
	out := dst.Pix
	if rg = rg.Intersect(image.Rect(0, 0, w, h)); rg.Empty() {
		rg = image.Rect(0, 0, w, h)
	}
	switch m := img.(type) {
	case *image.YCbCr:
		ycbcrToRGB(out, m, rg)
	case *image.Gray:
		for y := rg.Min.Y; y < rg.Max.Y; y++ {
			s := m.Pix[(y)*m.Stride : y*m.Stride+w]
			o := out[y*w*3 : (y+1)*w*3]
			for x, v := range s {
				q := o[x*3 : x*3+3 : x*3+3]
				q[0], q[1], q[2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+2*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				v := s[2*x]
				o[3*x], o[3*x+1], o[3*x+2] = v, v, v
			}
		}
	case *image.RGBA: // premultiplied
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				p := s[4*x : 4*x+4 : 4*x+4]
				q := o[3*x : 3*x+3 : 3*x+3]
				if a := p[3]; a == 255 {
					q[0], q[1], q[2] = p[0], p[1], p[2]
				} else {
					ia := 255 - uint32(a)
					q[0] = sat8(uint32(p[0]) + (uint32(bg[0])*ia+127)/255)
					q[1] = sat8(uint32(p[1]) + (uint32(bg[1])*ia+127)/255)
					q[2] = sat8(uint32(p[2]) + (uint32(bg[2])*ia+127)/255)
				}
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				p := s[4*x : 4*x+4 : 4*x+4]
				q := o[3*x : 3*x+3 : 3*x+3]
				if a := p[3]; a == 255 {
					q[0], q[1], q[2] = p[0], p[1], p[2]
				} else {
					a, ia := uint32(a), 255-uint32(a)
					q[0] = uint8((uint32(p[0])*a + uint32(bg[0])*ia + 127) / 255)
					q[1] = uint8((uint32(p[1])*a + uint32(bg[1])*ia + 127) / 255)
					q[2] = uint8((uint32(p[2])*a + uint32(bg[2])*ia + 127) / 255)
				}
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+8*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				p := s[8*x : 8*x+8 : 8*x+8]
				a := uint32(p[6])<<8 | uint32(p[7])
				for c := 0; c < 3; c++ {
					v := uint32(p[2*c])<<8 | uint32(p[2*c+1])
					if a != 0xffff {
						v = (v*a + uint32(bg[c])*0x101*(0xffff-a) + 0x7fff) / 0xffff
					}
					o[3*x+c] = uint8(v >> 8)
				}
			}
		}
	case *image.RGBA64: // premultiplied, 16-bit PNG/TIFF without alpha
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+8*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				p := s[8*x : 8*x+8 : 8*x+8]
				a := uint32(p[6])<<8 | uint32(p[7])
				for c := 0; c < 3; c++ {
					v := uint32(p[2*c])<<8 | uint32(p[2*c+1])
					if a != 0xffff {
						v = min(v+(uint32(bg[c])*0x101*(0xffff-a)+0x7fff)/0xffff, 0xffff)
					}
					o[3*x+c] = uint8(v >> 8)
				}
			}
		}
	case *image.Paletted:
		var lut [256][3]uint8
		for i, c := range m.Palette {
			if i < 256 {
				lut[i] = composite16(c, bg)
			}
		}
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+w]
			o := out[y*w*3 : (y+1)*w*3]
			for x, idx := range s {
				c := &lut[idx]
				q := o[3*x : 3*x+3 : 3*x+3]
				q[0], q[1], q[2] = c[0], c[1], c[2]
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+4*w]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				p := s[4*x : 4*x+4 : 4*x+4]
				r, g, b := color.CMYKToRGB(p[0], p[1], p[2], p[3])
				o[3*x], o[3*x+1], o[3*x+2] = r, g, b
			}
		}
	case *image.NYCbCrA:
		ycbcrToRGB(out, &m.YCbCr, image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			s := m.A[y*m.AStride : y*m.AStride+w]
			o := out[y*w*3 : (y+1)*w*3]
			for x, a := range s {
				if a == 255 {
					continue
				}
				a, ia := uint32(a), 255-uint32(a)
				q := o[3*x : 3*x+3 : 3*x+3]
				q[0] = uint8((uint32(q[0])*a + uint32(bg[0])*ia + 127) / 255)
				q[1] = uint8((uint32(q[1])*a + uint32(bg[1])*ia + 127) / 255)
				q[2] = uint8((uint32(q[2])*a + uint32(bg[2])*ia + 127) / 255)
			}
		}
	default:
		// Rare types (RGBA64, Alpha, ...): per-pixel interface calls.
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := composite16(img.At(x, y), bg)
				out[i], out[i+1], out[i+2] = c[0], c[1], c[2]
				i += 3
			}
		}
	}
}

func sat8(v uint32) uint8 {
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// composite16 blends a colour over bg in 16 bits and keeps the high byte.
func composite16(c color.Color, bg [3]uint8) [3]uint8 {
	r, g, b, a := c.RGBA() // premultiplied 16-bit
	ia := 0xffff - a
	return [3]uint8{
		uint8(min(r+(uint32(bg[0])*0x101*ia+0x7fff)/0xffff, 0xffff) >> 8),
		uint8(min(g+(uint32(bg[1])*0x101*ia+0x7fff)/0xffff, 0xffff) >> 8),
		uint8(min(b+(uint32(bg[2])*0x101*ia+0x7fff)/0xffff, 0xffff) >> 8),
	}
}

// ycbcrToRGB converts as libjpeg-turbo does by default (and so PIL,
// OpenCV and torchvision's loaders): "fancy" triangle-filter chroma
// upsampling for 4:2:0, 4:2:2 and 4:4:0, replication otherwise, and
// libjpeg's rounded fixed-point JFIF colour conversion. With identical
// coefficients the only remaining difference from libjpeg is image/jpeg's
// IDCT (a level or two on some pixels).
func ycbcrToRGB(out []uint8, m *image.YCbCr, rg image.Rectangle) {
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	if rg = rg.Intersect(image.Rect(0, 0, w, h)); rg.Empty() {
		rg = image.Rect(0, 0, w, h)
	}
	var sx, sy uint
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		sx = 1
	case image.YCbCrSubsampleRatio420:
		sx, sy = 1, 1
	case image.YCbCrSubsampleRatio440:
		sy = 1
	case image.YCbCrSubsampleRatio411:
		sx = 2
	case image.YCbCrSubsampleRatio410:
		sx, sy = 2, 1
	}
	fancy := b.Min == (image.Point{}) && sx <= 1 && sy <= 1 && (sx|sy) != 0
	// Chroma samples that carry image data (libjpeg's downsampled size).
	cw := (w + (1 << sx) - 1) >> sx
	ch := (h + (1 << sy) - 1) >> sy
	colsum := make([]int32, cw)
	cbRow := make([]uint8, 2*w)
	crRow := cbRow[w:]
	cbRow = cbRow[:w]
	minX, minY := b.Min.X, b.Min.Y
	cx0 := minX >> sx
	if fancy && sx == 1 && sy == 1 && cw >= 2 {
		// 4:2:0, by far the most common: upsampling fused with conversion.
		csr := make([]int32, cw)
		c0, c1 := rg.Min.X>>1, (rg.Max.X+1)>>1
		for y := rg.Min.Y; y < rg.Max.Y; y++ {
			cy := y >> 1
			far := max(cy-1, 0)
			if y&1 == 1 {
				far = min(cy+1, ch-1)
			}
			h2v2Row(out[y*w*3:(y+1)*w*3], m.Y[y*m.YStride:y*m.YStride+w],
				m.Cb[cy*m.CStride:cy*m.CStride+cw], m.Cb[far*m.CStride:far*m.CStride+cw],
				m.Cr[cy*m.CStride:cy*m.CStride+cw], m.Cr[far*m.CStride:far*m.CStride+cw],
				colsum, csr, c0, c1)
		}
		return
	}
	for y := rg.Min.Y; y < rg.Max.Y; y++ {
		yrow := m.Y[y*m.YStride : y*m.YStride+w]
		if fancy {
			cy := y >> sy
			near := cy
			far := cy
			if sy == 1 {
				if y&1 == 0 {
					far = max(cy-1, 0)
				} else {
					far = min(cy+1, ch-1)
				}
			}
			upsampleRow(cbRow, m.Cb[near*m.CStride:near*m.CStride+cw], m.Cb[far*m.CStride:far*m.CStride+cw], colsum, sx, sy, y&1)
			upsampleRow(crRow, m.Cr[near*m.CStride:near*m.CStride+cw], m.Cr[far*m.CStride:far*m.CStride+cw], colsum, sx, sy, y&1)
		} else {
			crow := ((y+minY)>>sy - minY>>sy) * m.CStride
			cb, cr := m.Cb[crow:], m.Cr[crow:]
			for x := 0; x < w; x++ {
				ci := (x+minX)>>sx - cx0
				cbRow[x], crRow[x] = cb[ci], cr[ci]
			}
		}
		o := out[y*w*3 : (y+1)*w*3]
		cbr, crr := cbRow[:len(yrow)], crRow[:len(yrow)]
		for x, yy := range yrow {
			cb, cr := cbr[x], crr[x]
			y1 := int32(yy) + clampOff
			q := o[3*x : 3*x+3 : 3*x+3]
			q[0] = clampTab[uint32(y1+crR[cr])&clampMask]
			q[1] = clampTab[uint32(y1+(cbG[cb]+crG[cr])>>16)&clampMask]
			q[2] = clampTab[uint32(y1+cbB[cb])&clampMask]
		}
	}
}

// ycc converts one pixel with libjpeg's tables into q (3 bytes).
func ycc(q []uint8, yy, cb, cr uint8) {
	y1 := int32(yy) + clampOff
	q = q[:3:3]
	q[0] = clampTab[uint32(y1+crR[cr])&clampMask]
	q[1] = clampTab[uint32(y1+(cbG[cb]+crG[cr])>>16)&clampMask]
	q[2] = clampTab[uint32(y1+cbB[cb])&clampMask]
}

// h2v2Row converts one output row of a 4:2:0 image: chroma rows near (the
// row's own) and far (the neighbour above or below) are upsampled with
// libjpeg-turbo's h2v2 fancy filter and converted pixel pair by pixel pair,
// without intermediate rows. Only the pixels of chroma columns [c0, c1)
// (pixels 2*c0 .. 2*c1-1) are written. csb and csr are scratch (len
// cw >= 2).
func h2v2Row(o, yrow, cbN, cbF, crN, crF []uint8, csb, csr []int32, c0, c1 int) {
	w, cw := len(yrow), len(csb)
	c0, c1 = max(c0, 0), min(c1, cw)
	if c0 >= c1 {
		return
	}
	cbF, crN, crF, csr = cbF[:cw], crN[:cw], crF[:cw], csr[:cw]
	for c := max(c0-1, 0); c < min(c1+1, cw); c++ {
		csb[c] = 3*int32(cbN[c]) + int32(cbF[c])
		csr[c] = 3*int32(crN[c]) + int32(crF[c])
	}
	edge := func(c int, lb, tb, rb, lr, tr, rr int32) {
		if x := 2 * c; x < w {
			ycc(o[3*x:], yrow[x], uint8((3*tb+lb+8)>>4), uint8((3*tr+lr+8)>>4))
		}
		if x := 2*c + 1; x < w {
			ycc(o[3*x:], yrow[x], uint8((3*tb+rb+7)>>4), uint8((3*tr+rr+7)>>4))
		}
	}
	last := cw - 1
	if c0 == 0 {
		edge(0, csb[0], csb[0], csb[1], csr[0], csr[0], csr[1])
	}
	// Interior columns: both output pixels exist (cw = ceil(w/2)).
	if a, b := max(c0, 1), min(c1, last); a < b {
		pb, tb, nb := csb[a-1:b-1], csb[a:b], csb[a+1:b+1]
		pr, tr, nr := csr[a-1:b-1], csr[a:b], csr[a+1:b+1]
		ys := yrow[2*a : 2*b]
		os := o[6*a : 6*b]
		for i := range tb {
			b3, r3 := 3*tb[i], 3*tr[i]
			cb0, cb1 := uint8((b3+pb[i]+8)>>4), uint8((b3+nb[i]+7)>>4)
			cr0, cr1 := uint8((r3+pr[i]+8)>>4), uint8((r3+nr[i]+7)>>4)
			yy := ys[2*i : 2*i+2 : 2*i+2]
			q := os[6*i : 6*i+6 : 6*i+6]
			y0 := int32(yy[0]) + clampOff
			q[0] = clampTab[uint32(y0+crR[cr0])&clampMask]
			q[1] = clampTab[uint32(y0+(cbG[cb0]+crG[cr0])>>16)&clampMask]
			q[2] = clampTab[uint32(y0+cbB[cb0])&clampMask]
			y1 := int32(yy[1]) + clampOff
			q[3] = clampTab[uint32(y1+crR[cr1])&clampMask]
			q[4] = clampTab[uint32(y1+(cbG[cb1]+crG[cr1])>>16)&clampMask]
			q[5] = clampTab[uint32(y1+cbB[cb1])&clampMask]
		}
	}
	if c1 > last {
		edge(last, csb[last-1], csb[last], csb[last], csr[last-1], csr[last], csr[last])
	}
}

// upsampleRow fills dst (image width) from one row of chroma samples near
// and the neighbouring row far (same as near without vertical
// subsampling), with libjpeg-turbo's fancy upsampling arithmetic. odd is
// the parity of the output row.
func upsampleRow(dst, near, far []uint8, colsum []int32, sx, sy uint, odd int) {
	w, cw := len(dst), len(near)
	switch {
	case sx == 1 && sy == 1: // h2v2: 9/16, 3/16, 3/16, 1/16
		cs := colsum[:cw]
		far = far[:cw]
		for c, v := range near[:cw] {
			cs[c] = 3*int32(v) + int32(far[c])
		}
		upsampleH2(dst, cs, 8, 7, 4)
	case sx == 1: // h2v1: 3/4, 1/4
		cs := colsum[:cw]
		for c, v := range near[:cw] {
			cs[c] = int32(v)
		}
		upsampleH2(dst, cs, 1, 2, 2)
	default: // h1v2: 3/4 near row, 1/4 far row
		bias := int32(1)
		if odd == 1 {
			bias = 2
		}
		for x := 0; x < w; x++ {
			dst[x] = uint8((3*int32(near[x]) + int32(far[x]) + bias) >> 2)
		}
	}
}

// upsampleH2 doubles a row of column sums horizontally with weights 3/4
// (nearer) and 1/4 (further): dst[2c] = (3cs[c]+cs[c-1]+evenBias) >> shift,
// dst[2c+1] = (3cs[c]+cs[c+1]+oddBias) >> shift, edges replicated
// (libjpeg-turbo's h2v1/h2v2 fancy upsampling).
func upsampleH2(dst []uint8, cs []int32, evenBias, oddBias int32, shift uint) {
	w, cw := len(dst), len(cs)
	if cw == 0 {
		return
	}
	if cw == 1 {
		for x := range dst {
			bias := evenBias
			if x&1 == 1 {
				bias = oddBias
			}
			dst[x] = uint8((4*cs[0] + bias) >> shift)
		}
		return
	}
	put := func(c int, left, this, right int32) {
		if x := 2 * c; x < w {
			dst[x] = uint8((3*this + left + evenBias) >> shift)
		}
		if x := 2*c + 1; x < w {
			dst[x] = uint8((3*this + right + oddBias) >> shift)
		}
	}
	put(0, cs[0], cs[0], cs[1])
	// cw = ceil(w/2), so interior columns always write both outputs.
	last := cw - 1
	if last > 1 {
		prev, cur, next := cs[:last-1], cs[1:last], cs[2:last+1]
		prev, next = prev[:len(cur)], next[:len(cur)]
		inner := dst[2 : 2+2*len(cur)]
		for i, c := range cur {
			this := 3 * c
			o := inner[2*i : 2*i+2 : 2*i+2]
			o[0] = uint8((this + prev[i] + evenBias) >> shift)
			o[1] = uint8((this + next[i] + oddBias) >> shift)
		}
	}
	put(last, cs[last-1], cs[last], cs[last])
}

// libjpeg's YCbCr->RGB tables (jdcolor.c build_ycc_rgb_table).
var (
	crR, cbB, crG, cbG [256]int32
	clampTab           [1024]uint8 // clampTab[v+clampOff] = clamp(v, 0, 255) for v in -384..639
)

const (
	clampOff  = 384
	clampMask = 1023
)

func init() {
	const scaleBits = 16
	fix := func(x float64) int32 { return int32(x*(1<<scaleBits) + 0.5) }
	for i := 0; i < 256; i++ {
		x := int32(i - 128)
		crR[i] = (fix(1.40200)*x + 1<<(scaleBits-1)) >> scaleBits
		cbB[i] = (fix(1.77200)*x + 1<<(scaleBits-1)) >> scaleBits
		crG[i] = -fix(0.71414) * x
		cbG[i] = -fix(0.34414)*x + 1<<(scaleBits-1)
	}
	for i := range clampTab {
		clampTab[i] = uint8(min(max(i-clampOff, 0), 255))
	}
}

func clipYCC(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	return uint8(^(v >> 31))
}
