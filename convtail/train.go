package convtail

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
)

// Model is a conv tail followed by global average pooling, optional
// standardisation and a softmax regression head:
// logits = HeadW · z + HeadB with z = (pool(tail(x)) - Mean) / Std.
type Model struct {
	Tail  []Layer
	K     int       // classes
	HeadW []float32 // [K, C] with C the last layer's OutC
	HeadB []float32 // [K]
	// Mean and Std [C] standardise the pooled features; nil skips it.
	// They are kept apart from HeadW rather than folded into it: pooled
	// features with a tiny spread would otherwise give weights in the
	// thousands, and the large terms of W·f - W·mean cancel in float32.
	Mean, Std []float32
}

// Config sets the training.
type Config struct {
	Epochs    int
	BatchSize int
	LR        float64 // Adam step of the head
	// TailLRScale multiplies LR for the tail's layers; 0 freezes them
	// (the frozen baseline: features are pooled once and only the head
	// learns).
	TailLRScale float64
	WeightDecay float64 // decoupled (AdamW), on weights only
	Seed        uint64
	Threads     int // 0: GOMAXPROCS
	// InitW [K, C] and InitB [K] start the head from given weights (a
	// linear probe trained on the frozen tail's pooled features, for
	// instance); nil starts it at zero. They are copied.
	InitW, InitB []float32
	// Mean and Std [C] standardise the pooled features before the head
	// (Model.Mean, Model.Std); nil: none. They stay fixed. They are copied.
	Mean, Std []float32
}

// Report says what training did.
type Report struct {
	Epochs    int
	TrainLoss float64
	Seconds   float64
}

// Data is N maps of InLen values each, row-major, with labels in [0, K).
type Data struct {
	X []float32
	N int
	Y []int32
	// Idx, when not nil, makes Train use only these rows (a training
	// split of a larger cache, without copying its maps). Features and
	// Predict ignore it.
	Idx []int
}

// Features runs the tail on every map and returns the pooled features
// [N, C].
func (m *Model) Features(d Data, threads int) []float32 {
	c := m.Tail[len(m.Tail)-1].OutC
	out := make([]float32, d.N*c)
	parallel(d.N, threads, func(lo, hi int) {
		w := newWork(m.Tail)
		for i := lo; i < hi; i++ {
			m.forward(d.X[i*m.Tail[0].InLen():(i+1)*m.Tail[0].InLen()], w)
			l := &m.Tail[len(m.Tail)-1]
			Pool(w.acts[len(m.Tail)], c, l.OutH()*l.OutW(), out[i*c:(i+1)*c])
		}
	})
	return out
}

// Predict returns the argmax class of each map.
func (m *Model) Predict(d Data, threads int) []int32 {
	f := m.Features(d, threads)
	c := len(f) / max(d.N, 1)
	pred := make([]int32, d.N)
	logits := make([]float32, m.K)
	for i := 0; i < d.N; i++ {
		m.logits(f[i*c:(i+1)*c], logits)
		best := 0
		for j := range logits {
			if logits[j] > logits[best] {
				best = j
			}
		}
		pred[i] = int32(best)
	}
	return pred
}

// Logits writes the head's K logits for the pooled features f [C] into out.
func (m *Model) Logits(f, out []float32) { m.logits(f, out) }

func (m *Model) logits(f, out []float32) {
	c := len(f)
	for j := 0; j < m.K; j++ {
		s := m.HeadB[j]
		for i, v := range f {
			s += m.HeadW[j*c+i] * m.z(i, v)
		}
		out[j] = s
	}
}

// z standardises feature i.
func (m *Model) z(i int, v float32) float32 {
	if m.Mean == nil {
		return v
	}
	return (v - m.Mean[i]) / m.Std[i]
}

// invStd is d z_i / d f_i.
func (m *Model) invStd(i int) float32 {
	if m.Std == nil {
		return 1
	}
	return 1 / m.Std[i]
}

// work is one goroutine's buffers.
type work struct {
	acts [][]float32 // acts[0] is the input, acts[i+1] layer i's output
	grad [][]float32
	s    []Scratch
}

func newWork(tail []Layer) *work {
	w := &work{acts: make([][]float32, len(tail)+1), grad: make([][]float32, len(tail)+1), s: make([]Scratch, len(tail))}
	for i := range tail {
		w.acts[i+1] = make([]float32, tail[i].OutLen())
		w.grad[i+1] = make([]float32, tail[i].OutLen())
		if i > 0 {
			w.grad[i] = make([]float32, tail[i].InLen())
		}
	}
	return w
}

