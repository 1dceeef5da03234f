package imaging

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/tiff"
)

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeErrors(t *testing.T) {
	small := encodePNG(t, image.NewGray(image.Rect(0, 0, 4, 4)))
	jpg := encodeJPEG(t, image.NewGray(image.Rect(0, 0, 64, 64)), 90)
	big := encodePNG(t, image.NewGray(image.Rect(0, 0, 300, 200)))
	tests := []struct {
		name string
		data []byte
		opt  DecodeOptions
		want string
	}{
		{"empty", nil, DecodeOptions{}, "empty file"},
		{"html", []byte("<!DOCTYPE html><html>"), DecodeOptions{}, `unknown image format (starts with 3c 21 44 4f 43 54 59 50 "<!DOCTYP")`},
		{"binary junk", []byte{0, 1, 2, 3}, DecodeOptions{}, "unknown image format (starts with 00 01 02 03)"},
		{"truncated JPEG", jpg[:len(jpg)/2], DecodeOptions{}, "truncated JPEG"},
		{"truncated JPEG header", jpg[:20], DecodeOptions{}, "truncated JPEG"},
		{"truncated PNG", small[:len(small)-20], DecodeOptions{}, "truncated PNG"},
		{"bad PNG", append(append([]byte{}, small[:16]...), bytes.Repeat([]byte{0xff}, 40)...), DecodeOptions{}, "PNG"},
		{"too many pixels", big, DecodeOptions{MaxPixels: 50_000}, "image 300x200 exceeds the 50000-pixel limit"},
		{"bomb", pngHeader(50000, 50000), DecodeOptions{}, "image 50000x50000 exceeds the 100 MP limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
	// DecodeFile names the file.
	p := filepath.Join(t.TempDir(), "x.jpg")
	os.WriteFile(p, jpg[:100], 0o644)
	if _, err := DecodeFile(p, DecodeOptions{}); err == nil || err.Error() != "decode "+p+": truncated JPEG" {
		t.Errorf("DecodeFile error %v", err)
	}
}

// pngHeader returns a PNG signature and IHDR claiming w x h 8-bit grey,
// with no image data: enough for DecodeConfig.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8
	binary.Write(&b, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32IEEE(chunk))
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	tests := map[string]string{
		"\xff\xd8\xff\xe0":             FormatJPEG,
		"\x89PNG\r\n\x1a\nxxxx":        FormatPNG,
		"GIF89a..":                     FormatGIF,
		"GIF87a..":                     FormatGIF,
		"BM......":                     FormatBMP,
		"II*\x00....":                  FormatTIFF,
		"MM\x00*....":                  FormatTIFF,
		"RIFF\x00\x00\x00\x00WEBPVP8 ": FormatWebP,
		"RIFF\x00\x00\x00\x00WAVE":     "",
		"\xff\xd8":                     "",
		"":                             "",
	}
	for in, want := range tests {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %q, want %q", in, got, want)
		}
	}
}

