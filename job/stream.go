package job

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/pipeline"
)

// Memory is the feature-memory budget of Train and Eval.
type Memory struct {
	// Bytes is the budget; 0 means DefaultMemory.
	Bytes int64
	// MaxRows, when > 0, caps the rows of the L-BFGS subsample trained on
	// when the features do not fit (0: as many as the budget allows).
	MaxRows int
}

// DefaultMemoryFraction is the share of physical memory (MemTotal in
// /proc/meminfo) a run's features may take when no budget is given: half,
// which leaves the other half to the optimiser, the OS page cache that
// streaming reads through, and the other processes of the machine. The
// figure is fixed per machine (not the memory free at the moment), so the
// same command chooses the same mode each time.
const DefaultMemoryFraction = 0.5

// fallbackMemory is the budget where physical memory cannot be read.
const fallbackMemory = 4 << 30

// DefaultMemory returns the budget used when none is given, and why.
func DefaultMemory() (int64, string) {
	total, err := memTotal()
	if err != nil || total <= 0 {
		return fallbackMemory, "the default where physical memory is unknown"
	}
	b := int64(float64(total) * DefaultMemoryFraction)
	return b, fmt.Sprintf("the default: half of the %s of physical memory", bytesize.FormatBinary(total))
}

// memTotal reads MemTotal from /proc/meminfo (Linux), in bytes.
func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemTotal %q", rest)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("/proc/meminfo: no MemTotal")
}

// budgetText is a budget for people, with how it was chosen unless the
// user gave it.
func budgetText(budget int64, why string) string {
	if why == "--memory" {
		return bytesize.FormatBinary(budget)
	}
	return fmt.Sprintf("%s, %s", bytesize.FormatBinary(budget), why)
}

// budget returns the budget in bytes and how it was chosen.
func (m Memory) budget() (int64, string) {
	if m.Bytes > 0 {
		return m.Bytes, "--memory"
	}
	return DefaultMemory()
}

// DataMode says how Train held the features, for people and --json.
type DataMode struct {
	// Mode is "in-memory", head.DataStreamed or head.DataSubsample.
	Mode string `json:"mode"`
	// Source is where the features were read: a cache view or segments.
	Source string `json:"source"`
	// Rows is the rows of the dataset; TrainRows those of the training
	// split; Used those trained on (a subsample: fewer).
	Rows      int `json:"rows"`
	TrainRows int `json:"train_rows"`
	Used      int `json:"rows_trained_on"`
	// MatrixBytes is the full N x D float32 matrix; BudgetBytes the budget
	// and BudgetSource how it was chosen.
	MatrixBytes  int64  `json:"matrix_bytes"`
	BudgetBytes  int64  `json:"budget_bytes"`
	BudgetSource string `json:"budget_source"`
	// Blocks and BufferRows (streamed): blocks read per epoch and the rows
	// of the shuffle buffer.
	Blocks     int `json:"blocks,omitempty"`
	BufferRows int `json:"shuffle_buffer_rows,omitempty"`
	// PeakBytes is the most feature memory held at once (streamed or
	// subsample), as counted by the reader and trainer.
	PeakBytes int64 `json:"peak_feature_bytes,omitempty"`
	// Text is the line train prints.
	Text string `json:"text"`
}

// valShare is the share of the budget the in-memory validation rows may
// take when streaming; more rows are cut to a content-hash subsample.
const valShare = 0.25

// openIndex indexes the features Train or Eval would load (a cache view or
// segments), without loading them. blockRows sets a cache view's block
// size.
func openIndex(ctx context.Context, root, view string, segments []string, blockRows int) (*pipeline.FeatureIndex, error) {
	if len(segments) > 0 {
		return pipeline.OpenSegmentIndex(ctx, segments)
	}
	return pipeline.OpenViewIndex(root, view, blockRows)
}

// cacheBlockRows is the rows of a cache view block for a budget: a
// sixteenth of what the budget holds, so that the shuffle buffer spans
// several blocks, within [16, 65536].
func cacheBlockRows(budget int64, d int) int {
	return int(min(65536, max(16, budget/16/int64(4*max(1, d)))))
}

