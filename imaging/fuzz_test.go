package imaging

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecode: Decode must never panic, must respect MaxPixels, and a
// successful result must be self-consistent. Seeds are the small test
// images plus a few crafted headers. A watchdog turns an input that takes
// over 10 s into a crash, so the fuzzer saves it.
func FuzzDecode(f *testing.F) {
	// Small seeds only: the coverage-guided engine stalls on the
	// multi-kilobyte test images (measured: ~1 exec/s against thousands).
	for _, name := range []string{"fmt_small.tif", "fmt_small_lzw.tif", "fmt_small.bmp"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	pal := image.NewPaletted(image.Rect(0, 0, 3, 2), color.Palette{color.NRGBA{1, 2, 3, 255}, color.NRGBA{0, 0, 0, 0}})
	f.Add(encodePNG(f, pal))
	f.Add(encodePNG(f, image.NewNRGBA64(image.Rect(0, 0, 2, 3))))
	f.Add(encodePNG(f, image.NewGray(image.Rect(0, 0, 3, 1))))
	f.Add(encodeJPEG(f, quadrants(16, 8), 80))
	f.Add(encodeJPEG(f, image.NewGray(image.Rect(0, 0, 9, 9)), 50))
	var g bytes.Buffer
	gif.Encode(&g, pal, nil)
	f.Add(g.Bytes())
	f.Add(pngHeader(1<<20, 1<<20))
	f.Add(withOrientation(encodeJPEG(f, quadrants(16, 8), 80), 6, true))
	f.Add([]byte("\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08"))
	f.Add([]byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		tm := time.AfterFunc(10*time.Second, func() { panic("Decode took over 10 s on this input") })
		img, err := Decode(data, DecodeOptions{MaxPixels: limit})
		tm.Stop()
		if err != nil {
			if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("bad error message %q", msg)
			}
			return
		}
		if img.W <= 0 || img.H <= 0 || img.W*img.H > limit || len(img.Pix) < img.W*img.H*3 {
			t.Fatalf("inconsistent image %dx%d with %d bytes", img.W, img.H, len(img.Pix))
		}
	})
}

// FuzzFill: preprocessing any image size with any valid geometry never
// panics, writes only finite values, and maps a constant image to a
// constant tensor (every filter's weights sum to one; letterbox borders use
// the same colour here).
func FuzzFill(f *testing.F) {
	f.Add(uint16(640), uint16(480), uint8(0), uint8(0), uint8(224), uint8(224), uint16(256), uint8(3), false, uint8(77))
	f.Add(uint16(1), uint16(1000), uint8(1), uint8(1), uint8(5), uint8(9), uint16(0), uint8(1), true, uint8(0))
	f.Add(uint16(3), uint16(2), uint8(2), uint8(2), uint8(31), uint8(2), uint16(0), uint8(3), true, uint8(255))
	f.Fuzz(func(t *testing.T, sw, sh uint16, mode, interp, w, h uint8, shorter uint16, ch uint8, nhwc bool, v uint8) {
		srcW, srcH := int(sw%700)+1, int(sh%700)+1
		s, _ := Preset("symmetric")
		s.Resize = []ResizeMode{ResizeCrop, ResizeSquash, ResizeLetterbox}[mode%3]
		s.Interpolation = []string{InterpBilinear, InterpBicubic, InterpArea, InterpNearest}[interp%4]
		s.Width, s.Height = int(w%64)+1, int(h%64)+1
		s.ResizeShorter = 0
		if s.Resize == ResizeCrop && shorter%3 == 0 {
			s.ResizeShorter = max(s.Width, s.Height) + int(shorter%100)
		}
		s.Channels = 3
		if ch%2 == 1 {
			s.Channels = 1
		}
		if nhwc {
			s.Layout = LayoutNHWC
		}
		s.Background = [3]uint8{v, v, v}
		if err := s.Validate(); err != nil {
			t.Fatalf("generated spec invalid: %v", err)
		}
		img := NewRGB(srcW, srcH)
		for i := range img.Pix {
			img.Pix[i] = v
		}
		dst := make([]float32, s.TensorLen())
		if err := s.Fill(img, dst, nil); err != nil {
			t.Fatalf("Fill: %v", err)
		}
		want := float64(v)/127.5 - 1
		for i, x := range dst {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) || math.Abs(float64(x)-want) > 1e-3 {
				t.Fatalf("value %d = %v, want %v (spec %+v, src %dx%d)", i, x, want, s, srcW, srcH)
			}
		}
	})
}

// FuzzParseSpec: any input either fails with an error or yields a valid
// spec whose canonical form parses back to itself.
func FuzzParseSpec(f *testing.F) {
	for _, n := range PresetNames {
		s, _ := Preset(n)
		f.Add(s.Canonical())
	}
	f.Add([]byte(`{"width":1e9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseSpec accepted an invalid spec: %v", err)
		}
		back, err := ParseSpec(s.Canonical())
		if err != nil || back != s {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}

// FuzzManifest: whatever a CSV manifest says, OpenDataset never returns a
// sample outside the manifest's folder.
func FuzzManifest(f *testing.F) {
	f.Add("path,label\na.jpg,x\n")
	f.Add("path,label,split\n../a.jpg,x,train\n")
	f.Add("label,path\ny,sub/../a.jpg\n")
	f.Add("path,label\n/etc/passwd,x\n")
	f.Fuzz(func(t *testing.T, manifest string) {
		root := t.TempDir()
		dir := filepath.Join(root, "data")
		os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "a.jpg"), []byte("x"), 0o644)
		os.WriteFile(filepath.Join(root, "secret.jpg"), []byte("x"), 0o644)
		p := filepath.Join(dir, "m.csv")
		os.WriteFile(p, []byte(manifest), 0o644)
		ds, err := OpenDataset(p)
		if err != nil {
			return
		}
		for _, s := range ds.Samples {
			if !within(dir, s.Path) {
				t.Fatalf("sample %s escapes %s", s.Path, dir)
			}
		}
	})
}