// quadrants builds a w x h image whose four quadrants are red (top left),
// green (top right), blue (bottom left) and white (bottom right).
func quadrants(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{255, 0, 0, 255}
			switch {
			case x >= w/2 && y < h/2:
				c = color.RGBA{0, 255, 0, 255}
			case x < w/2 && y >= h/2:
				c = color.RGBA{0, 0, 255, 255}
			case x >= w/2 && y >= h/2:
				c = color.RGBA{255, 255, 255, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// withOrientation inserts an APP1 Exif segment (big or little endian)
// carrying orientation o right after SOI.
func withOrientation(jpg []byte, o uint16, little bool) []byte {
	var bo interface {
		AppendUint16([]byte, uint16) []byte
		AppendUint32([]byte, uint32) []byte
	} = binary.BigEndian
	hdr := []byte("MM\x00\x2a")
	if little {
		bo, hdr = binary.LittleEndian, []byte("II\x2a\x00")
	}
	tiff := append([]byte{}, hdr...)
	tiff = bo.AppendUint32(tiff, 8)
	tiff = bo.AppendUint16(tiff, 2) // two entries: a dummy, then orientation
	tiff = bo.AppendUint16(tiff, 0x010f)
	tiff = bo.AppendUint16(tiff, 2)
	tiff = bo.AppendUint32(tiff, 4)
	tiff = append(tiff, 'a', 'b', 'c', 0)
	tiff = bo.AppendUint16(tiff, 0x0112)
	tiff = bo.AppendUint16(tiff, 3)
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0)
	tiff = bo.AppendUint32(tiff, 0) // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff...)
	out := []byte{0xff, 0xd8, 0xff, 0xe1}
	out = binary.BigEndian.AppendUint16(out, uint16(len(seg)+2))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// TestEXIFOrientation decodes a 64x32 quadrant image tagged with each
// orientation and checks where the red (stored top-left) quadrant and the
// green (stored top-right) one end up, per the EXIF 2.3 definitions: the
// tag says which stored row/column is the displayed top/left.
func TestEXIFOrientation(t *testing.T) {
	base := encodeJPEG(t, quadrants(64, 32), 95)
	type corner struct{ x, y int } // quadrant centre, as a fraction of 4
	tests := []struct {
		o          uint16
		w, h       int
		red, green corner
	}{
		{1, 64, 32, corner{1, 1}, corner{3, 1}},
		{2, 64, 32, corner{3, 1}, corner{1, 1}}, // mirrored
		{3, 64, 32, corner{3, 3}, corner{1, 3}}, // rotated 180
		{4, 64, 32, corner{1, 3}, corner{3, 3}}, // flipped vertically
		{5, 32, 64, corner{1, 1}, corner{1, 3}}, // transposed
		{6, 32, 64, corner{3, 1}, corner{3, 3}}, // rotated 90 clockwise
		{7, 32, 64, corner{3, 3}, corner{3, 1}}, // transverse
		{8, 32, 64, corner{1, 3}, corner{1, 1}}, // rotated 90 counter-clockwise
		{9, 64, 32, corner{1, 1}, corner{3, 1}}, // invalid: ignored
	}
	at := func(img *RGB, c corner) [3]uint8 {
		x, y := c.x*img.W/4, c.y*img.H/4
		i := (y*img.W + x) * 3
		return [3]uint8{img.Pix[i], img.Pix[i+1], img.Pix[i+2]}
	}
	near := func(a, b [3]uint8) bool {
		for i := range a {
			if d := int(a[i]) - int(b[i]); d < -8 || d > 8 {
				return false
			}
		}
		return true
	}
	for _, tc := range tests {
		for _, little := range []bool{false, true} {
			img, err := Decode(withOrientation(base, tc.o, little), DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img.W != tc.w || img.H != tc.h {
				t.Errorf("orientation %d: size %dx%d, want %dx%d", tc.o, img.W, img.H, tc.w, tc.h)
				continue
			}
			if r, g := at(img, tc.red), at(img, tc.green); !near(r, [3]uint8{255, 0, 0}) || !near(g, [3]uint8{0, 255, 0}) {
				t.Errorf("orientation %d (little=%v): red quadrant shows %v, green %v", tc.o, little, r, g)
			}
		}
		raw, _ := Decode(withOrientation(base, tc.o, false), DecodeOptions{IgnoreOrientation: true})
		if raw.W != 64 || raw.H != 32 {
			t.Errorf("IgnoreOrientation: size %dx%d", raw.W, raw.H)
		}
	}
}

func TestDecodeAlphaAndPalette(t *testing.T) {
	bg := [3]uint8{10, 20, 30}
	pal := image.NewPaletted(image.Rect(0, 0, 3, 1), color.Palette{
		color.NRGBA{200, 100, 50, 255}, // opaque
		color.NRGBA{0, 0, 0, 0},        // fully transparent
		color.NRGBA{255, 255, 255, 128},
	})
	pal.Pix = []uint8{0, 1, 2}
	nrgba := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	copy(nrgba.Pix, []uint8{200, 100, 50, 255, 9, 9, 9, 0, 255, 255, 255, 128})
	n64 := image.NewNRGBA64(image.Rect(0, 0, 3, 1))
	for x, c := range []color.NRGBA64{{200 * 257, 100 * 257, 50 * 257, 0xffff}, {1, 2, 3, 0}, {0xffff, 0xffff, 0xffff, 128 * 257}} {
		n64.SetNRGBA64(x, 0, c)
	}
	r64 := image.NewRGBA64(image.Rect(0, 0, 3, 1)) // premultiplied
	for x, c := range []color.RGBA64{{200 * 257, 100 * 257, 50 * 257, 0xffff}, {0, 0, 0, 0}, {128 * 257, 128 * 257, 128 * 257, 128 * 257}} {
		r64.SetRGBA64(x, 0, c)
	}
	var gifBuf bytes.Buffer
	gpal := image.NewPaletted(image.Rect(0, 0, 3, 1), color.Palette{color.RGBA{200, 100, 50, 255}, color.RGBA{0, 0, 0, 0}, color.RGBA{128, 128, 128, 128}})
	gpal.Pix = []uint8{0, 1, 0}
	if err := gif.Encode(&gifBuf, gpal, nil); err != nil {
		t.Fatal(err)
	}
	// 255*128/255 + 10*127/255 = 133 (±1 for rounding order).
	want := [][3]uint8{{200, 100, 50}, {10, 20, 30}, {133, 138, 143}}
	tests := []struct {
		name string
		data []byte
		last bool // check the half-transparent pixel
	}{
		{"paletted PNG", encodePNG(t, pal), true},
		{"NRGBA PNG", encodePNG(t, nrgba), true},
		{"NRGBA64 PNG", encodePNG(t, n64), true},
		{"RGBA64 TIFF", encodeTIFF(t, r64), true},
		{"GIF", gifBuf.Bytes(), false},
	}
	for _, tc := range tests {
		img, err := Decode(tc.data, DecodeOptions{Background: bg})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for x := 0; x < 3; x++ {
			if x == 2 && !tc.last {
				continue
			}
			got := [3]uint8{img.Pix[3*x], img.Pix[3*x+1], img.Pix[3*x+2]}
			for c := range got {
				if d := int(got[c]) - int(want[x][c]); d < -1 || d > 1 {
					t.Errorf("%s pixel %d: %v, want %v", tc.name, x, got, want[x])
					break
				}
			}
		}
	}
}

// TestGIFFrameOffset: a first frame smaller than the logical screen is
// placed at its offset on the background, as browsers and PIL show it.
func TestGIFFrameOffset(t *testing.T) {
	frame := image.NewPaletted(image.Rect(2, 1, 4, 2), color.Palette{color.RGBA{255, 0, 0, 255}})
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{Image: []*image.Paletted{frame}, Delay: []int{0},
		Config: image.Config{ColorModel: frame.Palette, Width: 5, Height: 3}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Decode(b.Bytes(), DecodeOptions{Background: [3]uint8{0, 0, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if img.W != 5 || img.H != 3 {
		t.Fatalf("size %dx%d, want the 5x3 screen", img.W, img.H)
	}
	for y := 0; y < 3; y++ {
		for x := 0; x < 5; x++ {
			p := img.Pix[(y*5+x)*3 : (y*5+x)*3+3]
			red := y == 1 && (x == 2 || x == 3)
			if red && (p[0] != 255 || p[2] != 0) || !red && (p[0] != 0 || p[2] != 9) {
				t.Errorf("(%d,%d) = %v", x, y, p)
			}
		}
	}
}

func TestDecodeGreyAndReuse(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 5, 3))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 17)
	}
	data := encodePNG(t, g)
	dst := &RGB{Pix: make([]uint8, 0, 1000)}
	img, err := Decode(data, DecodeOptions{Dst: dst})
	if err != nil {
		t.Fatal(err)
	}
	if img != dst || &img.Pix[0] != &dst.Pix[:1][0] {
		t.Errorf("Dst not reused")
	}
	for i, v := range g.Pix {
		if p := img.Pix[3*i : 3*i+3]; p[0] != v || p[1] != v || p[2] != v {
			t.Fatalf("pixel %d = %v, want grey %d", i, p, v)
		}
	}
}

// TestFastJPEGHook checks that the hook is used only with FastJPEG, gets the
// minimum size in stored orientation, and that a declining or failing hook
// falls back to image/jpeg.
func TestFastJPEGHook(t *testing.T) {
	jpg := withOrientation(encodeJPEG(t, quadrants(64, 32), 90), 6, false)
	defer func(f func([]byte, int, int) (*RGB, bool, error)) { FastJPEGDecoder = f }(FastJPEGDecoder)
	var calls, gotW, gotH int
	mode := "ok"
	FastJPEGDecoder = func(data []byte, minW, minH int) (*RGB, bool, error) {
		calls++
		gotW, gotH = minW, minH
		switch mode {
		case "decline":
			return nil, false, nil
		case "fail":
			return nil, false, os.ErrInvalid
		}
		return quadrantsRGB(32, 16), true, nil
	}
	if _, err := Decode(jpg, DecodeOptions{}); err != nil || calls != 0 {
		t.Fatalf("hook called without FastJPEG (calls %d, err %v)", calls, err)
	}
	img, err := Decode(jpg, DecodeOptions{FastJPEG: true, MinWidth: 10, MinHeight: 20})
	if err != nil || calls != 1 {
		t.Fatalf("calls %d, err %v", calls, err)
	}
	if gotW != 20 || gotH != 10 {
		t.Errorf("hook got min %dx%d, want 20x10 (stored orientation)", gotW, gotH)
	}
	if img.W != 16 || img.H != 32 {
		t.Errorf("fast image not rotated: %dx%d", img.W, img.H)
	}
	for _, m := range []string{"decline", "fail"} {
		mode = m
		img, err := Decode(jpg, DecodeOptions{FastJPEG: true})
		if err != nil || img.W != 32 || img.H != 64 {
			t.Errorf("%s: fallback gave %v, %v", m, img, err)
		}
	}
}

func TestFastJPEGDecodeInto(t *testing.T) {
	jpg := encodeJPEG(t, quadrants(64, 32), 90)
	defer func(f func([]byte, int, int, []uint8) (RGB, bool, error)) { FastJPEGDecodeInto = f }(FastJPEGDecodeInto)
	var gotCap int
	FastJPEGDecodeInto = func(data []byte, minW, minH int, dst []uint8) (RGB, bool, error) {
		gotCap = cap(dst)
		q := quadrantsRGB(32, 16)
		if cap(dst) >= len(q.Pix) {
			dst = dst[:len(q.Pix)]
			copy(dst, q.Pix)
			return RGB{W: 32, H: 16, Pix: dst}, true, nil
		}
		return *q, true, nil
	}
	buf := &RGB{Pix: make([]uint8, 0, 5000)}
	img, err := Decode(jpg, DecodeOptions{FastJPEG: true, Dst: buf})
	if err != nil || img.W != 32 || img.H != 16 {
		t.Fatalf("%v %v", img, err)
	}
	if gotCap != 5000 || &img.Pix[:1][0] != &buf.Pix[:1][0] {
		t.Errorf("destination buffer not passed to the hook (cap %d)", gotCap)
	}
}

func quadrantsRGB(w, h int) *RGB {
	q := quadrants(w, h)
	img := NewRGB(w, h)
	for i := 0; i < w*h; i++ {
		copy(img.Pix[3*i:3*i+3], q.Pix[4*i:4*i+3])
	}
	return img
}

func encodeTIFF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tiff.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// TestYCbCrConversion compares the optimised 4:2:0 / 4:2:2 / 4:4:0 / 4:4:4
// converters with a direct per-pixel transcription of libjpeg-turbo's
// fancy upsampling (jdsample.c) and colour conversion (jdcolor.c) on
// random planes of odd and even sizes.
func TestYCbCrConversion(t *testing.T) {
	clamp := func(v int32) uint8 { return uint8(min(max(v, 0), 255)) }
	ratios := []struct {
		r      image.YCbCrSubsampleRatio
		sx, sy int
	}{
		{image.YCbCrSubsampleRatio420, 1, 1}, {image.YCbCrSubsampleRatio422, 1, 0},
		{image.YCbCrSubsampleRatio440, 0, 1}, {image.YCbCrSubsampleRatio444, 0, 0},
	}
	for _, rt := range ratios {
		for _, size := range [][2]int{{1, 1}, {2, 2}, {3, 5}, {4, 3}, {17, 9}, {64, 48}, {65, 47}} {
			w, h := size[0], size[1]
			m := image.NewYCbCr(image.Rect(0, 0, w, h), rt.r)
			rnd := noiseRGB(len(m.Y)+2*len(m.Cb), 1, uint64(w*100+h))
			copy(m.Y, rnd.Pix)
			copy(m.Cb, rnd.Pix[len(m.Y):])
			copy(m.Cr, rnd.Pix[len(m.Y)+len(m.Cb):])
			cw, ch := (w+(1<<rt.sx)-1)>>rt.sx, (h+(1<<rt.sy)-1)>>rt.sy
			chroma := func(p []uint8, x, y int) int32 {
				at := func(cx, cy int) int32 { return int32(p[cy*m.CStride+cx]) }
				cx, cy := x>>rt.sx, y>>rt.sy
				far := cy
				if rt.sy == 1 {
					if y%2 == 0 {
						far = max(cy-1, 0)
					} else {
						far = min(cy+1, ch-1)
					}
				}
				switch {
				case rt.sx == 1 && rt.sy == 1:
					cs := func(c int) int32 { return 3*at(c, cy) + at(c, far) }
					if cw == 1 { // libjpeg's special-cased first column
						if x%2 == 0 {
							return (4*cs(0) + 8) >> 4
						}
						return (4*cs(0) + 7) >> 4
					}
					if x%2 == 0 {
						return (3*cs(cx) + cs(max(cx-1, 0)) + 8) >> 4
					}
					return (3*cs(cx) + cs(min(cx+1, cw-1)) + 7) >> 4
				case rt.sx == 1:
					if x%2 == 0 {
						return (3*at(cx, cy) + at(max(cx-1, 0), cy) + 1) >> 2
					}
					return (3*at(cx, cy) + at(min(cx+1, cw-1), cy) + 2) >> 2
				case rt.sy == 1:
					bias := int32(1)
					if y%2 == 1 {
						bias = 2
					}
					return (3*at(cx, cy) + at(cx, far) + bias) >> 2
				}
				return at(cx, cy)
			}
			out := make([]uint8, w*h*3)
			ycbcrToRGB(out, m, image.Rectangle{})
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					yy := int32(m.Y[y*m.YStride+x])
					cb, cr := chroma(m.Cb, x, y)-128, chroma(m.Cr, x, y)-128
					want := [3]uint8{
						clamp(yy + (91881*cr+32768)>>16),
						clamp(yy + (-22554*cb-46802*cr+32768)>>16),
						clamp(yy + (116130*cb+32768)>>16),
					}
					got := out[(y*w+x)*3 : (y*w+x)*3+3]
					if got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
						t.Fatalf("%v %dx%d pixel (%d,%d): %v, want %v", rt.r, w, h, x, y, got, want)
					}
				}
			}
		}
	}
}

func TestUpsampleSingleColumn(t *testing.T) {
	// One chroma column, two pixels: libjpeg rounds the even pixel with +8
	// and the odd one with +7 (h2v2).
	dst := make([]uint8, 2)
	upsampleH2(dst, []int32{4 * 10}, 8, 7, 4) // cs = 40: (160+8)>>4 = 10, (160+7)>>4 = 10
	cs := int32(4*10 + 2)                     // 42: (168+8)>>4 = 11, (168+7)>>4 = 10
	upsampleH2(dst, []int32{cs}, 8, 7, 4)
	if dst[0] != 11 || dst[1] != 10 {
		t.Errorf("got %v, want [11 10]", dst)
	}
}
