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
	cfg, d, m := t.cfg, t.train, t.m
	n, dim, k := d.Rows(), d.D, t.k
	layers := m.Layers
	nl := len(layers)
	bs := min(cfg.BatchSize, n)
	spe := (n + bs - 1) / bs
	total := cfg.Epochs * spe
	warm := cfg.Warmup * spe

	// Activations A[l] (input of layer l), pre-activations Z[l], deltas
	// Dl[l] = ∂loss/∂Z[l], dropout masks M[l] (hidden layers only).
	A := make([][]float32, nl)
	Z := make([][]float32, nl)
	Dl := make([][]float32, nl)
	M := make([][]float32, nl)
	for l, ly := range layers {
		A[l] = make([]float32, bs*ly.In)
		Z[l] = make([]float32, bs*ly.Out)
		Dl[l] = make([]float32, bs*ly.Out)
		if l < nl-1 && cfg.Dropout > 0 {
			M[l] = make([]float32, bs*ly.Out)
		}
	}
	rowLoss := make([]float64, bs)
	var parts []gradPart
	maxPart := 0
	for l, ly := range layers {
		cols := min(512, max(64, (ly.In/8+63)/64*64))
		for o0 := 0; o0 < ly.Out; o0 += mbUnits {
			for c0 := 0; c0 < ly.In; c0 += cols {
				p := gradPart{l, o0, min(ly.Out, o0+mbUnits), c0, min(ly.In, c0+cols)}
				parts = append(parts, p)
				maxPart = max(maxPart, (p.o1-p.o0)*(p.c1-p.c0))
			}
		}
	}
	ebuf := make([][]float64, t.threads)
	for w := range ebuf {
		ebuf[w] = make([]float64, k)
	}
	gbuf := make([][]float32, t.threads)
	for w := range gbuf {
		gbuf[w] = make([]float32, maxPart)
	}
	st := make([]optState, nl)
	for l, ly := range layers {
		st[l].mW = make([]float32, len(ly.W))
		st[l].mB = make([]float32, len(ly.B))
		if cfg.Optimizer == OptAdam {
			st[l].vW = make([]float32, len(ly.W))
			st[l].vB = make([]float32, len(ly.B))
		}
	}
	mean, std := m.Mean, m.Std
	var invStd []float32
	if std != nil {
		invStd = make([]float32, dim)
		for j, s := range std {
			invStd[j] = 1 / s
		}
	}
	keep := float32(1 / (1 - cfg.Dropout))
	dropThr := uint32(cfg.Dropout * (1 << 32))
	eps := cfg.LabelSmoothing
	lambda := float32(cfg.WeightDecay)
	const beta1, beta2, adamEps = 0.9, 0.999, 1e-8

	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	rep := &Report{}
	valLogits := make([]float32, t.val.Rows()*k)
	bestLoss := math.Inf(1)
	var best []dense.Layer
	bad := 0
	step := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		epochLoss := 0.0
		var lr float64
		for b0 := 0; b0 < n; b0 += bs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rows := min(bs, n-b0)
			batch := perm[b0 : b0+rows]
			lr = cfg.LR
			if step < warm {
				lr *= float64(step+1) / float64(warm)
			} else if cfg.Schedule == ScheduleCosine || cfg.Schedule == "" {
				lr *= 0.5 * (1 + math.Cos(math.Pi*float64(step-warm)/float64(max(1, total-warm))))
			}
			step++
			for l := range M {
				if M[l] == nil {
					continue
				}
				mk := M[l][:rows*layers[l].Out]
				for i := range mk {
					if rng.Uint32() >= dropThr {
						mk[i] = keep
					} else {
						mk[i] = 0
					}
				}
			}
			invB := 1 / float64(rows)

			// Phase 1: rows.
			parallelForW(t.threads, (rows+mbRows-1)/mbRows, func(w, p int) {
				for r := p * mbRows; r < min(rows, (p+1)*mbRows); r++ {
					a := A[0][r*dim : (r+1)*dim]
					src := d.Row(batch[r])
					if mean != nil {
						standardize(a, src, mean, invStd)
					} else {
						copy(a, src)
					}
					for l := range layers {
						ly := &layers[l]
						a = A[l][r*ly.In : (r+1)*ly.In]
						z := Z[l][r*ly.Out : (r+1)*ly.Out]
						for o := range z {
							z[o] = dot(a, ly.W[o*ly.In:(o+1)*ly.In]) + ly.B[o]
						}
						if l == nl-1 {
							break
						}
						next := A[l+1][r*ly.Out : (r+1)*ly.Out]
						for o, v := range z {
							if ly.Act == dense.ActReLU && v < 0 {
								v = 0
							}
							if M[l] != nil {
								v *= M[l][r*ly.Out+o]
							}
							next[o] = v
						}
					}
					y := d.Label(batch[r])
					cw := t.cw[y]
					rowLoss[r] = cw * ceGrad(Z[nl-1][r*k:(r+1)*k], int(y), eps, cw*invB, Dl[nl-1][r*k:(r+1)*k], ebuf[w])
					for l := nl - 1; l > 0; l-- {
						ly := &layers[l]
						prev := &layers[l-1]
						dz := Dl[l][r*ly.Out : (r+1)*ly.Out]
						dp := Dl[l-1][r*prev.Out : (r+1)*prev.Out]
						clear(dp)
						for o, g := range dz {
							if g != 0 {
								axpy(g, ly.W[o*ly.In:(o+1)*ly.In], dp)
							}
						}
						zp := Z[l-1][r*prev.Out : (r+1)*prev.Out]
						for i := range dp {
							if prev.Act == dense.ActReLU && zp[i] <= 0 {
								dp[i] = 0
							} else if M[l-1] != nil {
								dp[i] *= M[l-1][r*prev.Out+i]
							}
						}
					}
				}
			})
			for r := 0; r < rows; r++ {
				epochLoss += rowLoss[r]
			}

			// Phase 2: parameters.
			t1 := float64(step)
			bc1 := float32(1 - math.Pow(beta1, t1))
			bc2 := float32(1 - math.Pow(beta2, t1))
			parallelForW(t.threads, len(parts), func(w, pi int) {
				p := parts[pi]
				ly := &layers[p.l]
				s := &st[p.l]
				nc := p.c1 - p.c0
				g := gbuf[w][:(p.o1-p.o0)*nc]
				clear(g)
				dl, al := Dl[p.l], A[p.l]
				for r := 0; r < rows; r++ {
					a := al[r*ly.In+p.c0 : r*ly.In+p.c1]
					for o := p.o0; o < p.o1; o++ {
						if dv := dl[r*ly.Out+o]; dv != 0 {
							axpy(dv, a, g[(o-p.o0)*nc:(o-p.o0+1)*nc])
						}
					}
				}
				lrl := float32(lr)
				if p.l < m.Tuned {
					lrl *= float32(cfg.TunedLRScale)
				}
				for o := p.o0; o < p.o1; o++ {
					off := o*ly.In + p.c0
					wr := ly.W[off : off+nc]
					gr := g[(o-p.o0)*nc : (o-p.o0+1)*nc]
					if lambda != 0 {
						axpy(lambda, wr, gr)
					}
					if cfg.Optimizer == OptAdam {
						adamUpdate(wr, gr, s.mW[off:off+nc], s.vW[off:off+nc], lrl, bc1, bc2)
					} else {
						sgdUpdate(wr, gr, s.mW[off:off+nc], lrl, float32(cfg.Momentum))
					}
					if p.c0 == 0 {
						var gb float32
						for r := 0; r < rows; r++ {
							gb += dl[r*ly.Out+o]
						}
						gs := []float32{gb}
						if cfg.Optimizer == OptAdam {
							adamUpdate(ly.B[o:o+1], gs, s.mB[o:o+1], s.vB[o:o+1], lrl, bc1, bc2)
						} else {
							sgdUpdate(ly.B[o:o+1], gs, s.mB[o:o+1], lrl, float32(cfg.Momentum))
						}
					}
				}
			})
		}
		rep.Epochs = epoch
		trainLoss := epochLoss / float64(n)
		vl, va := t.valLoss(valLogits)
		secs := since(t.start)
		rep.History = append(rep.History, EpochStats{Epoch: epoch, LR: lr, TrainLoss: trainLoss, ValLoss: vl, ValAcc: va, Seconds: secs})
		rep.TrainLoss = trainLoss
		t.logf("epoch %3d  lr %.2e  train loss %.4f  val loss %.4f  val acc %.4f  %.1fs\n", epoch, lr, trainLoss, vl, va, secs)
		if math.IsNaN(trainLoss) || math.IsInf(trainLoss, 0) {
			rep.Stopped = "diverged"
			break
		}
		if cfg.Patience > 0 && !math.IsNaN(vl) {
			if vl < bestLoss {
				bestLoss, bad, rep.BestEpoch = vl, 0, epoch
				best = cloneLayers(best, layers)
			} else if bad++; bad >= cfg.Patience {
				rep.Stopped = "early-stop"
				break
			}
		}
	}
	rep.Iters = step
	if rep.Stopped == "" {
		rep.Stopped = "epochs"
	}
	if best != nil {
		for l := range layers {
			copy(layers[l].W, best[l].W)
			copy(layers[l].B, best[l].B)
		}
	}
	return rep, nil
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
