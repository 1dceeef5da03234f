package head

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/headtune/headtune/dense"
)

// Blocks is a feature matrix too large for memory, read block by block: a
// segment chunk, or a run of rows of a local cache. Rows are numbered
// 0..N-1 across all blocks; every row lies in exactly one block.
type Blocks interface {
	// NumBlocks is the number of blocks.
	NumBlocks() int
	// ReadBlock calls fn for every row of block b for which in is true
	// (nil: every row), in a fixed order; a reader may skip reading the
	// others. feat [D] is only valid during the call (the reader reuses
	// it); fn must copy what it keeps. An error from fn stops the read and
	// is returned.
	ReadBlock(ctx context.Context, b int, in func(row int) bool, fn func(row int, feat []float32) error) error
}

// MemMeter counts the bytes of feature buffers that are allocated at once
// and their peak: the figure a memory budget bounds. A nil *MemMeter counts
// nothing. It is safe for concurrent use.
type MemMeter struct {
	mu        sync.Mutex
	cur, peak int64
}

// Add records n more bytes in use (n < 0: released).
func (m *MemMeter) Add(n int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.cur += n
	m.peak = max(m.peak, m.cur)
	m.mu.Unlock()
}

// Peak is the largest number of bytes in use at once so far.
func (m *MemMeter) Peak() int64 {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

// StreamData is a labelled training set that is read block by block
// instead of held in memory.
type StreamData struct {
	Src  Blocks
	N, D int     // rows in Src, features per row
	Y    []int32 // [N] labels of all rows of Src
	// In reports whether row belongs to this set (e.g. the training split);
	// nil means every row does.
	In func(row int) bool
	// Rows is the number of rows for which In is true.
	Rows int
	// BufferRows is the capacity of the shuffle buffer in rows (at least
	// 1): rows stream into it in block order and leave it at random,
	// as tf.data's shuffle does. Memory: BufferRows*D*4 bytes.
	BufferRows int
	// Meter, when set, counts the feature buffers TrainStream allocates
	// (shuffle buffer and batch).
	Meter *MemMeter
}

func (s StreamData) in(row int) bool { return s.In == nil || s.In(row) }

// each calls fn for every row of the set, block by block in order.
func (s StreamData) each(ctx context.Context, fn func(row int, feat []float32) error) error {
	for b := 0; b < s.Src.NumBlocks(); b++ {
		err := s.Src.ReadBlock(ctx, b, s.In, fn)
		if err != nil {
			return err
		}
	}
	return nil
}

// streamStats is standardStats over a stream: two passes (mean, then the
// spread around it) in float64, so that large offsets do not cancel.
func streamStats(ctx context.Context, s StreamData) (mean, std []float32, err error) {
	mu := make([]float64, s.D)
	err = s.each(ctx, func(_ int, feat []float32) error {
		for j, v := range feat {
			mu[j] += float64(v)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for j := range mu {
		mu[j] /= float64(s.Rows)
	}
	vr := make([]float64, s.D)
	err = s.each(ctx, func(_ int, feat []float32) error {
		for j, v := range feat {
			e := float64(v) - mu[j]
			vr[j] += e * e
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	mean, std = make([]float32, s.D), make([]float32, s.D)
	for j := range mu {
		mean[j] = float32(mu[j])
		sd := math.Sqrt(vr[j] / float64(s.Rows))
		if !(sd > 1e-12*math.Max(1, math.Abs(mu[j]))) {
			sd = 1
		}
		std[j] = float32(sd)
	}
	return mean, std, nil
}

// TrainStream is Train for a training set read block by block (Adam or
// SGD only: L-BFGS needs every row at every iteration). Each epoch visits
// the blocks in a random order and passes the rows through a shuffle
// buffer of train.BufferRows rows: a row entering a full buffer replaces
// one drawn at random, which joins the batch. Everything is drawn from
// cfg.Seed, so a run repeats bit for bit. val is held in memory and drives
// early stopping and the temperature, as in Train. Standardisation
// statistics cost two passes over the rows before training.
//
// Memory: beyond the model, optimiser and val, TrainStream allocates the
// shuffle buffer (BufferRows*D*4 bytes) and one batch (BatchSize*D*4) of
// features, counted in train.Meter, plus 4 bytes per buffered row for its
// label.
func TrainStream(ctx context.Context, train StreamData, val Data, cfg Config, log io.Writer) (*Model, *Report, error) {
	start := time.Now()
	if err := cfg.check(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if cfg.Optimizer == OptLBFGS {
		return nil, nil, errors.New("train: L-BFGS needs every training row at every iteration and cannot stream; train it on a subsample in memory")
	}
	if train.Src == nil || train.Rows <= 0 || len(train.Y) != train.N || train.D <= 0 {
		return nil, nil, fmt.Errorf("train: streamed training set: %d rows of %d (labels %d), dimension %d", train.Rows, train.N, len(train.Y), train.D)
	}
	if train.BufferRows < 1 {
		return nil, nil, fmt.Errorf("train: shuffle buffer of %d rows", train.BufferRows)
	}
	if val.Rows() > 0 {
		if err := val.Validate(0); err != nil {
			return nil, nil, fmt.Errorf("train: validation set: %w", err)
		}
		if val.D != train.D || val.Y == nil {
			return nil, nil, fmt.Errorf("train: validation rows have %d features (labels: %v), training rows %d", val.D, val.Y != nil, train.D)
		}
	}
	classes := cfg.Classes
	k := len(classes)
	if k < 2 {
		return nil, nil, fmt.Errorf("train: streaming needs the class names (Config.Classes, at least 2), have %d", k)
	}
	counts := make([]int, k)
	for r, y := range train.Y {
		if !train.in(r) {
			continue
		}
		if y < 0 || int(y) >= k {
			return nil, nil, fmt.Errorf("train: training set: row %d: label %d out of range [0, %d)", r, y, k)
		}
		counts[y]++
	}
	if val.Rows() > 0 {
		if err := val.Validate(k); err != nil {
			return nil, nil, fmt.Errorf("train: validation set: %w", err)
		}
	}
	in := train.D
	for i, l := range cfg.InitLayers {
		if err := validateLayer(l, i); err != nil {
			return nil, nil, fmt.Errorf("train: pretrained %w", err)
		}
		if l.In != in {
			return nil, nil, fmt.Errorf("train: pretrained layer %d takes %d inputs, gets %d", i, l.In, in)
		}
		in = l.Out
	}
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	var mean, std []float32
	if cfg.Standardize && len(cfg.InitLayers) == 0 {
		var err error
		if mean, std, err = streamStats(ctx, train); err != nil {
			return nil, nil, fmt.Errorf("train: %w", err)
		}
	}
	m, rng := newModel(cfg, classes, in, mean, std)
	bs := min(cfg.BatchSize, train.Rows)
	// The trainer's training set is one batch, refilled from the shuffle
	// buffer before every step.
	batch := Data{X: make([]float32, bs*train.D), N: bs, D: train.D, Y: make([]int32, bs)}
	train.Meter.Add(int64(4 * len(batch.X)))
	defer train.Meter.Add(-int64(4 * len(batch.X)))
	tr := &trainer{cfg: cfg, m: m, train: batch, val: val, k: k, threads: threads, log: log, start: start,
		cw: classWeights(counts, cfg.Balance)}
	rep, err := tr.minibatchStream(ctx, rng, train, batch)
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if err := tr.finish(rep, train.Rows); err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}

// minibatchStream is minibatch over a streamed set: the same steps,
// learning-rate schedule, early stopping and per-step arithmetic, with the
// batch rows taken from a shuffle buffer instead of a permutation.
func (t *trainer) minibatchStream(ctx context.Context, rng *rand.Rand, s StreamData, batch Data) (*Report, error) {
	cfg, n := t.cfg, s.Rows
	r := newMinibatchRun(t)
	spe := (n + r.bs - 1) / r.bs
	total := cfg.Epochs * spe
	warm := cfg.Warmup * spe
	d := s.D
	capRows := min(s.BufferRows, n)
	buf := make([]float32, capRows*d)
	s.Meter.Add(int64(4 * len(buf)))
	defer s.Meter.Add(-int64(4 * len(buf)))
	bufY := make([]int32, capRows)
	ident := make([]int, r.bs)
	for i := range ident {
		ident[i] = i
	}
	rep := &Report{}
	valLogits := make([]float32, t.val.Rows()*t.k)
	bestLoss := math.Inf(1)
	var bestLayers []dense.Layer
	haveBest := false
	bad := 0
	step := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		epochLoss := 0.0
		var lr float64
		nb, fill := 0, 0
		flush := func() error {
			if nb == 0 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			lr = learningRate(cfg, step, warm, total)
			step++
			r.drawMasks(rng, nb)
			r.rowsPhase(ident[:nb])
			for _, l := range r.rowLoss[:nb] {
				epochLoss += l
			}
			r.paramsPhase(nb, lr, step)
			nb = 0
			return nil
		}
		emit := func(x []float32, y int32) error {
			copy(batch.X[nb*d:(nb+1)*d], x)
			batch.Y[nb] = y
			nb++
			if nb == r.bs {
				return flush()
			}
			return nil
		}
		order := rng.Perm(s.Src.NumBlocks())
		for _, b := range order {
			err := s.Src.ReadBlock(ctx, b, s.In, func(row int, feat []float32) error {
				y := s.Y[row]
				if fill < capRows {
					copy(buf[fill*d:(fill+1)*d], feat)
					bufY[fill] = y
					fill++
					return nil
				}
				j := rng.IntN(capRows)
				if err := emit(buf[j*d:(j+1)*d], bufY[j]); err != nil {
					return err
				}
				copy(buf[j*d:(j+1)*d], feat)
				bufY[j] = y
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		// Drain the buffer in a random order.
		for _, j := range rng.Perm(fill) {
			if err := emit(buf[j*d:(j+1)*d], bufY[j]); err != nil {
				return nil, err
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		rep.Epochs = epoch
		trainLoss := epochLoss / float64(n)
		vl, va := t.valLoss(valLogits)
		secs := since(t.start)
		rep.History = append(rep.History, EpochStats{Epoch: epoch, LR: lr, TrainLoss: trainLoss, ValLoss: vl, ValAcc: va, Seconds: secs})
		rep.TrainLoss = trainLoss
		t.logf("epoch %3d  lr %.2e  train loss %.4f%s  %.1fs (streamed)\n", epoch, lr, trainLoss, valText(vl, va), secs)
		if math.IsNaN(trainLoss) || math.IsInf(trainLoss, 0) {
			rep.Stopped = "diverged"
			break
		}
		if cfg.Patience > 0 && !math.IsNaN(vl) {
			if vl < bestLoss {
				bestLoss, bad, rep.BestEpoch = vl, 0, epoch
				bestLayers, haveBest = cloneLayers(bestLayers, r.layers), true
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
	if haveBest {
		for l := range r.layers {
			copy(r.layers[l].W, bestLayers[l].W)
			copy(r.layers[l].B, bestLayers[l].B)
		}
	}
	return rep, nil
}

// FitStream is Fit for a training set read block by block: TrainStream,
// then calibration (temperature and prediction sets) on the validation
// rows, which are in memory, and the domain guard fitted on every training
// row in one more streamed pass. Cross-validation needs every training
// row in memory for each fold, so it is refused (opt.CVFolds > 0) or not
// run (CVFolds 0, where Fit would run it for want of validation rows);
// augmented views are refused.
func FitStream(ctx context.Context, train StreamData, val Data, cfg Config, opt FitOptions) (*FitResult, error) {
	if opt.MinCalibRows <= 0 {
		opt.MinCalibRows = DefaultMinCalibRows
	}
	if opt.CVFolds > 0 {
		return nil, fmt.Errorf("fit: cross-validation (--cv %d) needs every training row in memory, and these features do not fit the memory budget: raise --memory or drop --cv", opt.CVFolds)
	}
	if len(opt.Views) > 0 {
		return nil, errors.New("fit: augmented views cannot be trained on when streaming features; raise --memory")
	}
	m, rep, err := TrainStream(ctx, train, val, cfg, opt.Log)
	if err != nil {
		return nil, err
	}
	res := &FitResult{Model: m, Report: rep}
	k := m.NumClasses()
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	cal := Calibration{Source: CalibNone}
	var logits []float32
	var labels []int32
	if val.Rows() > 0 {
		logits = make([]float32, val.Rows()*k)
		m.logitsData(val, logits, threads)
		labels = make([]int32, val.Rows())
		for i := range labels {
			labels[i] = val.Label(i)
		}
		cal.Source = CalibValidation
		if val.Rows() < opt.MinCalibRows {
			res.Notes = append(res.Notes, fmt.Sprintf("calibrated on only %d validation images (cross-validation is not available when streaming)", val.Rows()))
		}
	} else {
		cal.Reason = "no validation images, and cross-validation is not available when streaming"
		res.Notes = append(res.Notes, "no calibration: "+cal.Reason)
	}
	if err := applyCalibration(m, logits, labels, &cal, 0); err != nil {
		return nil, err
	}
	if err := m.setDomainStream(ctx, train); err != nil {
		return nil, fmt.Errorf("fit: domain: %w", err)
	}
	m.recalibratedValMetrics(val, threads)
	return res, nil
}

// setDomainStream is setDomain over a streamed set.
func (m *Model) setDomainStream(ctx context.Context, s StreamData) error {
	if m.Mean == nil || s.Rows == 0 {
		m.Domain = nil
		return nil
	}
	m.Domain = &Domain{Shrink: domainShrink(m.Std, s.Rows)}
	mx := 0.0
	err := s.each(ctx, func(_ int, feat []float32) error {
		mx = math.Max(mx, m.Distance(feat))
		return nil
	})
	if err != nil {
		return err
	}
	m.Domain.MaxTrain, m.Domain.Limit = mx, DomainFactor*mx
	return nil
}

// PredictStream computes the calibrated probabilities of the rows of s,
// in s's block order, and calls fn with each row and its probabilities
// [NumClasses()] (valid only during the call).
func (m *Model) PredictStream(ctx context.Context, s StreamData, fn func(row int, probs []float32) error) error {
	var sc Scratch
	probs := make([]float32, m.NumClasses())
	return s.each(ctx, func(row int, feat []float32) error {
		if err := m.Predict(feat, probs, &sc); err != nil {
			return err
		}
		return fn(row, probs)
	})
}
