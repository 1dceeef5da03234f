package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

// TrainOptions configure Train.
type TrainOptions struct {
	Env
	// View is the dataset view file to train on; empty: the cache's latest
	// extraction.
	View string
	// Segments, when set, are sealed segment locations (from sharded
	// extraction) to train on directly, without merging them into the
	// cache first (pipeline.LoadSegmentFeatures).
	Segments []string
	// Head is where to write the trained head; empty: DefaultHead.
	Head string
	// Classes, when > 0, is the number of classes the dataset must have.
	Classes int
	// Config is the head's configuration. Start from head.DefaultConfig
	// (a zero Config means head.DefaultConfig(head.KindLinear)). An empty
	// Optimizer is chosen: L-BFGS for a linear head on plain features,
	// Adam when there are hidden layers or the extraction cut before dense
	// layers to fine-tune (--tune-layers), which L-BFGS cannot train.
	// Classes and InitLayers are filled in by Train.
	Config head.Config
	// Split divides data without split folders. The division is recorded
	// in the head, so Eval finds the same test rows.
	Split SplitOptions
	// CV > 0 runs stratified CV-fold cross-validation on the training rows
	// (seeded with Split.Seed), reports it, and calibrates the head and its
	// prediction sets on the out-of-fold predictions; no validation split is
	// drawn then (a dataset's own val/ folder still drives early stopping).
	// 0 cross-validates only when the validation split is too small to
	// calibrate on (head.DefaultMinCalibRows). The final head is trained
	// on all training rows either way.
	CV int
	// Log receives the trainer's progress lines (nil: none).
	Log io.Writer
	// ConvTail sets the fine-tuning when the extraction cut before a
	// convolutional tail (extract --tune-layers K on a pooled conv map):
	// the convolutions and a linear head are trained together from a
	// linear probe; Config's Kind, Optimizer, Seed, Threads, Balance and
	// WeightDecay apply.
	ConvTail ConvTailOptions
	// Memory is the budget for features. When the dataset's N x D matrix
	// fits, Train loads it as always; when it does not, an MLP (Adam, SGD)
	// streams minibatches block by block and L-BFGS trains on a subsample
	// of the training rows chosen by content hash (TrainResult.Data says
	// which).
	Memory Memory
}

// TrainResult reports a training run.
type TrainResult struct {
	Head   string       // absolute path of the written head
	Model  *head.Model  // the head as saved, with Train.Split and Metrics
	Report *head.Report // the optimiser's history and stopping reason
	// TrainRows, ValRows and TestRows count the rows of each set.
	TrainRows, ValRows, TestRows int
	// Val and Test evaluate the head on the validation and test rows (nil
	// when that set is empty).
	Val, Test *head.Eval
	// CV is the cross-validation run (nil when none ran).
	CV *head.CVResult
	// AugmentedRows counts the augmented views trained on (extract
	// --augment): views of training images only.
	AugmentedRows int
	// Notes explain, one sentence each, what was done differently from what
	// was asked and why: splits not made, cross-validation instead of a
	// validation split, a calibration that could not be fitted.
	Notes []string
	// Data says how the features were held: in memory, streamed, or a
	// subsample.
	Data *DataMode
}