// trainIndexed trains on features that do not fit in the budget: an MLP
// (Adam, SGD) streams minibatches through a shuffle buffer; L-BFGS trains
// in memory on a subsample of the training rows chosen by content hash.
func trainIndexed(ctx context.Context, opt TrainOptions, x *pipeline.FeatureIndex, budget int64, why string) (*TrainResult, error) {
	if x.Run.Options.TuneLayers > 0 {
		return nil, fmt.Errorf("the features (%s) do not fit the memory budget of %s, and fine-tuning the layers extract --tune-layers cut off needs them in memory: raise --memory", bytesize.FormatBinary(x.Bytes()), bytesize.FormatBinary(budget))
	}
	if !strings.HasPrefix(x.Run.View, pipeline.SegmentsViewPrefix) {
		if rec, err := ReadAugmentRecord(x.Run.View); err != nil {
			return nil, err
		} else if rec != nil {
			return nil, fmt.Errorf("the features (%s) do not fit the memory budget of %s, and the augmented views of extract --augment are only trained on in memory: raise --memory or extract without --augment", bytesize.FormatBinary(x.Bytes()), bytesize.FormatBinary(budget))
		}
	}
	if err := head.CheckClasses(opt.Classes, x.Classes); err != nil {
		return nil, err
	}
	if opt.CV > 0 {
		opt.Split.Val = 0
	}
	split, err := SplitIndex(x, opt.Split)
	if err != nil {
		return nil, err
	}
	role := splitRoles(split, x.N)
	valRows, testRows := split.ValIndex, split.TestIndex
	nTrain := x.N - len(valRows) - len(testRows)
	// The head records how to draw the split again, not millions of rows.
	split.ValIndex, split.TestIndex, split.Redraw = nil, nil, true
	isTrain := func(r int) bool { return role[r] == 0 }

	cfg, ref, err := opt.headSetup(x.Classes, x.Run, x.Ident)
	if err != nil {
		return nil, err
	}
	chooseOptimizer(&cfg)

	meter := &head.MemMeter{}
	x.Meter = meter
	rowBytes := int64(4 * x.D)
	mode := &DataMode{Source: x.Source, Rows: x.N, TrainRows: nTrain, MatrixBytes: x.Bytes(), BudgetBytes: budget, BudgetSource: why}
	var notes []string
	// Validation rows stay in memory (early stopping, calibration); past
	// their share of the budget, a content-hash subsample of them.
	if maxVal := int(float64(budget) * valShare / float64(rowBytes)); len(valRows) > maxVal {
		inVal := func(r int) bool { return role[r] == 1 }
		notes = append(notes, fmt.Sprintf("validation: %d of the %d validation rows (those of lowest content hash) are kept in memory for early stopping and calibration, a quarter of the memory budget", maxVal, len(valRows)))
		valRows = x.SubsampleByHash(maxVal, inVal)
	}
	valX, err := x.Load(ctx, valRows)
	if err != nil {
		return nil, err
	}
	val := head.Data{X: valX, N: len(valRows), D: x.D, Y: labelsOf(x.Labels, valRows)}
	left := budget - int64(len(valX))*4 - x.BlockBytes()

	var fit *head.FitResult
	info := &head.DataInfo{Of: nTrain, BudgetBytes: budget}
	if cfg.Optimizer == head.OptLBFGS {
		k := int(left / rowBytes)
		if opt.Memory.MaxRows > 0 {
			k = min(k, opt.Memory.MaxRows)
		}
		if k < 2 {
			return nil, fmt.Errorf("a memory budget of %s leaves room for %d training rows of %d features after %d validation rows: raise --memory", bytesize.FormatBinary(budget), max(0, k), x.D, len(valRows))
		}
		sub := x.SubsampleByHash(k, isTrain)
		subX, err := x.Load(ctx, sub)
		if err != nil {
			return nil, err
		}
		info.Mode, info.Rows = head.DataSubsample, len(sub)
		info.Method = fmt.Sprintf("the %d training rows of lowest content hash (SHA-256 of the image bytes, first 8 bytes; not stratified), so any machine chooses the same rows", len(sub))
		mode.Text = fmt.Sprintf("L-BFGS on a subsample of %s of %s training rows, chosen by content hash (features %s, budget %s)",
			thousands(len(sub)), thousands(nTrain), bytesize.FormatBinary(x.Bytes()), budgetText(budget, why))
		if len(sub) == nTrain {
			mode.Text = fmt.Sprintf("L-BFGS on all %s training rows in memory (the whole matrix of %s does not fit the budget of %s; its test rows are streamed)",
				thousands(nTrain), bytesize.FormatBinary(x.Bytes()), budgetText(budget, why))
		}
		fit, err = head.Fit(ctx, head.Data{X: subX, N: len(sub), D: x.D, Y: labelsOf(x.Labels, sub)}, val, cfg,
			head.FitOptions{CVFolds: opt.CV, CVSeed: opt.Split.Seed, Log: opt.Log})
		x.Release(subX)
		if err != nil {
			return nil, err
		}
		if fit.CV != nil {
			notes = append(notes, "cross-validation ran on the subsample")
		}
		notes = append(notes, "the domain guard was fitted on the subsample")
	} else {
		bs := min(cfg.BatchSize, nTrain)
		buf := (left - int64(bs)*rowBytes) / rowBytes
		if buf < int64(x.BlockRows()) || buf < 1 {
			return nil, fmt.Errorf("a memory budget of %s cannot stream these features: it must hold %d validation rows, a batch of %d rows, one block of %d rows being read (%s) and a shuffle buffer of at least one block, %d features a row: raise --memory",
				bytesize.FormatBinary(budget), len(valRows), bs, x.BlockRows(), bytesize.FormatBinary(x.BlockBytes()), x.D)
		}
		buf = min(buf, int64(nTrain))
		mode.Blocks, mode.BufferRows = x.NumBlocks(), int(buf)
		info.Mode, info.Rows = head.DataStreamed, nTrain
		info.Method = fmt.Sprintf("minibatches streamed from %d blocks in a shuffled order per epoch, through a shuffle buffer of %d rows (seed %d)", x.NumBlocks(), buf, cfg.Seed)
		mode.Text = fmt.Sprintf("streaming minibatches from %d blocks of %s, %s training rows, budget %s (features %s; shuffle buffer %s rows)",
			x.NumBlocks(), x.Source, thousands(nTrain), budgetText(budget, why), bytesize.FormatBinary(x.Bytes()), thousands(int(buf)))
		if opt.CV > 0 {
			return nil, fmt.Errorf("--cv %d: cross-validation trains a head per fold on rows in memory, and these features (%s) do not fit the budget of %s: raise --memory, or drop --cv (the head is then calibrated on the validation split)",
				opt.CV, bytesize.FormatBinary(x.Bytes()), bytesize.FormatBinary(budget))
		}
		sd := head.StreamData{Src: x, N: x.N, D: x.D, Y: x.Labels, In: isTrain, Rows: nTrain, BufferRows: int(buf), Meter: meter}
		fit, err = head.FitStream(ctx, sd, val, cfg, head.FitOptions{Log: opt.Log})
		if err != nil {
			return nil, err
		}
		notes = append(notes, "the domain guard was fitted on every training row (one more streamed pass)")
	}
	mode.Mode, mode.Used = info.Mode, info.Rows
	m, rep := fit.Model, fit.Report
	m.Backbone = ref
	m.Train.Split = split
	m.Train.Data = info
	res := &TrainResult{Model: m, Report: rep, TrainRows: nTrain, ValRows: len(valRows), TestRows: len(testRows), CV: fit.CV, Data: mode}
	res.Notes = append(append(append(notes, split.Skipped...), fit.Notes...), noTestNote(split, len(testRows), opt.Split)...)
	if m.Metrics == nil {
		m.Metrics = map[string]float64{}
	}
	if len(valRows) > 0 {
		if res.Val, err = head.Evaluate(m, val); err != nil {
			return nil, err
		}
		setMetrics(m.Metrics, "val", res.Val)
	}
	x.Release(valX)
	if len(testRows) > 0 {
		probs, labels, _, err := predictIndexed(ctx, m, x, func(r int) bool { return role[r] == 2 }, len(testRows), x.Labels)
		if err != nil {
			return nil, err
		}
		if res.Test, err = head.EvaluateProbs(probs, labels, m.Classes); err != nil {
			return nil, err
		}
		setMetrics(m.Metrics, "test", res.Test)
	}
	setCVMetrics(m.Metrics, fit.CV)
	mode.PeakBytes = meter.Peak()
	if err := opt.saveHead(res); err != nil {
		return nil, err
	}
	return res, nil
}

