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
	cfg := t.cfg
	obj := newLbfgsObjective(t)
	prob := optimize.Problem{
		Func: func(x []float64) float64 { obj.eval(x); return obj.lastF },
		Grad: func(grad, x []float64) { obj.eval(x); copy(grad, obj.lastGrad) },
	}
	x0 := make([]float64, obj.np)
	k, dim := t.k, obj.dim
	for i, v := range obj.W {
		x0[i] = float64(v)
	}
	for j, v := range obj.B {
		x0[k*dim+j] = float64(v)
	}
	rep := &Report{}
	conv := &lbfgsConverger{t: t, ctx: ctx, rep: rep, invN: obj.invN, valLogits: make([]float32, t.val.Rows()*k), setW: obj.setWeights}
	settings := &optimize.Settings{
		GradientThreshold: cfg.Tol * obj.invN,
		MajorIterations:   cfg.MaxIter,
		Converger:         conv,
	}
	method := &optimize.LBFGS{Store: 10, Linesearcher: lineSearcher()}
	if lbfgsTestHook != nil {
		lbfgsTestHook(func(x []float64) (float64, []float64) { obj.eval(x); return obj.lastF, obj.lastGrad }, x0)
	}
	res, err := optimize.Minimize(prob, x0, settings, method)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if res == nil {
		return nil, err
	}
	stopped, err := lbfgsStopped(res, err)
	if err != nil {
		return nil, err
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
	obj.eval(xf)
	rep.TrainLoss = obj.lastF
	rep.Iters = res.Stats.MajorIterations
	rep.Evals = obj.evals
	rep.Stopped = stopped
	return rep, nil
}

// lbfgsStopped names why Minimize stopped, as Report.Stopped says it, or
// returns Minimize's error when it is a real failure.
func lbfgsStopped(res *optimize.Result, err error) (string, error) {
	switch {
	case err != nil && (errors.Is(err, optimize.ErrLinesearcherFailure) || errors.Is(err, optimize.ErrNoProgress)):
		// No further decrease within float32 precision: converged.
		return "converged (line search)", nil
	case err != nil:
		return "", err
	case res.Status == optimize.GradientThreshold:
		return "converged (gradient)", nil
	case res.Status == optimize.FunctionConvergence:
		return "converged (function)", nil
	case res.Status == optimize.IterationLimit:
		return "max-iter", nil
	case res.Status == statusEarlyStop:
		return "early-stop", nil
	}
	return res.Status.String(), nil
}

// lbfgsObjective evaluates the regularised loss and its gradient over the
// whole training split for the parameter vector x = [W (k×dim row-major),
// B (k)], writing x into the layer first. Rows are processed in fixed
// blocks, each with its own float64 gradient, and the blocks are reduced in
// order, so results do not depend on t.threads.
type lbfgsObjective struct {
	t            *trainer
	W, B         []float32 // the layer being trained
	dim, np      int       // features; parameters k*dim + k
	chunk        int       // rows standardised together into a worker's buffer
	rowsPer      int       // rows per block, a multiple of chunk
	blocks       int
	bGrad        [][]float64 // per block: gradient [np]
	bLoss        []float64   // per block: weighted loss
	scr          []lbfgsScratch
	invStd       []float32 // 1/Std, nil without standardisation
	lambda, invN float64

	evals    int
	lastX    []float64 // the x of lastF and lastGrad
	lastGrad []float64
	lastF    float64
}

// lbfgsScratch is one worker's buffers: standardised rows [chunk×dim],
// logits and their gradients [chunk×k], a gradient accumulator [np] and
// softmax scratch [k].
type lbfgsScratch struct {
	buf, z, g, acc []float32
	e              []float64
}

