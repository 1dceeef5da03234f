package head

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/headtune/headtune/dense"
)

// Head kinds.
const (
	KindLinear = "linear" // multinomial logistic regression (one dense layer)
	KindMLP    = "mlp"    // hidden ReLU layers with dropout, then a dense layer
)

// Optimisers.
const (
	OptLBFGS = "lbfgs" // full-batch L-BFGS (gonum/optimize), linear heads only
	OptAdam  = "adam"  // mini-batch Adam
	OptSGD   = "sgd"   // mini-batch SGD with momentum
)

// Learning-rate schedules for the mini-batch optimisers.
const (
	ScheduleCosine   = "cosine"   // linear warm-up, then cosine decay to 0 at the last step
	ScheduleConstant = "constant" // linear warm-up, then constant
)

// Config holds the training settings. Start from DefaultConfig.
//
// The objective minimised is
//
//	Σ_i w_i·CE(q_i, softmax(f(x_i))) / N  +  λ/2 · Σ_layers ||W||²
//
// where w_i is 1 or the balanced class weight of the row's class, q_i the
// (smoothed) target, N the number of training rows; biases are not
// penalised. For L-BFGS with C > 0, λ = 1/(C·N): the same minimiser as
// scikit-learn's LogisticRegression(C=C), which minimises the sum of losses
// plus ||W||²/(2C).
type Config struct {
	Kind           string  `json:"kind"`
	Hidden         []int   `json:"hidden,omitempty"`  // hidden layer widths (mlp)
	Dropout        float64 `json:"dropout,omitempty"` // drop probability after every hidden layer, [0, 1)
	Optimizer      string  `json:"optimizer"`
	LR             float64 `json:"lr,omitempty"`       // peak learning rate (adam, sgd)
	Momentum       float64 `json:"momentum,omitempty"` // sgd momentum, [0, 1)
	WeightDecay    float64 `json:"weight_decay"`       // λ, L2 strength per mean loss; ignored by lbfgs when C > 0
	C              float64 `json:"c,omitempty"`        // lbfgs: scikit-learn's inverse regularisation strength (λ = 1/(C·N)); 0 uses WeightDecay
	LabelSmoothing float64 `json:"label_smoothing,omitempty"`
	Epochs         int     `json:"epochs,omitempty"`     // mini-batch: maximum epochs
	BatchSize      int     `json:"batch_size,omitempty"` // mini-batch: rows per step
	Warmup         int     `json:"warmup,omitempty"`     // mini-batch: warm-up epochs (linear ramp)
	Schedule       string  `json:"schedule,omitempty"`
	Patience       int     `json:"patience,omitempty"`  // early stopping: epochs (lbfgs: blocks of LogEvery iterations) without a better validation loss; 0 = off
	MaxIter        int     `json:"max_iter,omitempty"`  // lbfgs: maximum iterations
	Tol            float64 `json:"tol,omitempty"`       // lbfgs: gradient tolerance in scikit-learn's units (max |∂/∂w| of the summed objective)
	LogEvery       int     `json:"log_every,omitempty"` // lbfgs: iterations per log line and validation check
	Balance        bool    `json:"balance,omitempty"`   // weight classes by n/(k·n_c)
	Seed           int64   `json:"seed"`
	Threads        int     `json:"threads,omitempty"` // worker goroutines; 0 = GOMAXPROCS. Results do not depend on it.
	Standardize    bool    `json:"standardize"`       // standardise features with training-split statistics (ignored with InitLayers)
	TunedLRScale   float64 `json:"tuned_lr_scale,omitempty"`
	// Classes names the classes; labels index it. Empty: "0".."K-1" with K
	// one more than the largest label seen.
	Classes []string `json:"-"`
	// InitLayers are pretrained dense layers (e.g. a backbone's fc6, fc7)
	// fine-tuned in front of the new head; they take the raw features.
	// They are cloned, never modified.
	InitLayers []dense.Layer `json:"-"`
}