// predictIndexed computes the head's calibrated probabilities for the n
// rows of x for which in is true, streamed block by block, and returns
// them in ascending row order with the rows' labels (from labels) and row
// numbers: the same values, in the same order, as evaluating those rows
// loaded into memory.
func predictIndexed(ctx context.Context, m *head.Model, x *pipeline.FeatureIndex, in func(int) bool, n int, labels []int32) (probs []float32, y []int32, rows []int, err error) {
	k := m.NumClasses()
	// Rows ascend, so a row's place is its rank among the rows in the set.
	rows = make([]int, 0, n)
	for r := 0; r < x.N; r++ {
		if in(r) {
			rows = append(rows, r)
		}
	}
	pos := func(r int) int {
		lo, hi := 0, len(rows)
		for lo < hi {
			mid := (lo + hi) / 2
			if rows[mid] < r {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo
	}
	probs = make([]float32, len(rows)*k)
	y = make([]int32, len(rows))
	sd := head.StreamData{Src: x, N: x.N, D: x.D, Y: labels, In: in, Rows: len(rows), BufferRows: 1}
	err = m.PredictStream(ctx, sd, func(r int, p []float32) error {
		i := pos(r)
		copy(probs[i*k:(i+1)*k], p)
		y[i] = labels[r]
		return nil
	})
	return probs, y, rows, err
}

// labelsOf returns labels[rows[i]] for every i.
func labelsOf(labels []int32, rows []int) []int32 {
	out := make([]int32, len(rows))
	for i, r := range rows {
		out[i] = labels[r]
	}
	return out
}

// thousands writes n with comma thousands separators: 3,100,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// evalIndexed is Eval on indexed features, streamed block by block: for a
// head trained on streamed features (its split is drawn again from the
// rows' labels) or a view larger than the memory budget. Only the
// evaluated rows' probabilities are held (rows x classes).
func evalIndexed(ctx context.Context, opt EvalOptions, m *head.Model, headPath string, x *pipeline.FeatureIndex, res *EvalResult, runModel, view string) (*EvalResult, error) {
	if len(m.ConvTail) > 0 {
		return nil, fmt.Errorf("%s: a conv-tail head is evaluated with its feature maps in memory, and these (%s) do not fit the memory budget: raise --memory", headPath, bytesize.FormatBinary(x.Bytes()))
	}
	got := evalRun(res, m, x.Run, x.Ident, runModel, view)
	if err := m.CheckBackbone(got); err != nil {
		return nil, fmt.Errorf("%s: %w", headPath, err)
	}
	in, n, note, err := evalRowsIndexed(m, x, res.Split)
	if err != nil {
		return nil, err
	}
	res.Note = note
	if n == 0 {
		return nil, fmt.Errorf("the %s split of %s is empty", res.Split, x.Run.Dataset)
	}
	labels, err := remapLabels(x.Classes, x.Labels, m.Classes)
	if err != nil {
		return nil, err
	}
	probs, y, rows, err := predictIndexed(ctx, m, x, in, n, labels)
	if err != nil {
		return nil, err
	}
	if res.Eval, err = head.EvaluateProbs(probs, y, m.Classes); err != nil {
		return nil, err
	}
	if m.Conformal == nil && len(opt.Coverage) > 0 {
		return nil, fmt.Errorf("--coverage: the head has no conformal scores (trained before headtune recorded them, or without held-out images); train it again")
	}
	if m.Conformal != nil {
		covs := opt.Coverage
		if covs == nil {
			covs = []float64{0.9}
		}
		if err := evalSetsProbs(m, probs, y, covs, res); err != nil {
			return nil, err
		}
	}
	// The index keeps no paths: read those of the misses listed.
	var missRows []int
	for _, e := range res.Eval.Errors {
		if opt.MaxErrors > 0 && len(missRows) >= opt.MaxErrors {
			break
		}
		missRows = append(missRows, rows[e.Index])
	}
	sorted := append([]int(nil), missRows...)
	slices.Sort(sorted)
	paths, err := x.Paths(ctx, sorted)
	if err != nil {
		return nil, err
	}
	for i, e := range res.Eval.Errors[:len(missRows)] {
		j, _ := slices.BinarySearch(sorted, missRows[i])
		res.Misses = append(res.Misses, Miss{Path: paths[j], True: m.Classes[e.True], Pred: m.Classes[e.Pred], Confidence: e.Confidence})
	}
	return res, writeConfusion(opt.ConfusionPNG, res)
}

// splitRoles is the role of each of n rows in split, for a constant-time
// lookup per row while streaming: 0 train, 1 val, 2 test.
func splitRoles(split *head.SplitInfo, n int) []uint8 {
	role := make([]uint8, n)
	for _, r := range split.ValIndex {
		role[r] = 1
	}
	for _, r := range split.TestIndex {
		role[r] = 2
	}
	return role
}

// evalRowsIndexed is evalRows on indexed features: which rows belong to
// the split, and how many.
func evalRowsIndexed(m *head.Model, x *pipeline.FeatureIndex, split string) (in func(int) bool, n int, note string, err error) {
	if split == "all" {
		return func(int) bool { return true }, x.N, "", nil
	}
	if split != "train" && split != "val" && split != "test" {
		return nil, 0, "", fmt.Errorf("split %q: expected test, val, train or all", split)
	}
	rec := m.Train.Split
	switch {
	case rec == nil:
		so := DefaultSplit
		so.Seed = m.Train.Seed
		if rec, err = SplitIndex(x, so); err != nil {
			return nil, 0, "", err
		}
		note = fmt.Sprintf("the head records no split (trained by an older headtune): the %s rows were redrawn with its seed %d and fractions val %g, test %g", split, so.Seed, so.Val, so.Test)
	case rec.Rows != x.N || rec.Fingerprint != x.Fingerprint:
		if strings.HasPrefix(rec.View, pipeline.SegmentsViewPrefix) && !rec.Redraw {
			return nil, 0, "", fmt.Errorf("the head was trained on these segments with every feature in memory, so its recorded rows follow the keys' order, and the features (%s) do not fit the memory budget: evaluate with --memory %s or more", bytesize.FormatBinary(x.Bytes()), bytesize.FormatBinary(x.Bytes()))
		}
		return nil, 0, "", fmt.Errorf("the dataset view %s changed since the head was trained (%d images then, %d now), so its recorded test split no longer applies: evaluate a labelled folder (`headtune eval DATASET`) or train again", rec.View, rec.Rows, x.N)
	case rec.Redraw:
		again, err := SplitIndex(x, SplitOptions{Val: rec.Val, Test: rec.Test, Seed: rec.Seed})
		if err != nil {
			return nil, 0, "", err
		}
		if again.Source != rec.Source {
			return nil, 0, "", fmt.Errorf("the head's split was %s, drawn again it is %s: train again", rec.Source, again.Source)
		}
		rec = again
	}
	role := splitRoles(rec, x.N)
	want := map[string]uint8{"train": 0, "val": 1, "test": 2}[split]
	for _, r := range role {
		if r == want {
			n++
		}
	}
	return func(r int) bool { return role[r] == want }, n, note, nil
}
