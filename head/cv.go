package head

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"text/tabwriter"
)

// StratifiedFolds assigns each position of labels to one of k folds so that
// every class is spread as evenly as possible over the folds (fold sizes
// differ by at most one row per class, and the classes' remainders are
// spread so the folds' totals stay balanced). The result depends only on
// labels, k and seed. A class with fewer than k rows leaves some folds
// without it; CrossValidate refuses that case with a reason.
func StratifiedFolds(labels []int32, k int, seed int64) ([]int, error) {
	if k < 2 {
		return nil, fmt.Errorf("cross-validation: %d folds, need at least 2", k)
	}
	if len(labels) < k {
		return nil, fmt.Errorf("cross-validation: %d rows cannot fill %d folds", len(labels), k)
	}
	byClass := map[int32][]int{}
	var order []int32
	for i, y := range labels {
		if _, ok := byClass[y]; !ok {
			order = append(order, y)
		}
		byClass[y] = append(byClass[y], i)
	}
	// classes in label order, so the result does not depend on map order
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && order[j] < order[j-1]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xf01d))
	fold := make([]int, len(labels))
	next := 0 // the fold that receives the next class's first row: carries remainders over
	for _, y := range order {
		rows := byClass[y]
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		for _, r := range rows {
			fold[r] = next
			next = (next + 1) % k
		}
	}
	return fold, nil
}

// CVOptions configures CrossValidate.
type CVOptions struct {
	Folds int   // k; 0 means 5
	Seed  int64 // fold assignment (training uses the Config's own seed)
	// Views lists rows of the data's X that are augmented views of other
	// rows, and ViewOf[i] the row of X that Views[i] was made from. A fold
	// trains on the views of its training rows only; held-out folds never
	// contain views, and the views of one image stay with it.
	Views, ViewOf []int
	Log           io.Writer // one line per fold; nil: quiet
}

// FoldResult holds the held-out figures of one fold.
type FoldResult struct {
	Fold      int     `json:"fold"`
	TrainRows int     `json:"train_rows"` // augmented views included
	TestRows  int     `json:"test_rows"`
	Accuracy  float64 `json:"accuracy"`
	MacroF1   float64 `json:"macro_f1"`
	LogLoss   float64 `json:"log_loss"` // of softmax(logits), temperature 1
}

// MeanStd is a mean and a sample standard deviation (n-1) over folds or seeds.
type MeanStd struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// String formats as "0.8123 ± 0.0210".
func (m MeanStd) String() string { return fmt.Sprintf("%.4f ± %.4f", m.Mean, m.Std) }

// NewMeanStd returns the mean and sample standard deviation of v (Std 0 for
// fewer than two values).
func NewMeanStd(v []float64) MeanStd {
	var s MeanStd
	if len(v) == 0 {
		return MeanStd{Mean: math.NaN(), Std: math.NaN()}
	}
	for _, x := range v {
		s.Mean += x
	}
	s.Mean /= float64(len(v))
	if len(v) > 1 {
		for _, x := range v {
			s.Std += (x - s.Mean) * (x - s.Mean)
		}
		s.Std = math.Sqrt(s.Std / float64(len(v)-1))
	}
	return s
}

// CVResult is the outcome of CrossValidate. The out-of-fold arrays follow
// the order of the rows of the data passed in (Rows()).
type CVResult struct {
	Folds    int          `json:"folds"`
	Seed     int64        `json:"seed"`
	PerFold  []FoldResult `json:"per_fold"`
	Accuracy MeanStd      `json:"accuracy"`
	MacroF1  MeanStd      `json:"macro_f1"`
	// Pooled holds per-class figures and the confusion matrix of all
	// out-of-fold predictions together (temperature 1).
	Pooled *Eval `json:"pooled"`
	// OOFLogits [Rows()*K] are the raw logits of each row from the model
	// that did not see it; Labels [Rows()] its label, Fold [Rows()] its fold.
	OOFLogits []float32 `json:"-"`
	Labels    []int32   `json:"-"`
	Fold      []int     `json:"-"`
}

// CVFoldsFor returns the number of folds a stratified k-fold can use on
// these class counts when want are asked for: want, or fewer when the
// smallest class has fewer rows (every fold must hold each class). It
// returns 0 and a reason when the smallest class has fewer than 2 rows.
func CVFoldsFor(counts []int, classes []string, want int) (int, string) {
	if want <= 0 {
		want = 5
	}
	k := want
	for c, n := range counts {
		if n == 0 {
			continue
		}
		if n < 2 {
			return 0, fmt.Sprintf("class %q has %d image: cross-validation needs at least 2 per class", classes[c], n)
		}
		k = min(k, n)
	}
	return k, ""
}