// Train trains a head on cached features: it loads the view, divides it
// (Split), fine-tunes the backbone's own dense layers when the extraction
// cut before them, trains, calibrates (head.Fit: on the validation rows, or on out-of-fold
// predictions when they are too few or CV asks for it), evaluates
// validation and test rows into Model.Metrics, and saves the head
// atomically (an existing file is replaced only by a complete head).
func Train(ctx context.Context, opt TrainOptions) (*TrainResult, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	if opt.View != "" {
		if _, err := os.Stat(opt.View); err != nil {
			return nil, fmt.Errorf("view %s: %w (views are the .csv files under a cache folder's views/; omit --view to use the last extract's)", opt.View, err)
		}
	}
	if len(opt.Segments) > 0 && opt.View != "" {
		return nil, errors.New("train reads a view or segments, not both")
	}
	// Index the rows first (labels, splits, hashes: no features) to see
	// whether the matrix fits the budget.
	budget, why := opt.Memory.budget()
	x, err := openIndex(ctx, root, opt.View, opt.Segments, 1)
	if err != nil {
		return nil, err
	}
	x.SetBlockRows(cacheBlockRows(budget, x.D))
	if x.Bytes() > budget {
		defer x.Close()
		return trainIndexed(ctx, opt, x, budget, why)
	}
	mode := &DataMode{Mode: "in-memory", Source: x.Source, Rows: x.N, Used: x.N, MatrixBytes: x.Bytes(), BudgetBytes: budget, BudgetSource: why}
	mode.Text = fmt.Sprintf("all %s rows in memory (features %s, budget %s)", thousands(x.N), bytesize.FormatBinary(x.Bytes()), budgetText(budget, why))
	x.Close()
	var f *pipeline.Features
	if len(opt.Segments) > 0 {
		f, err = pipeline.LoadSegmentFeatures(ctx, opt.Segments)
	} else {
		f, err = pipeline.LoadFeatures(root, opt.View)
	}
	if err != nil {
		return nil, err
	}
	res, err := trainLoaded(ctx, opt, root, f)
	if err != nil {
		return nil, err
	}
	mode.TrainRows = res.TrainRows
	res.Data = mode
	return res, nil
}

// headSetup is what Train needs of features however they are held: the
// head settings (opt.Config, or a linear head's defaults, with the
// features' classes) and the reference to the backbone that extracted
// them (run names its model, else it is found by its file's hash and
// recorded in run).
func (opt TrainOptions) headSetup(classes []string, run *pipeline.LastRun, id featcache.Identity) (head.Config, head.BackboneRef, error) {
	cfg := opt.Config
	if cfg.Kind == "" {
		cfg = head.DefaultConfig(head.KindLinear)
		cfg.Optimizer = ""
	}
	cfg.Classes = classes
	if run.Model == "" {
		var err error
		if run.Model, err = opt.modelByHash(id.ModelHash); err != nil {
			return head.Config{}, head.BackboneRef{}, fmt.Errorf("view %s: %w", run.View, err)
		}
	}
	return cfg, backboneRef(run, id), nil
}

// backboneRef is the reference a head keeps to the backbone run extracted
// its features with (identity id).
func backboneRef(run *pipeline.LastRun, id featcache.Identity) head.BackboneRef {
	return head.BackboneRef{ID: run.Model, ModelHash: id.ModelHash, FeatureTensor: id.FeatureTensor, Preprocess: id.Preprocess}
}

// chooseOptimizer fills in an unset optimizer (L-BFGS for a linear head
// without tuned layers, else Adam) and drops C for the optimisers that do
// not use it.
func chooseOptimizer(cfg *head.Config) {
	if cfg.Optimizer == "" {
		cfg.Optimizer = head.OptLBFGS
		if cfg.Kind != head.KindLinear || len(cfg.InitLayers) > 0 {
			cfg.Optimizer = head.OptAdam
		}
	}
	if cfg.Optimizer != head.OptLBFGS {
		cfg.C = 0 // C is L-BFGS's regularisation; the others use WeightDecay
	}
}

