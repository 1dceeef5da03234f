//go:build amd64

package imaging

import "golang.org/x/sys/cpu"

// resizeAVX2 selects the AVX2 resampling kernels. They compute the same
// 32-bit integer sums as the Go kernels (wrapping multiply-add, arithmetic
// shift, clamp), so the output is bit-identical with and without AVX2; the
// tests run both and compare.
var resizeAVX2 = cpu.X86.HasAVX2

// verticalRowAVX2 writes o[i] = clip8(fixedHalf + Σ_j mid[j*w3+i]*k[j]) for
// i < len(o), which must be a multiple of 16. Row j of the window starts at
// mid[j*w3]; the caller guarantees len(mid) >= (len(k)-1)*w3 + len(o).
//
//go:noescape
func verticalRowAVX2(o, mid []uint8, w3 int, k []int32)

// horizontalPairsAVX2 resamples packed RGB two output pixels at a time:
// for x < len(starts) (even), output pixel x is
// clip8(fixedHalf + Σ_j s[3*(starts[x]+j)+c] * k(x, j)) for c = 0, 1, 2,
// where wx holds the weights expanded for the kernel: for the pair p = x/2
// and tap j, wx[(p*ks+j)*8:] is k(2p, j) four times then k(2p+1, j) four
// times (see expandPairs). It loads and stores 4 bytes per pixel, so the
// caller guarantees one readable byte after the last source pixel any
// output reads and one writable byte after output pixel len(starts)-1 (the
// byte belongs to the next output pixel and is overwritten later).
//
//go:noescape
func horizontalPairsAVX2(o, s []uint8, starts, wx []int32, ks int)

// horizontalPairsNAVX2 are horizontalPairsAVX2 unrolled for N taps (ks
// must be N).
//
//go:noescape
func horizontalPairs2AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs3AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs4AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs5AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs6AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs7AVX2(o, s []uint8, starts, wx []int32, ks int)

//go:noescape
func horizontalPairs8AVX2(o, s []uint8, starts, wx []int32, ks int)

// horizontalPairsFor returns the kernel for ks taps per output: unrolled
// for 2 to 8, the looped one otherwise.
func horizontalPairsFor(ks int) func(o, s []uint8, starts, wx []int32, ks int) {
	if ks >= 2 && ks <= 8 {
		return [...]func(o, s []uint8, starts, wx []int32, ks int){
			2: horizontalPairs2AVX2, 3: horizontalPairs3AVX2, 4: horizontalPairs4AVX2,
			5: horizontalPairs5AVX2, 6: horizontalPairs6AVX2, 7: horizontalPairs7AVX2,
			8: horizontalPairs8AVX2,
		}[ks]
	}
	return horizontalPairsAVX2
}
