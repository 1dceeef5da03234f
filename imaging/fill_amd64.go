//go:build amd64

package imaging

// normaliseAVX2 selects the AVX2 normalisation kernels (same condition as
// the resampling kernels). Their results equal the lookup table's exactly.
var normaliseAVX2 = resizeAVX2

// normalisePlanarAVX2 normalises n = len(r) packed RGB pixels (n a multiple
// of 8; pix holds 3n bytes) into three planes: r[i] from pix[3i], g[i] from
// pix[3i+1], b[i] from pix[3i+2], as (float32(p)*k[0] - mean) / std with
// mean and std broadcast in k[8:32] (R, G, B) and k[32:56] (see
// normConstants).
//
//go:noescape
func normalisePlanarAVX2(r, g, b []float32, pix []uint8, k *[56]float32)

// normaliseInterleavedAVX2 normalises len(dst) values (a multiple of 24)
// from pix[:len(dst)] in place order, value i being channel i%3: k holds the
// channel pattern of three consecutive 8-value vectors (see normConstants).
//
//go:noescape
func normaliseInterleavedAVX2(dst []float32, pix []uint8, k *[56]float32)
