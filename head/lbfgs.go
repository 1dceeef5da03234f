package head

import (
	"context"
	"errors"
	"math"
	"slices"

	"gonum.org/v1/gonum/optimize"
)

var statusCanceled = optimize.NewStatus("Canceled", true, nil)
var statusEarlyStop = optimize.NewStatus("EarlyStop", false, nil)

// scipyFtol is scipy's L-BFGS-B default relative function tolerance
// (factr 1e7 · machine epsilon), used by scikit-learn.
const scipyFtol = 2.220446049250313e-09

// lbfgsChunkBytes bounds the rows standardised together into a worker's
// buffer, so that the buffer stays in L2 cache while the gradient of every
// class is accumulated from it (in float32, then added in float64).
const lbfgsChunkBytes = 128 << 10

// lbfgs trains the single layer of t.m with full-batch L-BFGS on the
// regularised multinomial cross-entropy.
func (t *trainer) lbfgs(ctx context.Context) (*Report, error) {
	d, cfg := t.train, t.cfg
	n, dim, k := d.Rows(), d.D, t.k
	layer := &t.m.Layers[0]
	lambda := cfg.WeightDecay
	if cfg.C > 0 {
		lambda = 1 / (cfg.C * float64(n))
	}
	np := k*dim + k
	lbfgsChunk := max(16, min(256, lbfgsChunkBytes/(4*dim)))

	// Fixed blocks of rows, each with its own float64 gradient: the sum is
	// reduced in block order, so results do not depend on t.threads.
	rowsPer := max(lbfgsChunk, (n+31)/32)
	for blocks := (n + rowsPer - 1) / rowsPer; blocks > 1 && blocks*np*8 > 256<<20; blocks = (n + rowsPer - 1) / rowsPer {
		rowsPer *= 2
	}
	rowsPer = (rowsPer + lbfgsChunk - 1) / lbfgsChunk * lbfgsChunk
	blocks := (n + rowsPer - 1) / rowsPer
	bGrad := make([][]float64, blocks)
	for b := range bGrad {
		bGrad[b] = make([]float64, np)
	}
	bLoss := make([]float64, blocks)
	type scratch struct {
		buf, z, g, acc []float32
		e              []float64
	}
	scr := make([]scratch, t.threads)
	for w := range scr {
		scr[w] = scratch{make([]float32, lbfgsChunk*dim), make([]float32, lbfgsChunk*k), make([]float32, lbfgsChunk*k), make([]float32, np), make([]float64, k)}
	}
	mean, std := t.m.Mean, t.m.Std
	var invStd []float32
	if std != nil {
		invStd = make([]float32, dim)
		for j, s := range std {
			invStd[j] = 1 / s
		}
	}
	W, B := layer.W, layer.B
	eps := cfg.LabelSmoothing
	invN := 1 / float64(n)

	evals := 0
	lastX := make([]float64, np)
	lastGrad := make([]float64, np)
	lastF := math.NaN()
	eval := func(x []float64) {
		if evals > 0 && slices.Equal(x, lastX) {
			return
		}
		evals++
		copy(lastX, x)
		for i := range W {
			W[i] = float32(x[i])
		}
		for j := range B {
			B[j] = float32(x[k*dim+j])
		}
		parallelForW(t.threads, blocks, func(w, b int) {
			s := &scr[w]
			g64 := bGrad[b]
			clear(g64)
			loss := 0.0
			for c0 := b * rowsPer; c0 < min(n, (b+1)*rowsPer); c0 += lbfgsChunk {
				rows := min(lbfgsChunk, n-c0, (b+1)*rowsPer-c0)
				for r := 0; r < rows; r++ {
					dst := s.buf[r*dim : (r+1)*dim]
					src := d.Row(c0 + r)
					if mean != nil {
						standardize(dst, src, mean, invStd)
					} else {
						copy(dst, src)
					}
					z := s.z[r*k : (r+1)*k]
					for j := 0; j < k; j++ {
						z[j] = dot(dst, W[j*dim:(j+1)*dim]) + B[j]
					}
					y := d.Label(c0 + r)
					cw := t.cw[y]
					loss += cw * ceGrad(z, int(y), eps, cw*invN, s.g[r*k:(r+1)*k], s.e)
				}
				acc := s.acc
				for j := 0; j < k; j++ {
					aj := acc[j*dim : (j+1)*dim]
					clear(aj)
					var bj float32
					for r := 0; r < rows; r++ {
						gv := s.g[r*k+j]
						bj += gv
						if gv != 0 {
							axpy(gv, s.buf[r*dim:(r+1)*dim], aj)
						}
					}
					for i, v := range aj {
						g64[j*dim+i] += float64(v)
					}
					g64[k*dim+j] += float64(bj)
				}
			}
			bLoss[b] = loss
		})
		clear(lastGrad)
		f := 0.0
		for b := 0; b < blocks; b++ {
			f += bLoss[b]
			for i, v := range bGrad[b] {
				lastGrad[i] += v
			}
		}
		f *= invN
		reg := 0.0
		for i := 0; i < k*dim; i++ {
			reg += x[i] * x[i]
			lastGrad[i] += lambda * x[i]
		}
		lastF = f + 0.5*lambda*reg
	}
	prob := optimize.Problem{
		Func: func(x []float64) float64 { eval(x); return lastF },
		Grad: func(grad, x []float64) { eval(x); copy(grad, lastGrad) },
	}

	x0 := make([]float64, np)
	for i, v := range W {
		x0[i] = float64(v)
	}
	for j, v := range B {
		x0[k*dim+j] = float64(v)
	}
	rep := &Report{}
	conv := &lbfgsConverger{t: t, ctx: ctx, rep: rep, invN: invN, valLogits: make([]float32, t.val.Rows()*k), setW: func(x []float64) {
		for i := range W {
			W[i] = float32(x[i])
		}
		for j := range B {
			B[j] = float32(x[k*dim+j])
		}
	}}
	settings := &optimize.Settings{
		GradientThreshold: cfg.Tol * invN,
		MajorIterations:   cfg.MaxIter,
		Converger:         conv,
	}
	method := &optimize.LBFGS{Store: 10, Linesearcher: lineSearcher()}
	if lbfgsTestHook != nil {
		lbfgsTestHook(func(x []float64) (float64, []float64) { eval(x); return lastF, lastGrad }, x0)
	}
	res, err := optimize.Minimize(prob, x0, settings, method)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if res == nil {
		return nil, err
	}
	var stopped string
	switch {
	case err != nil && (errors.Is(err, optimize.ErrLinesearcherFailure) || errors.Is(err, optimize.ErrNoProgress)):
		// No further decrease within float32 precision: converged.
		stopped = "converged (line search)"
	case err != nil:
		return nil, err
	case res.Status == optimize.GradientThreshold:
		stopped = "converged (gradient)"
	case res.Status == optimize.FunctionConvergence:
		stopped = "converged (function)"
	case res.Status == optimize.IterationLimit:
		stopped = "max-iter"
	case res.Status == statusEarlyStop:
		stopped = "early-stop"
	default:
		stopped = res.Status.String()
	}
	xf := res.X
	if cfg.Patience > 0 && conv.best != nil {
		// Keep the best weights on the validation split, the final point included.
		conv.setW(xf)
		if vl, _ := t.valLoss(conv.valLogits); !(vl < conv.bestLoss) {
			xf = conv.best
		} else {
			rep.BestEpoch = conv.iter
		}
	}
	conv.setW(xf)
	eval(xf)
	rep.TrainLoss = lastF
	rep.Iters = res.Stats.MajorIterations
	rep.Evals = evals
	rep.Stopped = stopped
	return rep, nil
}

