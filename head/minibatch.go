package head

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/headtune/headtune/dense"
)

// mbRows is the number of batch rows one phase-1 part handles.
const mbRows = 16

// mbUnits is the number of output units one phase-2 part handles.
const mbUnits = 16

// gradPart is a phase-2 work item: the gradient and update of units
// [o0, o1) of layer l, input columns [c0, c1).
type gradPart struct{ l, o0, o1, c0, c1 int }

// optState is the optimiser state of one layer: first (and for Adam
// second) moments of the weights and biases.
type optState struct{ mW, vW, mB, vB []float32 }

// minibatch trains all layers of t.m with mini-batch Adam or SGD.
//
// Each step runs in two parallel phases separated by a barrier:
//
//  1. rows: gather and standardise the batch rows, forward pass, loss, and
//     back-propagation of the deltas through all layers, row by row;
//  2. parameters: for fixed blocks of (layer, units, input columns), the
//     gradient Σ_b δ[b,o]·a[b,i] summed over the batch in row order, L2,
//     and the optimiser update.
//
// Every output value is computed by one part in a fixed order, so the
// weights do not depend on the number of goroutines.
func (t *trainer) minibatch(ctx context.Context, rng *rand.Rand) (*Report, error) {
	cfg, n := t.cfg, t.train.Rows()
	r := newMinibatchRun(t)
	spe := (n + r.bs - 1) / r.bs
	total := cfg.Epochs * spe
	warm := cfg.Warmup * spe

	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	step := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		epochLoss := 0.0
		var lr float64
		for b0 := 0; b0 < n; b0 += r.bs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			batch := perm[b0 : b0+min(r.bs, n-b0)]
			lr = learningRate(cfg, step, warm, total)
			step++
			r.drawMasks(rng, len(batch))
			r.rowsPhase(batch)
			for _, l := range r.rowLoss[:len(batch)] { // row by row over the epoch
				epochLoss += l
			}
			r.paramsPhase(len(batch), lr, step)
		}
		if r.endEpoch(epoch, lr, epochLoss/float64(n), "") {
			break
		}
	}
	return r.result(step), nil
}

// endEpoch records epoch (mean training loss trainLoss, last learning rate
// lr) in the report and the progress log (tag ends the line), and keeps
// the layers of the best validation loss for early stopping. It reports
// whether training stops: the loss diverged, or the validation loss has
// not improved for Patience epochs.
func (r *minibatchRun) endEpoch(epoch int, lr, trainLoss float64, tag string) (stop bool) {
	t, rep := r.t, r.rep
	rep.Epochs = epoch
	vl, va := t.valLoss(r.valLogits)
	secs := since(t.start)
	rep.History = append(rep.History, EpochStats{Epoch: epoch, LR: lr, TrainLoss: trainLoss, ValLoss: vl, ValAcc: va, Seconds: secs})
	rep.TrainLoss = trainLoss
	t.logf("epoch %3d  lr %.2e  train loss %.4f%s  %.1fs%s\n", epoch, lr, trainLoss, valText(vl, va), secs, tag)
	if math.IsNaN(trainLoss) || math.IsInf(trainLoss, 0) {
		rep.Stopped = "diverged"
		return true
	}
	if t.cfg.Patience > 0 && !math.IsNaN(vl) {
		if vl < r.bestLoss {
			r.bestLoss, r.bad, rep.BestEpoch = vl, 0, epoch
			r.best = cloneLayers(r.best, r.layers)
		} else if r.bad++; r.bad >= t.cfg.Patience {
			rep.Stopped = "early-stop"
			return true
		}
	}
	return false
}

// result completes the report after steps steps and puts back the best
// layers kept by early stopping.
func (r *minibatchRun) result(steps int) *Report {
	rep := r.rep
	rep.Iters = steps
	if rep.Stopped == "" {
		rep.Stopped = "epochs"
	}
	if r.best != nil {
		for l := range r.layers {
			copy(r.layers[l].W, r.best[l].W)
			copy(r.layers[l].B, r.best[l].B)
		}
	}
	return rep
}