func (m *Model) forward(x []float32, w *work) {
	w.acts[0] = x
	for i := range m.Tail {
		m.Tail[i].Forward(w.acts[i], w.acts[i+1], &w.s[i])
	}
}

func parallel(n, threads int, f func(lo, hi int)) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	threads = min(threads, max(n, 1))
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		lo, hi := n*t/threads, n*(t+1)/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// adam is the optimiser state of one parameter slice.
type adam struct{ m, v []float64 }

func (a *adam) step(p, g []float32, lr, wd float64, t int, scale float32) {
	if a.m == nil {
		a.m, a.v = make([]float64, len(p)), make([]float64, len(p))
	}
	const b1, b2, eps = 0.9, 0.999, 1e-8
	c1, c2 := 1-math.Pow(b1, float64(t)), 1-math.Pow(b2, float64(t))
	for i := range p {
		gi := float64(g[i]) * float64(scale)
		a.m[i] = b1*a.m[i] + (1-b1)*gi
		a.v[i] = b2*a.v[i] + (1-b2)*gi*gi
		p[i] -= float32(lr * (a.m[i]/c1/(math.Sqrt(a.v[i]/c2)+eps) + wd*float64(p[i])))
	}
}

// Train fine-tunes tail (copied, never modified) and a new head on d with
// classes [0, k). The head starts at zero; the tail starts from the given
// (pretrained) weights.
func Train(ctx context.Context, tail []Layer, k int, d Data, cfg Config) (*Model, *Report, error) {
	start := time.Now()
	if len(tail) == 0 || k < 2 || d.N == 0 {
		return nil, nil, fmt.Errorf("convtail: need layers, 2+ classes and data")
	}
	for i := range tail {
		if err := tail[i].Validate(); err != nil {
			return nil, nil, fmt.Errorf("convtail: layer %d: %w", i, err)
		}
		if i > 0 && (tail[i].InC != tail[i-1].OutC || tail[i].InH != tail[i-1].OutH() || tail[i].InW != tail[i-1].OutW()) {
			return nil, nil, fmt.Errorf("convtail: layer %d does not take layer %d's output", i, i-1)
		}
	}
	if len(d.X) != d.N*tail[0].InLen() || len(d.Y) != d.N {
		return nil, nil, fmt.Errorf("convtail: %d values and %d labels for %d maps of %d", len(d.X), len(d.Y), d.N, tail[0].InLen())
	}
	for _, i := range d.Idx {
		if i < 0 || i >= d.N {
			return nil, nil, fmt.Errorf("convtail: row %d of %d", i, d.N)
		}
	}
	m := &Model{K: k}
	for _, l := range tail {
		m.Tail = append(m.Tail, l.Clone())
	}
	last := &m.Tail[len(m.Tail)-1]
	c, ohw := last.OutC, last.OutH()*last.OutW()
	m.HeadW, m.HeadB = make([]float32, k*c), make([]float32, k)
	if cfg.InitW != nil || cfg.InitB != nil {
		if len(cfg.InitW) != k*c || len(cfg.InitB) != k {
			return nil, nil, fmt.Errorf("convtail: initial head has %d weights and %d biases, want %dx%d and %d", len(cfg.InitW), len(cfg.InitB), k, c, k)
		}
		copy(m.HeadW, cfg.InitW)
		copy(m.HeadB, cfg.InitB)
	}
	if cfg.Mean != nil || cfg.Std != nil {
		if len(cfg.Mean) != c || len(cfg.Std) != c {
			return nil, nil, fmt.Errorf("convtail: standardisation for %d/%d features, the tail gives %d", len(cfg.Mean), len(cfg.Std), c)
		}
		for i, v := range cfg.Std {
			if !(v > 0) {
				return nil, nil, fmt.Errorf("convtail: std[%d] = %g, want > 0", i, v)
			}
		}
		m.Mean, m.Std = append([]float32(nil), cfg.Mean...), append([]float32(nil), cfg.Std...)
	}
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	bs := max(cfg.BatchSize, 1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc0de))
	order := append([]int(nil), d.Idx...)
	if d.Idx == nil {
		order = make([]int, d.N)
		for i := range order {
			order[i] = i
		}
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("convtail: no training rows")
	}
	tune := cfg.TailLRScale > 0
	var frozen []float32
	if !tune {
		frozen = m.Features(d, threads)
	}
	type grads struct {
		w, b   [][]float32
		hw, hb []float32
		loss   float64
		work   *work
		feat   []float32
		logits []float32
	}
	gs := make([]*grads, threads)
	for t := range gs {
		g := &grads{hw: make([]float32, k*c), hb: make([]float32, k), work: newWork(m.Tail), feat: make([]float32, c), logits: make([]float32, k)}
		for _, l := range m.Tail {
			g.w = append(g.w, make([]float32, len(l.W)))
			g.b = append(g.b, make([]float32, len(l.B)))
		}
		gs[t] = g
	}
	optW, optB := make([]adam, len(m.Tail)), make([]adam, len(m.Tail))
	var optHW, optHB adam
	step := 0
	rep := &Report{}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var epochLoss float64
		for b0 := 0; b0 < len(order); b0 += bs {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			batch := order[b0:min(b0+bs, len(order))]
			var wg sync.WaitGroup
			for t, g := range gs {
				lo, hi := len(batch)*t/threads, len(batch)*(t+1)/threads
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, s := range g.w {
						clear(s)
					}
					for _, s := range g.b {
						clear(s)
					}
					clear(g.hw)
					clear(g.hb)
					g.loss = 0
					for _, i := range batch[lo:hi] {
						var feat []float32
						if tune {
							m.forward(d.X[i*m.Tail[0].InLen():(i+1)*m.Tail[0].InLen()], g.work)
							Pool(g.work.acts[len(m.Tail)], c, ohw, g.feat)
							feat = g.feat
						} else {
							feat = frozen[i*c : (i+1)*c]
						}
						m.logits(feat, g.logits)
						// softmax cross-entropy
						mx := g.logits[0]
						for _, v := range g.logits {
							mx = max(mx, v)
						}
						var z float64
						for _, v := range g.logits {
							z += math.Exp(float64(v - mx))
						}
						y := d.Y[i]
						g.loss += math.Log(z) - float64(g.logits[y]-mx)
						dfeat := g.work.grad[len(m.Tail)]
						if tune {
							clear(dfeat[:c])
						}
						for j := 0; j < k; j++ {
							p := float32(math.Exp(float64(g.logits[j]-mx)) / z)
							if int32(j) == y {
								p--
							}
							g.hb[j] += p
							row := m.HeadW[j*c : (j+1)*c]
							grow := g.hw[j*c : (j+1)*c]
							for q, v := range feat {
								grow[q] += p * m.z(q, v)
								if tune {
									dfeat[q] += p * row[q] * m.invStd(q)
								}
							}
						}
						if !tune {
							continue
						}
						// Through the pooling: every position gets 1/HW.
						dy := g.work.grad[len(m.Tail)]
						for q := c - 1; q >= 0; q-- {
							v := dy[q] / float32(ohw)
							for p := q * ohw; p < (q+1)*ohw; p++ {
								dy[p] = v
							}
						}
						for li := len(m.Tail) - 1; li >= 0; li-- {
							var dx []float32
							if li > 0 {
								dx = g.work.grad[li]
							}
							m.Tail[li].Backward(g.work.acts[li], g.work.acts[li+1], g.work.grad[li+1], g.w[li], g.b[li], dx, &g.work.s[li])
						}
					}
				}()
			}
			wg.Wait()
			for t := 1; t < len(gs); t++ {
				addTo(gs[0].hw, gs[t].hw)
				addTo(gs[0].hb, gs[t].hb)
				gs[0].loss += gs[t].loss
				for li := range m.Tail {
					addTo(gs[0].w[li], gs[t].w[li])
					addTo(gs[0].b[li], gs[t].b[li])
				}
			}
			epochLoss += gs[0].loss
			step++
			inv := 1 / float32(len(batch))
			optHW.step(m.HeadW, gs[0].hw, cfg.LR, cfg.WeightDecay, step, inv)
			optHB.step(m.HeadB, gs[0].hb, cfg.LR, 0, step, inv)
			if tune {
				lr := cfg.LR * cfg.TailLRScale
				for li := range m.Tail {
					optW[li].step(m.Tail[li].W, gs[0].w[li], lr, cfg.WeightDecay, step, inv)
					optB[li].step(m.Tail[li].B, gs[0].b[li], lr, 0, step, inv)
				}
			}
		}
		rep.Epochs = epoch + 1
		rep.TrainLoss = epochLoss / float64(len(order))
	}
	for _, l := range m.Tail {
		if !finite(l.W) || !finite(l.B) {
			return nil, nil, fmt.Errorf("convtail: diverged (try a lower learning rate)")
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return m, rep, nil
}

func addTo(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}