// lbfgsConverger implements scipy's relative-decrease test, logging,
// cancellation and optional early stopping on the validation loss.
type lbfgsConverger struct {
	t         *trainer
	ctx       context.Context
	rep       *Report
	invN      float64
	iter      int
	prevF     float64
	valLogits []float32
	setW      func(x []float64)
	bestLoss  float64
	best      []float64
	bad       int
}

// Init implements optimize.Converger.
func (c *lbfgsConverger) Init(dim int) {
	c.iter, c.prevF, c.bestLoss, c.best, c.bad = 0, math.NaN(), math.Inf(1), nil, 0
}

// Converged implements optimize.Converger; it runs once per major iteration.
func (c *lbfgsConverger) Converged(loc *optimize.Location) optimize.Status {
	if c.ctx.Err() != nil {
		return statusCanceled
	}
	t := c.t
	it := c.iter
	c.iter++
	status := optimize.NotTerminated
	if it > 0 {
		den := math.Max(math.Max(math.Abs(c.prevF), math.Abs(loc.F)), c.invN)
		if (c.prevF-loc.F)/den <= scipyFtol {
			status = optimize.FunctionConvergence
		}
	}
	c.prevF = loc.F
	every := max(1, t.cfg.LogEvery)
	if it%every != 0 && status == optimize.NotTerminated {
		return status
	}
	vl, va := math.NaN(), math.NaN()
	if t.val.Rows() > 0 && (t.log != nil || t.cfg.Patience > 0) {
		c.setW(loc.X)
		vl, va = t.valLoss(c.valLogits)
	}
	secs := since(t.start)
	c.rep.History = append(c.rep.History, EpochStats{Epoch: it, TrainLoss: loc.F, ValLoss: vl, ValAcc: va, Seconds: secs})
	t.logf("lbfgs iter %4d  loss %.6f  |grad|max %.3g%s  %.1fs\n",
		it, loc.F, maxAbs(loc.Gradient), valText(vl, va), secs)
	if t.cfg.Patience > 0 && !math.IsNaN(vl) {
		if vl < c.bestLoss {
			c.bestLoss, c.bad = vl, 0
			c.best = append(c.best[:0], loc.X...)
			c.rep.BestEpoch = it
		} else if c.bad++; c.bad >= t.cfg.Patience && status == optimize.NotTerminated {
			status = statusEarlyStop
		}
	}
	return status
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// lineSearcher is Armijo backtracking: it accepts the unit L-BFGS step almost
// always (about 1.1 evaluations per iteration, like scipy's L-BFGS-B), where
// More-Thuente spends several evaluations per iteration once float32
// rounding dominates the last digits of the objective.
func lineSearcher() optimize.Linesearcher { return &optimize.Backtracking{} }

// lbfgsTestHook, when set by tests, receives the objective (value and
// gradient at x; the gradient slice is reused) and the starting point.
var lbfgsTestHook func(eval func(x []float64) (float64, []float64), x0 []float64)