// CrossValidate runs stratified k-fold cross-validation of cfg on d (rows
// d.Rows(), labels required): k heads are trained, each on k-1 folds
// (plus the augmented views of those folds' rows) without validation data,
// and evaluated on the fold left out. Folds are refused when a class has
// fewer rows than folds; use CVFoldsFor to choose k.
func CrossValidate(ctx context.Context, d Data, cfg Config, opt CVOptions) (*CVResult, error) {
	if opt.Folds == 0 {
		opt.Folds = 5
	}
	if err := d.Validate(0); err != nil {
		return nil, fmt.Errorf("cross-validation: %w", err)
	}
	if d.Y == nil {
		return nil, fmt.Errorf("cross-validation: data has no labels")
	}
	if len(opt.Views) != len(opt.ViewOf) {
		return nil, fmt.Errorf("cross-validation: %d views but %d sources", len(opt.Views), len(opt.ViewOf))
	}
	n := d.Rows()
	labels := make([]int32, n)
	kmax := int32(0)
	for i := range labels {
		labels[i] = d.Label(i)
		kmax = max(kmax, labels[i]+1)
	}
	classes := cfg.Classes
	if len(classes) == 0 {
		classes = defaultClassNames(int(kmax))
		cfg.Classes = classes
	}
	k := len(classes)
	counts := make([]int, k)
	for _, y := range labels {
		if y < 0 || int(y) >= k {
			return nil, fmt.Errorf("cross-validation: label %d out of range [0, %d)", y, k)
		}
		counts[y]++
	}
	for c, cnt := range counts {
		if cnt > 0 && cnt < opt.Folds {
			return nil, fmt.Errorf("cross-validation: class %q has %d images, fewer than the %d folds", classes[c], cnt, opt.Folds)
		}
	}
	fold, err := StratifiedFolds(labels, opt.Folds, opt.Seed)
	if err != nil {
		return nil, err
	}
	// views by the X row of their source
	viewsOf := map[int][]int{}
	for i, src := range opt.ViewOf {
		if src < 0 || src >= d.N || opt.Views[i] < 0 || opt.Views[i] >= d.N {
			return nil, fmt.Errorf("cross-validation: view %d (of row %d) out of range [0, %d)", opt.Views[i], src, d.N)
		}
		viewsOf[src] = append(viewsOf[src], opt.Views[i])
	}
	threads := cfg.threads()
	res := &CVResult{Folds: opt.Folds, Seed: opt.Seed, OOFLogits: make([]float32, n*k), Labels: labels, Fold: fold}
	var accs, f1s []float64
	for f := 0; f < opt.Folds; f++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("cross-validation: %w", err)
		}
		var trIdx, teIdx, tePos []int
		for i := 0; i < n; i++ {
			r := d.row(i)
			if fold[i] == f {
				teIdx = append(teIdx, r)
				tePos = append(tePos, i)
			} else {
				trIdx = append(trIdx, r)
				trIdx = append(trIdx, viewsOf[r]...)
			}
		}
		tr := Data{X: d.X, N: d.N, D: d.D, Y: d.Y, Idx: trIdx}
		te := Data{X: d.X, N: d.N, D: d.D, Y: d.Y, Idx: teIdx}
		m, _, err := Train(ctx, tr, Data{}, cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("cross-validation: fold %d: %w", f+1, err)
		}
		lg := make([]float32, len(teIdx)*k)
		m.logitsData(te, lg, threads)
		probs := make([]float32, len(lg))
		copy(probs, lg)
		yl := make([]int32, len(teIdx))
		for j, p := range tePos {
			copy(res.OOFLogits[p*k:(p+1)*k], lg[j*k:(j+1)*k])
			softmaxInPlace(probs[j*k:(j+1)*k], 1)
			yl[j] = labels[p]
		}
		ev, err := EvaluateProbs(probs, yl, classes)
		if err != nil {
			return nil, fmt.Errorf("cross-validation: fold %d: %w", f+1, err)
		}
		fr := FoldResult{Fold: f + 1, TrainRows: len(trIdx), TestRows: len(teIdx), Accuracy: ev.Accuracy, MacroF1: ev.MacroF1, LogLoss: ev.LogLoss}
		res.PerFold = append(res.PerFold, fr)
		accs, f1s = append(accs, ev.Accuracy), append(f1s, ev.MacroF1)
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "cv: fold %d/%d: %d train, %d held out: accuracy %.4f, macro-F1 %.4f\n",
				f+1, opt.Folds, fr.TrainRows, fr.TestRows, fr.Accuracy, fr.MacroF1)
		}
	}
	res.Accuracy, res.MacroF1 = NewMeanStd(accs), NewMeanStd(f1s)
	probs := make([]float32, len(res.OOFLogits))
	copy(probs, res.OOFLogits)
	for i := 0; i < n; i++ {
		softmaxInPlace(probs[i*k:(i+1)*k], 1)
	}
	if res.Pooled, err = EvaluateProbs(probs, labels, classes); err != nil {
		return nil, fmt.Errorf("cross-validation: %w", err)
	}
	res.Pooled.Errors = nil // positions in the OOF arrays; the doctor ranks suspects itself
	return res, nil
}

// WriteText writes the per-fold figures, mean ± standard deviation over
// folds, and the pooled out-of-fold per-class table and confusion matrix.
func (r *CVResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "cross-validation: %d folds (stratified, seed %d)\n", r.Folds, r.Seed)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fold\ttrain\theld out\taccuracy\tmacro-F1\t")
	for _, f := range r.PerFold {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.4f\t%.4f\t\n", f.Fold, f.TrainRows, f.TestRows, f.Accuracy, f.MacroF1)
	}
	tw.Flush()
	fmt.Fprintf(&b, "mean ± std over folds: accuracy %s, macro-F1 %s\n\nout-of-fold, all folds pooled:\n", r.Accuracy, r.MacroF1)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	return r.Pooled.WriteText(w)
}

// OOFProbs returns softmax(OOFLogits/temperature), [Rows()*K].
func (r *CVResult) OOFProbs(temperature float64) []float32 {
	k := len(r.OOFLogits) / max(1, len(r.Labels))
	p := append([]float32(nil), r.OOFLogits...)
	for i := range r.Labels {
		softmaxInPlace(p[i*k:(i+1)*k], 1/temperature)
	}
	return p
}
