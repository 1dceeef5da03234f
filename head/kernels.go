package head

import (
	"sync"
	"sync/atomic"
	"time"

	"gonum.org/v1/gonum/blas/gonum"
)

// impl gives direct (non-interface) access to gonum's assembly float32
// level-1 kernels.
var impl gonum.Implementation

// dot returns Σ x[i]*y[i] over len(x) elements (len(y) >= len(x)), with
// AVX2+FMA where the CPU has it, gonum's SSE kernel otherwise.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	if useAVX2 {
		return dotAVX2(x, y)
	}
	return impl.Sdot(len(x), x, 1, y, 1)
}

// axpy does y[i] += a*x[i] over len(x) elements (len(y) >= len(x)).
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	if useAVX2 {
		axpyAVX2(a, x, y)
		return
	}
	impl.Saxpy(len(x), a, x, 1, y, 1)
}

// parallelFor runs f(part) for part in [0, parts) on up to workers
// goroutines. Which goroutine runs a part never affects results: callers
// give each part its own output.
func parallelFor(workers, parts int, f func(part int)) {
	parallelForW(workers, parts, func(_, p int) { f(p) })
}

// parallelForW is parallelFor that also passes the index of the worker
// (0 <= w < workers) running the part, for per-worker scratch memory. Parts
// are handed out dynamically (a worker slowed down by other processes on a
// shared machine takes fewer), which never affects results since every
// part writes its own output.
func parallelForW(workers, parts int, f func(w, part int)) {
	if workers <= 1 || parts <= 1 {
		for p := 0; p < parts; p++ {
			f(0, p)
		}
		return
	}
	workers = min(workers, parts)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := int(next.Add(1)) - 1
				if p >= parts {
					return
				}
				f(w, p)
			}
		}()
	}
	wg.Wait()
}

// since returns the seconds elapsed since t0.
func since(t0 time.Time) float64 { return time.Since(t0).Seconds() }

// standardize writes dst[i] = (x[i] - mean[i]) * invStd[i] for i < len(dst).
func standardize(dst, x, mean, invStd []float32) {
	n := len(dst)
	x, mean, invStd = x[:n], mean[:n], invStd[:n]
	if useAVX2 {
		standardizeAVX2(dst, x, mean, invStd)
		return
	}
	for i := range dst {
		dst[i] = (x[i] - mean[i]) * invStd[i]
	}
}