// trainLoaded is Train on features loaded into memory.
func trainLoaded(ctx context.Context, opt TrainOptions, root string, f *pipeline.Features) (*TrainResult, error) {
	var err error
	if err := head.CheckClasses(opt.Classes, f.Classes); err != nil {
		return nil, err
	}
	if opt.CV > 0 {
		opt.Split.Val = 0
	}
	split, err := Split(f, opt.Split)
	if err != nil {
		return nil, err
	}
	trainRows, valRows, testRows := Rows(split)

	cfg, ref, err := opt.headSetup(f.Classes, f.Run, f.Ident)
	if err != nil {
		return nil, err
	}
	if f.Run.Options.TuneLayers > 0 {
		// Fine-tune the backbone's own dense layers or convolutions: read
		// their pretrained weights from the ONNX initializers.
		bb, err := opt.tunedBackbone(f.Run)
		if err != nil {
			return nil, err
		}
		if len(bb.TunedConv) > 0 {
			res, err := trainConvTail(ctx, opt, cfg, f, bb, split, trainRows, valRows, testRows)
			if err != nil {
				return nil, err
			}
			if rec, err := ReadAugmentRecord(f.Run.View); err == nil && rec != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("conv tail: the %d augmented views per training image from extract --augment are not used (a conv tail trains on the images' cached maps only)", rec.Views))
			}
			return res, opt.saveHead(res)
		}
		for _, l := range bb.Tuned {
			cfg.InitLayers = append(cfg.InitLayers, l.Layer)
		}
		ref.TuneCut = bb.Choice.Tensor
	}
	chooseOptimizer(&cfg)

	X, n, views, viewOf, aug, err := AugmentedFeatures(root, f)
	if err != nil {
		return nil, err
	}
	labels := f.Labels
	if len(views) > 0 {
		labels = make([]int32, n)
		copy(labels, f.Labels)
		for i, v := range views {
			labels[v] = f.Labels[viewOf[i]]
		}
	}
	all := head.Data{X: X, N: n, D: f.D, Y: labels}
	trainSet, valSet := all.Subset(trainRows), all.Subset(valRows)
	fit, err := head.Fit(ctx, trainSet, valSet, cfg, head.FitOptions{CVFolds: opt.CV, CVSeed: opt.Split.Seed, Log: opt.Log, Views: views, ViewOf: viewOf})
	if err != nil {
		return nil, err
	}
	m, rep := fit.Model, fit.Report
	m.Backbone = ref
	m.Train.Split = split
	res := &TrainResult{Model: m, Report: rep, TrainRows: len(trainRows), ValRows: len(valRows), TestRows: len(testRows), CV: fit.CV}
	if aug != nil {
		inTrain := map[int]bool{}
		for _, r := range trainRows {
			inTrain[r] = true
		}
		for _, src := range viewOf {
			if inTrain[src] {
				res.AugmentedRows++
			}
		}
		m.Train.Augment = fmt.Sprintf("%d augmented views per training image (seed %d, flip %.1f, crop %.0f-100%% of the area, rotation ±%.0f°, colour jitter ±%.0f%%): %d views of %d training images",
			aug.Views, aug.Seed, aug.Spec.FlipProb, 100*aug.Spec.MinScale, aug.Spec.MaxDegrees, 100*aug.Spec.Jitter, res.AugmentedRows, len(trainRows))
		res.Notes = append(res.Notes, m.Train.Augment)
	}
	res.Notes = append(append(append(res.Notes, split.Skipped...), fit.Notes...), noTestNote(split, len(testRows), opt.Split)...)
	if m.Metrics == nil {
		m.Metrics = map[string]float64{}
	}
	if len(valRows) > 0 {
		if res.Val, err = head.Evaluate(m, valSet); err != nil {
			return nil, err
		}
		setMetrics(m.Metrics, "val", res.Val)
	}
	if len(testRows) > 0 {
		if res.Test, err = head.Evaluate(m, all.Subset(testRows)); err != nil {
			return nil, err
		}
		setMetrics(m.Metrics, "test", res.Test)
	}
	setCVMetrics(m.Metrics, fit.CV)
	if err := opt.saveHead(res); err != nil {
		return nil, err
	}
	return res, nil
}

// saveHead writes res.Model to opt.Head (DefaultHead when empty) and sets
// res.Head.
func (opt TrainOptions) saveHead(res *TrainResult) error {
	path := opt.Head
	path = headOrDefault(path)
	res.Head = absPath(path)
	if err := os.MkdirAll(filepath.Dir(res.Head), 0o755); err != nil {
		return err
	}
	return head.Save(path, res.Model)
}

// setCVMetrics records the mean and spread of cross-validation's accuracy
// and macro F1 in m (cv nil: nothing ran, nothing is recorded).
func setCVMetrics(m map[string]float64, cv *head.CVResult) {
	if cv != nil {
		m["cv_accuracy_mean"], m["cv_accuracy_std"] = cv.Accuracy.Mean, cv.Accuracy.Std
		m["cv_macro_f1_mean"], m["cv_macro_f1_std"] = cv.MacroF1.Mean, cv.MacroF1.Std
	}
}

