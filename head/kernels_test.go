package head

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestKernelsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 385, 1000} {
		for _, off := range []int{0, 1, 3} { // unaligned starts
			x := make([]float32, n+off)
			y := make([]float32, n+off+2)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			for i := range y {
				y[i] = float32(rng.NormFloat64())
			}
			xs, ys := x[off:], y[off:]
			want := 0.0
			for i := range xs {
				want += float64(xs[i]) * float64(ys[i])
			}
			if got := dot(xs, ys); math.Abs(float64(got)-want) > 1e-5*float64(n+1) {
				t.Errorf("dot n=%d off=%d: %g, want %g", n, off, got, want)
			}
			mean, inv, dst := make([]float32, n+off), make([]float32, n+off), make([]float32, n)
			for i := range mean {
				mean[i], inv[i] = float32(rng.NormFloat64()), float32(rng.Float64()+0.5)
			}
			standardize(dst, xs, mean[off:], inv[off:])
			for i := range dst {
				if w := (xs[i] - mean[off+i]) * inv[off+i]; dst[i] != w {
					t.Fatalf("standardize n=%d off=%d: [%d] = %g, want %g", n, off, i, dst[i], w)
				}
			}
			y0 := append([]float32(nil), ys...)
			axpy(0.5, xs, ys)
			for i := range ys {
				w := y0[i]
				if i < n {
					w += 0.5 * xs[i]
				}
				if math.Abs(float64(ys[i]-w)) > 1e-6 {
					t.Fatalf("axpy n=%d off=%d: y[%d] = %g, want %g", n, off, i, ys[i], w)
				}
			}
		}
	}
}

// BenchmarkDot compares the kernel in use with gonum's SSE Sdot (baseline)
// on rows of typical feature widths.
func BenchmarkDot(b *testing.B) {
	for _, n := range []int{384, 2048} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], y[i] = float32(i%7), float32(i%5)
		}
		b.Run(fmt.Sprintf("gonum/%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for i := 0; i < b.N; i++ {
				impl.Sdot(n, x, 1, y, 1)
			}
		})
		b.Run(fmt.Sprintf("head/%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for i := 0; i < b.N; i++ {
				dot(x, y)
			}
		})
	}
}

// BenchmarkAxpy compares the kernel in use with gonum's SSE Saxpy (baseline).
func BenchmarkAxpy(b *testing.B) {
	for _, n := range []int{384, 2048} {
		x, y := make([]float32, n), make([]float32, n)
		b.Run(fmt.Sprintf("gonum/%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for i := 0; i < b.N; i++ {
				impl.Saxpy(n, 1e-3, x, 1, y, 1)
			}
		})
		b.Run(fmt.Sprintf("head/%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			for i := 0; i < b.N; i++ {
				axpy(1e-3, x, y)
			}
		})
	}
}