// DefaultConfig returns the recommended settings for a head kind:
// "linear": L-BFGS matching scikit-learn's LogisticRegression defaults
// (C=1, tol=1e-4, max_iter=1000) on standardised features;
// "mlp": one hidden layer of 512 units, dropout 0.2, Adam with lr 1e-3,
// cosine schedule, early stopping. Unknown kinds get the linear settings
// with Kind set, so that Train reports the bad kind.
func DefaultConfig(kind string) Config {
	c := Config{
		Kind:         kind,
		Optimizer:    OptLBFGS,
		C:            1,
		MaxIter:      1000,
		Tol:          1e-4,
		LogEvery:     10,
		LR:           1e-3,
		Momentum:     0.9,
		WeightDecay:  1e-4,
		Epochs:       100,
		BatchSize:    256,
		Warmup:       1,
		Schedule:     ScheduleCosine,
		Standardize:  true,
		TunedLRScale: 0.1,
	}
	if kind == KindMLP {
		c.Optimizer = OptAdam
		c.C = 0
		c.Hidden = []int{512}
		c.Dropout = 0.2
		c.Epochs = 40
		c.Warmup = 2
		c.Patience = 6
	}
	return c
}

func (c *Config) check() error {
	switch c.Kind {
	case KindLinear:
		if len(c.Hidden) > 0 {
			return fmt.Errorf("kind %s takes no hidden layers (got %v)", c.Kind, c.Hidden)
		}
	case KindMLP:
		if len(c.Hidden) == 0 {
			return fmt.Errorf("kind %s needs at least one hidden layer", c.Kind)
		}
		for _, h := range c.Hidden {
			if h <= 0 || h > 1<<20 {
				return fmt.Errorf("hidden layer width %d out of range", h)
			}
		}
	default:
		return fmt.Errorf("unknown head kind %q (want %s or %s)", c.Kind, KindLinear, KindMLP)
	}
	bad := func(name string, v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	switch {
	case bad("dropout", c.Dropout) || c.Dropout >= 1:
		return fmt.Errorf("dropout %g out of range [0, 1)", c.Dropout)
	case bad("", c.WeightDecay):
		return fmt.Errorf("weight decay %g must be >= 0", c.WeightDecay)
	case bad("", c.C):
		return fmt.Errorf("C %g must be >= 0", c.C)
	case bad("", c.LabelSmoothing) || c.LabelSmoothing >= 1:
		return fmt.Errorf("label smoothing %g out of range [0, 1)", c.LabelSmoothing)
	}
	switch c.Optimizer {
	case OptLBFGS:
		if c.Kind != KindLinear || len(c.InitLayers) > 0 {
			return fmt.Errorf("optimizer %s trains linear heads without tuned layers only; use %s or %s", OptLBFGS, OptAdam, OptSGD)
		}
		if c.MaxIter <= 0 {
			return fmt.Errorf("max_iter %d must be > 0", c.MaxIter)
		}
		if bad("", c.Tol) {
			return fmt.Errorf("tol %g must be >= 0", c.Tol)
		}
	case OptAdam, OptSGD:
		if !(c.LR > 0) || math.IsInf(c.LR, 0) {
			return fmt.Errorf("learning rate %g must be > 0", c.LR)
		}
		if c.Epochs <= 0 || c.BatchSize <= 0 {
			return fmt.Errorf("epochs %d and batch size %d must be > 0", c.Epochs, c.BatchSize)
		}
		if c.Warmup < 0 || c.Patience < 0 {
			return fmt.Errorf("warmup %d and patience %d must be >= 0", c.Warmup, c.Patience)
		}
		if bad("", c.Momentum) || c.Momentum >= 1 {
			return fmt.Errorf("momentum %g out of range [0, 1)", c.Momentum)
		}
		if c.Schedule != ScheduleCosine && c.Schedule != ScheduleConstant && c.Schedule != "" {
			return fmt.Errorf("unknown schedule %q (want %s or %s)", c.Schedule, ScheduleCosine, ScheduleConstant)
		}
		if bad("", c.TunedLRScale) {
			return fmt.Errorf("tuned_lr_scale %g must be >= 0", c.TunedLRScale)
		}
	default:
		return fmt.Errorf("unknown optimizer %q (want %s, %s or %s)", c.Optimizer, OptLBFGS, OptAdam, OptSGD)
	}
	return nil
}

// EpochStats is one line of the training history: an epoch for the
// mini-batch optimisers, a block of LogEvery iterations for L-BFGS.
type EpochStats struct {
	Epoch     int     `json:"epoch"` // epoch number, or L-BFGS iteration
	LR        float64 `json:"lr,omitempty"`
	TrainLoss float64 `json:"train_loss"` // objective on the training split (mean loss + L2)
	ValLoss   float64 `json:"val_loss"`   // mean validation cross-entropy; NaN without validation data
	ValAcc    float64 `json:"val_acc"`    // validation accuracy; NaN without validation data
	Seconds   float64 `json:"seconds"`    // since the start of training
}

// Report summarises a training run.
type Report struct {
	History   []EpochStats `json:"history"`
	Epochs    int          `json:"epochs"`
	Iters     int          `json:"iterations"`
	Evals     int          `json:"evaluations"` // L-BFGS: objective and gradient evaluations (passes over the data)
	BestEpoch int          `json:"best_epoch"`
	Stopped   string       `json:"stopped"`
	TrainLoss float64      `json:"train_loss"`
	ValLoss   float64      `json:"val_loss"`
	ValAcc    float64      `json:"val_acc"`
	Seconds   float64      `json:"seconds"`
}

// StopText turns a Report's Stopped reason into words.
func StopText(stopped string) string {
	switch stopped {
	case "epochs":
		return "ran all epochs"
	case "early-stop":
		return "stopped early: the validation loss stopped improving"
	case "diverged":
		return "stopped: the loss diverged"
	case "max-iter":
		return "reached the iteration limit"
	}
	return stopped
}

// progressText counts the work done in the optimiser's own unit.
func (r *Report) progressText() string {
	if r.Epochs > 0 {
		return fmt.Sprintf("%d epochs, %d steps", r.Epochs, r.Iters)
	}
	return fmt.Sprintf("%d iterations", r.Iters)
}

// Train fits a head on train and returns it with a report. val (which may
// have zero rows) drives early stopping and the temperature fit; it must
// have the same width. Progress lines go to log (nil: quiet). ctx cancels
// training between steps; the error then wraps ctx.Err().
//
// Memory: beyond the model and optimiser state, Train allocates per-worker
// buffers of a few hundred rows; the feature matrices are never copied.
func Train(ctx context.Context, train, val Data, cfg Config, log io.Writer) (*Model, *Report, error) {
	start := time.Now()
	if err := cfg.check(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if err := train.Validate(0); err != nil {
		return nil, nil, fmt.Errorf("train: training set: %w", err)
	}
	if train.Y == nil || train.Rows() == 0 {
		return nil, nil, errors.New("train: training set has no labelled rows")
	}
	if val.Rows() > 0 {
		if err := val.Validate(0); err != nil {
			return nil, nil, fmt.Errorf("train: validation set: %w", err)
		}
		if val.D != train.D {
			return nil, nil, fmt.Errorf("train: validation rows have %d features, training rows %d", val.D, train.D)
		}
		if val.Y == nil {
			return nil, nil, errors.New("train: validation set has no labels")
		}
	}
	classes := cfg.Classes
	if len(classes) == 0 {
		k := int32(0)
		for _, d := range []Data{train, val} {
			for i := 0; i < d.Rows(); i++ {
				k = max(k, d.Label(i)+1)
			}
		}
		classes = defaultClassNames(int(k))
	}
	k := len(classes)
	if k < 2 {
		return nil, nil, fmt.Errorf("train: need at least 2 classes, have %d", k)
	}
	if err := train.Validate(k); err != nil {
		return nil, nil, fmt.Errorf("train: training set: %w", err)
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
		mean, std = standardStats(train, threads)
	}
	m, rng := newModel(cfg, classes, in, mean, std)

	tr := &trainer{cfg: cfg, m: m, train: train, val: val, k: k, threads: threads, log: log, start: start,
		cw: classWeights(train.ClassCounts(k), cfg.Balance)}
	var rep *Report
	var err error
	if cfg.Optimizer == OptLBFGS {
		rep, err = tr.lbfgs(ctx)
	} else {
		rep, err = tr.minibatch(ctx, rng)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if err := tr.finish(rep, train.Rows()); err != nil {
		return nil, nil, err
	}
	return m, rep, nil
}

// newModel initialises a head of cfg's shape on in-wide inputs (after any
// InitLayers) with the given standardisation statistics (nil: none), and
// returns it with the random source training continues from.
func newModel(cfg Config, classes []string, in int, mean, std []float32) (*Model, *rand.Rand) {
	k := len(classes)
	m := &Model{Version: FormatVersion, Kind: cfg.Kind, Classes: append([]string(nil), classes...), Temperature: 1}
	m.Mean, m.Std = mean, std
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x4ead))
	for _, l := range cfg.InitLayers {
		m.Layers = append(m.Layers, l.Clone())
	}
	m.Tuned = len(cfg.InitLayers)
	for _, h := range cfg.Hidden {
		m.Layers = append(m.Layers, newDense(in, h, dense.ActReLU, rng))
		in = h
	}
	last := newDense(in, k, dense.ActNone, rng)
	if cfg.Optimizer == OptLBFGS {
		clear(last.W) // scikit-learn starts from zero
	}
	m.Layers = append(m.Layers, last)
	return m, rng
}

// finish validates the trained model, fits its temperature on the
// validation rows, and records metrics and TrainInfo; trainRows is the
// number of rows trained on.
func (t *trainer) finish(rep *Report, trainRows int) error {
	m, val, k, threads, cfg, log, start := t.m, t.val, t.k, t.threads, t.cfg, t.log, t.start
	if err := m.Validate(); err != nil {
		return fmt.Errorf("train: diverged (try a lower learning rate): %w", err)
	}

	m.Metrics = map[string]float64{"train_loss": rep.TrainLoss}
	if val.Rows() > 0 {
		logits := make([]float32, val.Rows()*k)
		m.logitsData(val, logits, threads)
		labels := make([]int32, val.Rows())
		for i := range labels {
			labels[i] = val.Label(i)
		}
		nll1, acc := nllAcc(logits, labels, k, 1)
		t, err := FitTemperature(logits, labels, k)
		if err == nil {
			m.Temperature = t
		}
		nllT, _ := nllAcc(logits, labels, k, 1/m.Temperature)
		m.Metrics["val_accuracy"] = acc
		m.Metrics["val_nll"] = nll1
		m.Metrics["val_nll_calibrated"] = nllT
		m.Metrics["val_ece"] = eceOf(logits, labels, k, 1)
		m.Metrics["val_ece_calibrated"] = eceOf(logits, labels, k, 1/m.Temperature)
		rep.ValLoss, rep.ValAcc = nll1, acc
	} else {
		// no validation rows: no figure, not a 0 that reads as a result
		rep.ValLoss, rep.ValAcc = math.NaN(), math.NaN()
	}
	rep.Seconds = time.Since(start).Seconds()
	m.Train = TrainInfo{Config: cfg, Seed: cfg.Seed, Threads: threads, TrainRows: trainRows, ValRows: val.Rows(),
		Epochs: rep.Epochs, Iterations: rep.Iters, BestEpoch: rep.BestEpoch, Stopped: rep.Stopped, Seconds: rep.Seconds}
	m.Train.Config.Threads = cfg.Threads
	if log != nil && val.Rows() > 0 {
		fmt.Fprintf(log, "done: %s (%s) in %.2fs; val acc %.4f, val nll %.4f\n",
			StopText(rep.Stopped), rep.progressText(), rep.Seconds, rep.ValAcc, rep.ValLoss)
	} else if log != nil {
		// no validation rows: no validation figure to print (not NaN, not 0)
		fmt.Fprintf(log, "done: %s (%s) in %.2fs; no validation split\n", StopText(rep.Stopped), rep.progressText(), rep.Seconds)
	}
	return nil
}

// newDense initialises a layer as PyTorch's nn.Linear does: weights and
// biases uniform in ±1/sqrt(in).
func newDense(in, out int, act string, rng *rand.Rand) dense.Layer {
	l := dense.Layer{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out), Act: act}
	b := 1 / math.Sqrt(float64(in))
	for i := range l.W {
		l.W[i] = float32((2*rng.Float64() - 1) * b)
	}
	for i := range l.B {
		l.B[i] = float32((2*rng.Float64() - 1) * b)
	}
	return l
}