func setMetrics(m map[string]float64, prefix string, ev *head.Eval) {
	m[prefix+"_accuracy"] = ev.Accuracy
	m[prefix+"_macro_f1"] = ev.MacroF1
	m[prefix+"_ece"] = ev.ECE
}

// modelByHash names the installed model whose file has the given hash: the
// backbone of a view whose cache recorded none (caches from before identity
// folders kept their extraction's record). A head must name its backbone,
// or predict and export cannot open it.
func (e Env) modelByHash(hash string) (string, error) {
	store, err := e.Store()
	if err == nil {
		var list []models.Installed
		if list, err = store.List(); err == nil {
			for _, in := range list {
				if in.Meta.SHA256 == hash {
					return in.Meta.Name, nil
				}
			}
		}
	}
	if len(hash) > 12 {
		hash = hash[:12]
	}
	return "", fmt.Errorf("the cache does not record which backbone computed these features (model sha256 %s) and no installed model has that hash: run `headtune extract` on the dataset again to record it", hash)
}

// tunedBackbone reopens the backbone an extraction with TuneLayers used,
// for its cut-off dense layers or convolutions (pretrained weights) and
// the cut tensor.
func (e Env) tunedBackbone(run *pipeline.LastRun) (*pipeline.Backbone, error) {
	store, err := e.Store()
	if err != nil {
		return nil, err
	}
	bb, err := pipeline.OpenBackbone(run.Model, pipeline.BackboneOptions{
		Store: store, FeatureTensor: run.Options.FeatureTensor, TuneLayers: run.Options.TuneLayers, Spec: run.Options.Spec, NoSession: true,
	})
	if err != nil {
		return nil, fmt.Errorf("reopen backbone %s for its tuned layers: %w", run.Model, err)
	}
	return bb, nil
}

// TrainSummary is a TrainResult as the headtune command prints it with
// --json. Losses and accuracies without validation data are null.
type TrainSummary struct {
	Head      string   `json:"head"`
	Kind      string   `json:"kind"`
	Optimizer string   `json:"optimizer"`
	Classes   []string `json:"classes"`
	Train     struct {
		Epochs      int      `json:"epochs"`
		Iterations  int      `json:"iterations"`
		BestEpoch   int      `json:"best_epoch"`
		Stopped     string   `json:"stopped"`
		TrainLoss   *float64 `json:"train_loss"`
		ValLoss     *float64 `json:"val_loss"`
		ValAccuracy *float64 `json:"val_accuracy"`
		Seconds     float64  `json:"seconds"`
	} `json:"train"`
	TrainRows   int                `json:"train_rows"`
	ValRows     int                `json:"val_rows"`
	TestRows    int                `json:"test_rows"`
	Seed        int64              `json:"seed"`
	Temperature float64            `json:"temperature"`
	Split       SplitSummary       `json:"split"`
	Test        map[string]float64 `json:"test,omitempty"` // accuracy, macro_f1, ece
	// Calibration says what the temperature was fitted on.
	Calibration *head.Calibration `json:"calibration,omitempty"`
	// ConformalRows is the number of held-out scores behind prediction
	// sets (0: the head has none).
	ConformalRows int            `json:"conformal_rows"`
	CV            *head.CVResult `json:"cross_validation,omitempty"`
	Notes         []string       `json:"notes,omitempty"`
	// Data says how the features were held (in memory, streamed, a
	// subsample), with the same line train prints.
	Data *DataMode `json:"data,omitempty"`
}

// SplitSummary is how the split was made, without its rows.
type SplitSummary struct {
	Source string  `json:"source"`
	Seed   int64   `json:"seed"`
	Val    float64 `json:"val_fraction"`
	Test   float64 `json:"test_fraction"`
}

