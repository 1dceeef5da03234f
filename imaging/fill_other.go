//go:build !amd64

package imaging

var normaliseAVX2 = false

func normalisePlanarAVX2(r, g, b []float32, pix []uint8, k *[56]float32) { panic("unreachable") }
func normaliseInterleavedAVX2(dst []float32, pix []uint8, k *[56]float32) {
	panic("unreachable")
}
