package turbojpeg

import (
	"bytes"
	"image/jpeg"
	"testing"
)

// BenchmarkDecode compares, on one 640x480 JPEG (4:2:0, q90, Go's
// encoder), the standard library decoder (the baseline) with libjpeg-turbo
// at full size and DCT-scaled for a 224x224 target. All cases reuse their
// output where the API allows. scripts/bench_decode.sh is the fuller,
// cross-language benchmark.
func BenchmarkDecode(b *testing.B) {
	data := synthJPEG(b, 640, 480, 7)
	b.Run("baseline_image_jpeg", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	requireLib(b)
	var pix []uint8
	b.Run("turbojpeg_full", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var err error
			if _, _, pix, err = Decode(data, pix); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("turbojpeg_scaled_224", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var err error
			if _, _, pix, err = DecodeScaled(data, 224, 224, pix); err != nil {
				b.Fatal(err)
			}
		}
	})
}
