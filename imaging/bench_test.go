package imaging

import (
	"bytes"
	"image"
	"image/jpeg"
	"path/filepath"
	"testing"

	"golang.org/x/image/draw"
)

// benchJPEG returns a photo-like 640x480 JPEG (quality 90, 4:2:0): the
// landscape test image enlarged with bicubic.
func benchJPEG(b *testing.B) []byte {
	b.Helper()
	src, err := DecodeFile(filepath.Join("testdata", "src_landscape.png"), DecodeOptions{})
	if err != nil {
		b.Skipf("test image absent: %v", err)
	}
	r, _ := NewResizer(InterpBicubic)
	big, _ := r.Resize(nil, src, 640, 480)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, big.Image(), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func reportImgs(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "img/s")
}

// BenchmarkDecodeResize: JPEG bytes to a 224x224 model input, ours (decode,
// Resize(256)+CenterCrop(224) PIL-exact bilinear, normalise to float32)
// against the baseline image/jpeg + x/image/draw scaling of the same
// centre region to 224x224 RGBA (no tensor conversion).
func BenchmarkDecodeResize(b *testing.B) {
	data := benchJPEG(b)
	b.Run("ours", func(b *testing.B) {
		s, _ := Preset("imagenet")
		dst := make([]float32, s.TensorLen())
		sc := NewScratch()
		b.ReportAllocs()
		for b.Loop() {
			if err := s.LoadBytes(data, dst, sc); err != nil {
				b.Fatal(err)
			}
		}
		reportImgs(b)
	})
	for _, k := range []struct {
		name string
		s    draw.Scaler
	}{{"xdraw_ApproxBiLinear", draw.ApproxBiLinear}, {"xdraw_BiLinear", draw.BiLinear}} {
		b.Run(k.name, func(b *testing.B) {
			out := image.NewRGBA(image.Rect(0, 0, 224, 224))
			crop := image.Rect(80, 20, 560, 460) // the 420x420 source square of 256->224 on 640x480
			b.ReportAllocs()
			for b.Loop() {
				img, err := jpeg.Decode(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				k.s.Scale(out, out.Bounds(), img, crop, draw.Src, nil)
			}
			reportImgs(b)
		})
	}
}

// BenchmarkResize: resizing an already decoded 640x480 image to the
// 224x224 model input.
func BenchmarkResize(b *testing.B) {
	data := benchJPEG(b)
	img, err := Decode(data, DecodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, interp := range []string{InterpBilinear, InterpBicubic, InterpArea} {
		b.Run("ours_"+interp, func(b *testing.B) {
			s, _ := Preset("imagenet")
			s.Interpolation = interp
			sc := NewScratch()
			var out RGB
			for b.Loop() {
				if _, err := s.ResizeInto(&out, img, sc); err != nil {
					b.Fatal(err)
				}
			}
			reportImgs(b)
		})
	}
	b.Run("ours_fill_tensor", func(b *testing.B) {
		s, _ := Preset("imagenet")
		sc := NewScratch()
		dst := make([]float32, s.TensorLen())
		for b.Loop() {
			if err := s.Fill(img, dst, sc); err != nil {
				b.Fatal(err)
			}
		}
		reportImgs(b)
	})
	rgba := img.Image()
	for _, k := range []struct {
		name string
		s    draw.Scaler
	}{{"xdraw_ApproxBiLinear", draw.ApproxBiLinear}, {"xdraw_BiLinear", draw.BiLinear}, {"xdraw_CatmullRom", draw.CatmullRom}} {
		b.Run(k.name, func(b *testing.B) {
			out := image.NewRGBA(image.Rect(0, 0, 224, 224))
			crop := image.Rect(80, 20, 560, 460)
			for b.Loop() {
				k.s.Scale(out, out.Bounds(), rgba, crop, draw.Src, nil)
			}
			reportImgs(b)
		})
	}
}

// BenchmarkDecode: JPEG decoding alone, ours (image/jpeg plus libjpeg-style
// colour conversion into a reused buffer) against image/jpeg's YCbCr output.
func BenchmarkDecode(b *testing.B) {
	data := benchJPEG(b)
	b.Run("ours", func(b *testing.B) {
		dst := &RGB{}
		for b.Loop() {
			if _, err := Decode(data, DecodeOptions{Dst: dst}); err != nil {
				b.Fatal(err)
			}
		}
		reportImgs(b)
	})
	b.Run("image_jpeg", func(b *testing.B) {
		for b.Loop() {
			if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
		reportImgs(b)
	})
}

// BenchmarkResizeKernels: the resize that follows a DCT-scaled JPEG decode
// (640x480 decoded at 1/2, to 224x224, bilinear), with the AVX2 kernels
// and with the Go ones, in the same run.
func BenchmarkResizeKernels(b *testing.B) {
	src := &RGB{W: 320, H: 240, Pix: make([]uint8, 320*240*3)}
	for i := range src.Pix {
		src.Pix[i] = uint8(i*7 + i/960)
	}
	for _, avx := range []bool{false, true} {
		name := "go"
		if avx {
			name = "avx2"
			if !resizeAVX2 {
				b.Log("no AVX2 on this CPU: avx2 case skipped")
				continue
			}
		}
		b.Run(name, func(b *testing.B) {
			defer func(r, n bool) { resizeAVX2, normaliseAVX2 = r, n }(resizeAVX2, normaliseAVX2)
			resizeAVX2, normaliseAVX2 = avx, avx
			s, _ := Preset("unit")
			s.Width, s.Height, s.Resize, s.Interpolation = 224, 224, ResizeSquash, InterpBilinear
			sc := NewScratch()
			dst := make([]float32, s.TensorLen())
			var out RGB
			b.Run("resize", func(b *testing.B) {
				r, _ := NewResizer(InterpBilinear)
				for b.Loop() {
					r.Resize(&out, src, 224, 224)
				}
			})
			b.Run("resize+normalise", func(b *testing.B) {
				for b.Loop() {
					if err := s.Fill(src, dst, sc); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