// learningRate is the rate of step (counted from 0) of total: a linear
// ramp over the first warm steps, then cosine decay to 0 at the last step
// or constant.
func learningRate(cfg Config, step, warm, total int) float64 {
	lr := cfg.LR
	if step < warm {
		lr *= float64(step+1) / float64(warm)
	} else if cfg.Schedule == ScheduleCosine || cfg.Schedule == "" {
		lr *= 0.5 * (1 + math.Cos(math.Pi*float64(step-warm)/float64(max(1, total-warm))))
	}
	return lr
}

// minibatchRun holds the buffers of one mini-batch training run, allocated
// once for the largest batch, and the optimiser state.
type minibatchRun struct {
	t      *trainer
	layers []dense.Layer // t.m.Layers, trained in place
	bs     int           // rows per batch

	// Activations A[l] (input of layer l), pre-activations Z[l], deltas
	// Dl[l] = ∂loss/∂Z[l], dropout masks M[l] (hidden layers only), each
	// [bs × width] row-major.
	A, Z, Dl, M [][]float32
	rowLoss     []float64   // [bs] weighted loss of each row of the batch
	parts       []gradPart  // phase-2 work items
	ebuf        [][]float64 // per worker: softmax scratch [k]
	gbuf        [][]float32 // per worker: gradient block of the largest part
	st          []optState  // per layer
	invStd      []float32   // 1/Std, nil without standardisation
	keep        float32     // 1/(1-dropout): inverted-dropout scale
	dropThr     uint32      // a uniform uint32 below it drops a unit
	lambda      float32     // L2 strength

	// Epoch bookkeeping (endEpoch, result).
	rep       *Report
	valLogits []float32     // [val rows × k]
	bestLoss  float64       // best validation loss so far
	best      []dense.Layer // layers at bestLoss; nil before the first
	bad       int           // epochs since bestLoss
}

func newMinibatchRun(t *trainer) *minibatchRun {
	cfg, m := t.cfg, t.m
	layers := m.Layers
	nl := len(layers)
	bs := min(cfg.BatchSize, t.train.Rows())
	r := &minibatchRun{
		t: t, layers: layers, bs: bs,
		A: make([][]float32, nl), Z: make([][]float32, nl), Dl: make([][]float32, nl), M: make([][]float32, nl),
		rowLoss: make([]float64, bs),
		ebuf:    make([][]float64, t.threads),
		gbuf:    make([][]float32, t.threads),
		st:      make([]optState, nl),
		keep:    float32(1 / (1 - cfg.Dropout)),
		dropThr: uint32(cfg.Dropout * (1 << 32)),
		lambda:  float32(cfg.WeightDecay),

		rep:       &Report{},
		valLogits: make([]float32, t.val.Rows()*t.k),
		bestLoss:  math.Inf(1),
	}
	for l, ly := range layers {
		r.A[l] = make([]float32, bs*ly.In)
		r.Z[l] = make([]float32, bs*ly.Out)
		r.Dl[l] = make([]float32, bs*ly.Out)
		if l < nl-1 && cfg.Dropout > 0 {
			r.M[l] = make([]float32, bs*ly.Out)
		}
	}
	maxPart := 0
	for l, ly := range layers {
		cols := min(512, max(64, (ly.In/8+63)/64*64))
		for o0 := 0; o0 < ly.Out; o0 += mbUnits {
			for c0 := 0; c0 < ly.In; c0 += cols {
				p := gradPart{l, o0, min(ly.Out, o0+mbUnits), c0, min(ly.In, c0+cols)}
				r.parts = append(r.parts, p)
				maxPart = max(maxPart, (p.o1-p.o0)*(p.c1-p.c0))
			}
		}
	}
	for w := range r.ebuf {
		r.ebuf[w] = make([]float64, t.k)
		r.gbuf[w] = make([]float32, maxPart)
	}
	for l, ly := range layers {
		r.st[l].mW = make([]float32, len(ly.W))
		r.st[l].mB = make([]float32, len(ly.B))
		if cfg.Optimizer == OptAdam {
			r.st[l].vW = make([]float32, len(ly.W))
			r.st[l].vB = make([]float32, len(ly.B))
		}
	}
	if m.Std != nil {
		r.invStd = make([]float32, t.train.D)
		for j, s := range m.Std {
			r.invStd[j] = 1 / s
		}
	}
	return r
}