// Summary returns the result's JSON summary.
func (r *TrainResult) Summary() TrainSummary {
	m, rep := r.Model, r.Report
	s := TrainSummary{Head: r.Head, Kind: m.Kind, Optimizer: m.Train.Config.Optimizer, Classes: m.Classes,
		TrainRows: r.TrainRows, ValRows: r.ValRows, TestRows: r.TestRows, Seed: m.Train.Seed, Temperature: m.Temperature}
	s.Train.Epochs, s.Train.Iterations, s.Train.BestEpoch, s.Train.Stopped = rep.Epochs, rep.Iters, rep.BestEpoch, rep.Stopped
	s.Train.TrainLoss, s.Train.ValLoss, s.Train.ValAccuracy, s.Train.Seconds = finite(rep.TrainLoss), finite(rep.ValLoss), finite(rep.ValAcc), rep.Seconds
	if sp := m.Train.Split; sp != nil {
		s.Split = SplitSummary{Source: sp.Source, Seed: sp.Seed, Val: sp.Val, Test: sp.Test}
	}
	if ev := r.Test; ev != nil {
		s.Test = map[string]float64{"accuracy": ev.Accuracy, "macro_f1": ev.MacroF1, "ece": ev.ECE}
	}
	s.Calibration, s.CV, s.Notes, s.Data = m.Calibration, r.CV, r.Notes, r.Data
	if m.Conformal != nil {
		s.ConformalRows = len(m.Conformal.Scores)
	}
	return s
}

// finite maps NaN and infinities (no validation data) to nil (JSON null).
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// WriteText writes what Train did in words, as `headtune train` shows it: the sets, why a split or a
// calibration differs from what was asked, cross-validation, the
// calibration and what it was fitted on, and figures only for sets that
// have rows. headPath is the head's name as the user gave it.
func (res *TrainResult) WriteText(w io.Writer, headPath string) error {
	m, rep := res.Model, res.Report
	fmt.Fprintf(w, "train: %s head (%s) on %d-d features: %d train, %d val, %d test images, %d classes\n",
		m.Kind, m.Train.Config.Optimizer, m.Dim(), res.TrainRows, res.ValRows, res.TestRows, len(m.Classes))
	if res.Data != nil {
		fmt.Fprintf(w, "train: %s\n", res.Data.Text)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "train: note: %s\n", n)
	}
	if res.CV != nil {
		res.CV.WriteText(w)
	}
	fmt.Fprintf(w, "train: done in %.2fs (%s)\n", rep.Seconds, head.StopText(rep.Stopped))
	if cal := m.Calibration; cal != nil {
		fmt.Fprintf(w, "train: %s\n", cal.Describe())
	}
	if cf := m.Conformal; cf != nil {
		var ok []string
		for _, cov := range []float64{0.8, 0.9, 0.95} {
			if len(cf.Scores) >= head.MinRows(cov) {
				ok = append(ok, fmt.Sprintf("%g", cov))
			}
		}
		if len(ok) > 0 {
			fmt.Fprintf(w, "train: prediction sets (predict --coverage) from %d held-out scores: coverage %s available\n", len(cf.Scores), strings.Join(ok, ", "))
		} else {
			fmt.Fprintf(w, "train: %d held-out scores are too few for prediction sets below every class (coverage 0.8 needs %d)\n", len(cf.Scores), head.MinRows(0.8))
		}
	}
	if ev := res.Val; ev != nil {
		fmt.Fprintf(w, "train: validation accuracy %.4f on %d images\n", ev.Accuracy, ev.N)
	}
	if ev := res.Test; ev != nil {
		fmt.Fprintf(w, "train: test accuracy %.4f (macro-F1 %.4f) on %d images\n", ev.Accuracy, ev.MacroF1, ev.N)
	} else if res.CV == nil {
		fmt.Fprintf(w, "train: no test images, so no test figures\n")
	}
	_, err := fmt.Fprintf(w, "train: head written to %s\n", headPath)
	return err
}

// noTestNote says, when it is so, that no test figures come because no test
// split was asked for (rather than because one could not be made).
func noTestNote(split *head.SplitInfo, testRows int, asked SplitOptions) []string {
	if testRows == 0 && len(split.Skipped) == 0 && asked.Test == 0 && split.Source == "stratified" {
		return []string{"no test split asked for: no test figures"}
	}
	return nil
}
