//go:build amd64

package head

import "golang.org/x/sys/cpu"

// useAVX2 selects the AVX2+FMA kernels. Results differ in the last bits
// from the fallback (fused multiply-add), so bit-for-bit reproducibility
// holds on one machine, not across CPUs with and without AVX2.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotAVX2(x, y []float32) float32

//go:noescape
func axpyAVX2(a float32, x, y []float32)

//go:noescape
func standardizeAVX2(dst, x, mean, invStd []float32)