// drawMasks draws the dropout masks of the first rows rows.
func (r *minibatchRun) drawMasks(rng *rand.Rand, rows int) {
	for l := range r.M {
		if r.M[l] == nil {
			continue
		}
		mk := r.M[l][:rows*r.layers[l].Out]
		for i := range mk {
			if rng.Uint32() >= r.dropThr {
				mk[i] = r.keep
			} else {
				mk[i] = 0
			}
		}
	}
}

// rowsPhase is phase 1 over the batch (rows of the training set): forward,
// loss (into rowLoss) and deltas of every row.
func (r *minibatchRun) rowsPhase(batch []int) {
	rows := len(batch)
	invB := 1 / float64(rows)
	parallelForW(r.t.threads, (rows+mbRows-1)/mbRows, func(w, p int) {
		for i := p * mbRows; i < min(rows, (p+1)*mbRows); i++ {
			r.forwardRow(i, batch[i])
			r.backwardRow(w, i, batch[i], invB)
		}
	})
}

// forwardRow fills A and Z of batch row i from training row src.
func (r *minibatchRun) forwardRow(i, src int) {
	layers, mean := r.layers, r.t.m.Mean
	nl := len(layers)
	dim := r.t.train.D
	a := r.A[0][i*dim : (i+1)*dim]
	if x := r.t.train.Row(src); mean != nil {
		standardize(a, x, mean, r.invStd)
	} else {
		copy(a, x)
	}
	for l := range layers {
		ly := &layers[l]
		a = r.A[l][i*ly.In : (i+1)*ly.In]
		z := r.Z[l][i*ly.Out : (i+1)*ly.Out]
		for o := range z {
			z[o] = dot(a, ly.W[o*ly.In:(o+1)*ly.In]) + ly.B[o]
		}
		if l == nl-1 {
			break
		}
		next := r.A[l+1][i*ly.Out : (i+1)*ly.Out]
		for o, v := range z {
			if ly.Act == dense.ActReLU && v < 0 {
				v = 0
			}
			if r.M[l] != nil {
				v *= r.M[l][i*ly.Out+o]
			}
			next[o] = v
		}
	}
}

// backwardRow sets the loss of batch row i (training row src) and its
// deltas Dl through all layers; invB is 1/batch rows. w is the worker.
func (r *minibatchRun) backwardRow(w, i, src int, invB float64) {
	layers, k := r.layers, r.t.k
	nl := len(layers)
	y := r.t.train.Label(src)
	cw := r.t.cw[y]
	r.rowLoss[i] = cw * ceGrad(r.Z[nl-1][i*k:(i+1)*k], int(y), r.t.cfg.LabelSmoothing, cw*invB, r.Dl[nl-1][i*k:(i+1)*k], r.ebuf[w])
	for l := nl - 1; l > 0; l-- {
		ly := &layers[l]
		prev := &layers[l-1]
		dz := r.Dl[l][i*ly.Out : (i+1)*ly.Out]
		dp := r.Dl[l-1][i*prev.Out : (i+1)*prev.Out]
		clear(dp)
		for o, g := range dz {
			if g != 0 {
				axpy(g, ly.W[o*ly.In:(o+1)*ly.In], dp)
			}
		}
		zp := r.Z[l-1][i*prev.Out : (i+1)*prev.Out]
		for j := range dp {
			if prev.Act == dense.ActReLU && zp[j] <= 0 {
				dp[j] = 0
			} else if r.M[l-1] != nil {
				dp[j] *= r.M[l-1][i*prev.Out+j]
			}
		}
	}
}