// trainer carries the state shared by the optimisers.
type trainer struct {
	cfg     Config
	m       *Model
	train   Data
	val     Data
	k       int
	threads int
	cw      []float64 // class weights
	log     io.Writer
	start   time.Time
}

func (t *trainer) logf(format string, a ...any) {
	if t.log != nil {
		fmt.Fprintf(t.log, format, a...)
	}
}

// valLoss returns the class-weighted mean cross-entropy and the accuracy of
// the current model on the validation split (NaN, NaN without one).
func (t *trainer) valLoss(logits []float32) (float64, float64) {
	n := t.val.Rows()
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	t.m.logitsData(t.val, logits, t.threads)
	var loss, wsum float64
	correct := 0
	for i := 0; i < n; i++ {
		z := logits[i*t.k : (i+1)*t.k]
		y := t.val.Label(i)
		w := t.cw[y]
		loss += w * nllRow(z, int(y), 1)
		wsum += w
		if argmax(z) == int(y) {
			correct++
		}
	}
	if wsum == 0 {
		wsum = 1
	}
	return loss / wsum, float64(correct) / float64(n)
}

// logitsData computes logits [Rows()*K] for all rows of d, in parallel over
// fixed blocks of rows.
func (m *Model) logitsData(d Data, logits []float32, threads int) {
	n, k := d.Rows(), len(m.Classes)
	const blk = 256
	parts := (n + blk - 1) / blk
	scr := make([]Scratch, threads)
	parallelForW(threads, parts, func(w, p int) {
		for i := p * blk; i < min(n, (p+1)*blk); i++ {
			m.logitsRow(d.Row(i), logits[i*k:(i+1)*k], &scr[w])
		}
	})
}