func newLbfgsObjective(t *trainer) *lbfgsObjective {
	d, cfg := t.train, t.cfg
	n, dim, k := d.Rows(), d.D, t.k
	layer := &t.m.Layers[0]
	o := &lbfgsObjective{t: t, W: layer.W, B: layer.B, dim: dim, np: k*dim + k, lambda: cfg.WeightDecay, invN: 1 / float64(n)}
	if cfg.C > 0 {
		o.lambda = 1 / (cfg.C * float64(n))
	}
	o.chunk = max(16, min(256, lbfgsChunkBytes/(4*dim)))
	o.rowsPer = max(o.chunk, (n+31)/32)
	for blocks := (n + o.rowsPer - 1) / o.rowsPer; blocks > 1 && blocks*o.np*8 > 256<<20; blocks = (n + o.rowsPer - 1) / o.rowsPer {
		o.rowsPer *= 2
	}
	o.rowsPer = (o.rowsPer + o.chunk - 1) / o.chunk * o.chunk
	o.blocks = (n + o.rowsPer - 1) / o.rowsPer
	o.bGrad = make([][]float64, o.blocks)
	for b := range o.bGrad {
		o.bGrad[b] = make([]float64, o.np)
	}
	o.bLoss = make([]float64, o.blocks)
	o.scr = make([]lbfgsScratch, t.threads)
	for w := range o.scr {
		o.scr[w] = lbfgsScratch{make([]float32, o.chunk*dim), make([]float32, o.chunk*k), make([]float32, o.chunk*k), make([]float32, o.np), make([]float64, k)}
	}
	if std := t.m.Std; std != nil {
		o.invStd = make([]float32, dim)
		for j, s := range std {
			o.invStd[j] = 1 / s
		}
	}
	o.lastX = make([]float64, o.np)
	o.lastGrad = make([]float64, o.np)
	o.lastF = math.NaN()
	return o
}

// setWeights writes x into the layer (rounded to float32).
func (o *lbfgsObjective) setWeights(x []float64) {
	k := o.t.k
	for i := range o.W {
		o.W[i] = float32(x[i])
	}
	for j := range o.B {
		o.B[j] = float32(x[k*o.dim+j])
	}
}

// eval sets lastF and lastGrad for x; it does nothing when x is the last
// point evaluated (gonum asks for the value and the gradient separately).
func (o *lbfgsObjective) eval(x []float64) {
	if o.evals > 0 && slices.Equal(x, o.lastX) {
		return
	}
	o.evals++
	copy(o.lastX, x)
	o.setWeights(x)
	parallelForW(o.t.threads, o.blocks, o.evalBlock)
	k, dim := o.t.k, o.dim
	clear(o.lastGrad)
	f := 0.0
	for b := 0; b < o.blocks; b++ {
		f += o.bLoss[b]
		for i, v := range o.bGrad[b] {
			o.lastGrad[i] += v
		}
	}
	f *= o.invN
	reg := 0.0
	for i := 0; i < k*dim; i++ {
		reg += x[i] * x[i]
		o.lastGrad[i] += o.lambda * x[i]
	}
	o.lastF = f + 0.5*o.lambda*reg
}

// evalBlock computes block b's weighted loss and gradient on worker w,
// chunk by chunk: logits and their gradients per row, then each class's
// weight gradient accumulated in float32 over the chunk and added in
// float64.
func (o *lbfgsObjective) evalBlock(w, b int) {
	d, k, dim := o.t.train, o.t.k, o.dim
	n := d.Rows()
	mean := o.t.m.Mean
	eps := o.t.cfg.LabelSmoothing
	s := &o.scr[w]
	g64 := o.bGrad[b]
	clear(g64)
	loss := 0.0
	for c0 := b * o.rowsPer; c0 < min(n, (b+1)*o.rowsPer); c0 += o.chunk {
		rows := min(o.chunk, n-c0, (b+1)*o.rowsPer-c0)
		for r := 0; r < rows; r++ {
			dst := s.buf[r*dim : (r+1)*dim]
			if src := d.Row(c0 + r); mean != nil {
				standardize(dst, src, mean, o.invStd)
			} else {
				copy(dst, src)
			}
			z := s.z[r*k : (r+1)*k]
			for j := 0; j < k; j++ {
				z[j] = dot(dst, o.W[j*dim:(j+1)*dim]) + o.B[j]
			}
			y := d.Label(c0 + r)
			cw := o.t.cw[y]
			loss += cw * ceGrad(z, int(y), eps, cw*o.invN, s.g[r*k:(r+1)*k], s.e)
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
	o.bLoss[b] = loss
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