// paramsPhase is phase 2: the gradient and update of every part, for a
// batch of rows rows at learning rate lr; step counts steps from 1 (Adam's
// bias correction).
func (r *minibatchRun) paramsPhase(rows int, lr float64, step int) {
	const beta1, beta2 = 0.9, 0.999
	t1 := float64(step)
	bc1 := float32(1 - math.Pow(beta1, t1))
	bc2 := float32(1 - math.Pow(beta2, t1))
	parallelForW(r.t.threads, len(r.parts), func(w, pi int) {
		r.updatePart(w, r.parts[pi], rows, lr, bc1, bc2)
	})
}

// updatePart accumulates part p's gradient over the batch in row order,
// adds L2 and applies the optimiser step; the part owning column 0 also
// updates its units' biases.
func (r *minibatchRun) updatePart(w int, p gradPart, rows int, lr float64, bc1, bc2 float32) {
	cfg := r.t.cfg
	ly := &r.layers[p.l]
	s := &r.st[p.l]
	nc := p.c1 - p.c0
	g := r.gbuf[w][:(p.o1-p.o0)*nc]
	clear(g)
	dl, al := r.Dl[p.l], r.A[p.l]
	for i := 0; i < rows; i++ {
		a := al[i*ly.In+p.c0 : i*ly.In+p.c1]
		for o := p.o0; o < p.o1; o++ {
			if dv := dl[i*ly.Out+o]; dv != 0 {
				axpy(dv, a, g[(o-p.o0)*nc:(o-p.o0+1)*nc])
			}
		}
	}
	lrl := float32(lr)
	if p.l < r.t.m.Tuned {
		lrl *= float32(cfg.TunedLRScale)
	}
	for o := p.o0; o < p.o1; o++ {
		off := o*ly.In + p.c0
		wr := ly.W[off : off+nc]
		gr := g[(o-p.o0)*nc : (o-p.o0+1)*nc]
		if r.lambda != 0 {
			axpy(r.lambda, wr, gr)
		}
		if cfg.Optimizer == OptAdam {
			adamUpdate(wr, gr, s.mW[off:off+nc], s.vW[off:off+nc], lrl, bc1, bc2)
		} else {
			sgdUpdate(wr, gr, s.mW[off:off+nc], lrl, float32(cfg.Momentum))
		}
		if p.c0 != 0 {
			continue
		}
		var gb float32
		for i := 0; i < rows; i++ {
			gb += dl[i*ly.Out+o]
		}
		gs := []float32{gb}
		if cfg.Optimizer == OptAdam {
			adamUpdate(ly.B[o:o+1], gs, s.mB[o:o+1], s.vB[o:o+1], lrl, bc1, bc2)
		} else {
			sgdUpdate(ly.B[o:o+1], gs, s.mB[o:o+1], lrl, float32(cfg.Momentum))
		}
	}
}

// cloneLayers copies src into dst, reusing dst's memory when it has the
// right shape.
func cloneLayers(dst, src []dense.Layer) []dense.Layer {
	if len(dst) != len(src) {
		dst = make([]dense.Layer, len(src))
		for i, l := range src {
			dst[i] = l.Clone()
		}
		return dst
	}
	for i, l := range src {
		copy(dst[i].W, l.W)
		copy(dst[i].B, l.B)
	}
	return dst
}

// adamUpdate applies one bias-corrected Adam step to w with gradient g.
func adamUpdate(w, g, m, v []float32, lr, bc1, bc2 float32) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	for i, gi := range g {
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		w[i] -= lr * (mi / bc1) / (float32(math.Sqrt(float64(vi/bc2))) + eps)
	}
}

// sgdUpdate applies one SGD step with (PyTorch-style) momentum.
func sgdUpdate(w, g, v []float32, lr, mom float32) {
	for i, gi := range g {
		vi := mom*v[i] + gi
		v[i] = vi
		w[i] -= lr * vi
	}
}