// nllRow is -log softmax(beta*z)[y], computed in float64.
func nllRow(z []float32, y int, beta float64) float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, beta*float64(v))
	}
	var s float64
	for _, v := range z {
		s += math.Exp(beta*float64(v) - mx)
	}
	return mx + math.Log(s) - beta*float64(z[y])
}

func argmax(z []float32) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}

// nllAcc returns the mean NLL of softmax(beta*logits) and the accuracy.
func nllAcc(logits []float32, y []int32, k int, beta float64) (float64, float64) {
	var loss float64
	c := 0
	for i, yi := range y {
		z := logits[i*k : (i+1)*k]
		loss += nllRow(z, int(yi), beta)
		if argmax(z) == int(yi) {
			c++
		}
	}
	n := float64(max(1, len(y)))
	return loss / n, float64(c) / n
}

// ceGrad computes the smoothed cross-entropy of one row, -Σ q_j log p_j with
// p = softmax(z) and q = (1-eps)·onehot(y) + eps/K, and writes
// scale·(p - q) into g. e is scratch of len(z). It returns the loss.
func ceGrad(z []float32, y int, eps, scale float64, g []float32, e []float64) float64 {
	k := len(z)
	e = e[:k]
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for j, v := range z {
		e[j] = math.Exp(float64(v) - mx)
		s += e[j]
	}
	logS := math.Log(s)
	inv := 1 / s
	off := eps / float64(k)
	var loss float64
	for j, v := range z {
		q := off
		if j == y {
			q += 1 - eps
		}
		if q != 0 {
			loss -= q * (float64(v) - mx - logS)
		}
		g[j] = float32(scale * (e[j]*inv - q))
	}
	return loss
}
