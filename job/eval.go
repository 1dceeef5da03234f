package job

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/pipeline"
)

// EvalOptions configure Eval.
type EvalOptions struct {
	Env
	// Head is the head file to evaluate; empty: DefaultHead.
	Head string
	// Dataset, when set, is a labelled folder or CSV to evaluate in full:
	// its features are extracted (and cached) with the head's own
	// backbone and preprocessing. Empty: evaluate a split of the data the
	// head was trained on.
	Dataset string
	// Split is the split to evaluate without Dataset: "test" (default),
	// "val", "train" or "all". The rows are those the head recorded when
	// it was trained.
	Split string
	// View overrides the dataset view file (default: the one the head was
	// trained on, else the cache's latest extraction).
	View string
	// MaxErrors limits EvalResult.Misses (0: all).
	MaxErrors int
	// BatchSize, Workers, Progress and OnSkip apply when Dataset is set,
	// as in ExtractOptions.
	BatchSize, Workers int
	Progress           func(pipeline.ExtractProgress)
	OnSkip             func(pipeline.Failure)
	// ConfusionPNG, when set, is where to write the confusion matrix as a
	// PNG image.
	ConfusionPNG string
	// Original, with Dataset, evaluates this installed model's own
	// classifier instead of a head (for comparison on the same images).
	Original string
	// AllFaces, with Dataset and a head trained on faces, evaluates every
	// face of each image (with the image's label) instead of the largest.
	AllFaces bool
	// Coverage lists the coverages at which to measure the head's
	// prediction sets (empirical coverage, mean set size); nil: 0.9 when
	// the head has conformal scores.
	Coverage []float64
	// Memory is the feature-memory budget (Bytes; 0: DefaultMemory). A
	// view larger than it, or any view of a head trained on streamed
	// features, is evaluated block by block.
	Memory Memory
}

// Miss is one misclassified image.
type Miss struct {
	Path       string  `json:"path"`
	True       string  `json:"true"`
	Pred       string  `json:"predicted"`
	Confidence float64 `json:"confidence"`
}

// EvalResult reports an evaluation.
type EvalResult struct {
	Split   string     `json:"split"`   // the split evaluated ("all" for a Dataset)
	Dataset string     `json:"dataset"` // the dataset's root
	Eval    *head.Eval `json:"eval"`
	// Classes are the class names Eval's indices refer to.
	Classes []string `json:"classes"`
	// Misses are the misclassified images, most confident first (not for
	// Original, whose scores do not keep paths).
	Misses []Miss `json:"error_paths,omitempty"`
	// ClassesLeftOut (Original) are dataset classes the model does not
	// know; their images were not evaluated.
	ClassesLeftOut []string `json:"classes_left_out,omitempty"`
	// Model and Original name the model evaluated with
	// EvalOptions.Original.
	Model    string `json:"model,omitempty"`
	Original bool   `json:"original,omitempty"`
	// Note explains a fallback (a head without a recorded split).
	Note string `json:"note,omitempty"`
	// Sets measures the head's prediction sets at each requested coverage.
	Sets []head.SetStats `json:"sets,omitempty"`
	// SetsNote warns when the evaluated rows are the ones the conformal
	// scores came from (the coverage is then not a held-out figure).
	SetsNote string `json:"sets_note,omitempty"`
}

// Eval evaluates a head on a split of its training data (the rows it
// recorded) or on a labelled dataset, or (Original) an installed model's own
// classifier on a labelled dataset. Dataset classes are matched to the
// head's classes by name; a class the head does not know is an error
// naming it.
func Eval(ctx context.Context, opt EvalOptions) (*EvalResult, error) {
	if opt.Original != "" {
		return evalOriginal(ctx, opt)
	}
	headPath := opt.Head
	headPath = headOrDefault(headPath)
	m, err := LoadHead(headPath)
	if err != nil {
		return nil, err
	}
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	res := &EvalResult{Split: opt.Split, Classes: m.Classes}
	if res.Split == "" {
		res.Split = "test"
	}
	view := opt.View
	if view == "" && opt.Dataset == "" && m.Train.Split != nil && m.Train.Split.View != "" {
		view = m.Train.Split.View
	}
	var runModel string
	if opt.Dataset != "" {
		// A labelled folder: extract its features with the head's own
		// backbone and preprocessing (cached), then evaluate all of it.
		ds, err := imaging.OpenDataset(opt.Dataset)
		if err != nil {
			return nil, err
		}
		bb, err := opt.openForHead(m, headPath, false)
		if err != nil {
			return nil, err
		}
		defer bb.Close()
		if !bb.Spec.Faces.IsZero() {
			if view, err = evalExtractFaces(ctx, opt, bb, ds, root); err != nil {
				return nil, err
			}
		} else {
			sum, err := pipeline.Extract(ctx, bb, ds, pipeline.ExtractOptions{
				CacheRoot: root, BatchSize: opt.BatchSize, Workers: opt.Workers, KeepLastRun: true,
				Progress: opt.Progress, OnSkip: opt.OnSkip,
			})
			if err != nil {
				return nil, err
			}
			view = sum.View
		}
		res.Split = "all"
		runModel, res.Dataset = bb.Ref, ds.Root
	}
	// Index the rows first: a head trained on streamed features, or a
	// matrix larger than the budget, is evaluated block by block.
	{
		var segList []string
		cacheView := view
		if segs, ok := strings.CutPrefix(view, pipeline.SegmentsViewPrefix); ok {
			segList, cacheView = strings.Split(segs, ","), ""
		}
		budget, _ := opt.Memory.budget()
		x, err := openIndex(ctx, root, cacheView, segList, 1)
		if err != nil {
			return nil, err
		}
		x.SetBlockRows(cacheBlockRows(budget, x.D))
		redraw := opt.Dataset == "" && m.Train.Split != nil && m.Train.Split.Redraw
		if redraw || x.Bytes() > budget {
			defer x.Close()
			return evalIndexed(ctx, opt, m, headPath, x, res, runModel, view)
		}
		x.Close()
	}
	var f *pipeline.Features
	if segs, ok := strings.CutPrefix(view, pipeline.SegmentsViewPrefix); ok {
		// Trained on segments directly (train --segments): read them again.
		f, err = pipeline.LoadSegmentFeatures(ctx, strings.Split(segs, ","))
	} else {
		f, err = pipeline.LoadFeatures(root, view)
	}
	if err != nil {
		return nil, err
	}
	if runModel != "" {
		f.Run.Model = runModel
	}
	if res.Dataset == "" {
		res.Dataset = f.Run.Dataset
	}
	if res.Dataset == "" && m.Train.Split != nil && m.Train.Split.View == view {
		res.Dataset = m.Train.Split.Dataset
	}
	got := head.BackboneRef{ID: f.Run.Model, ModelHash: f.Ident.ModelHash, FeatureTensor: f.Ident.FeatureTensor, Preprocess: f.Ident.Preprocess, TuneCut: m.Backbone.TuneCut}
	if len(m.ConvTail) > 0 {
		if got, err = convHeadRows(m, f); err != nil {
			return nil, fmt.Errorf("%s: %w", headPath, err)
		}
	}
	if err := m.CheckBackbone(got); err != nil {
		return nil, fmt.Errorf("%s: %w", headPath, err)
	}
	rows, note, err := evalRows(m, f, res.Split)
	if err != nil {
		return nil, err
	}
	res.Note = note
	if len(rows) == 0 {
		return nil, fmt.Errorf("the %s split of %s is empty", res.Split, f.Run.Dataset)
	}
	labels, err := remapLabels(f.Classes, f.Labels, m.Classes)
	if err != nil {
		return nil, err
	}
	if res.Eval, err = head.Evaluate(m, head.Data{X: f.X, N: f.N, D: f.D, Y: labels, Idx: rows}); err != nil {
		return nil, err
	}
	if err := evalSets(m, head.Data{X: f.X, N: f.N, D: f.D, Y: labels, Idx: rows}, opt, res); err != nil {
		return nil, err
	}
	for _, e := range res.Eval.Errors {
		if opt.MaxErrors > 0 && len(res.Misses) >= opt.MaxErrors {
			break
		}
		res.Misses = append(res.Misses, Miss{Path: f.Paths[rows[e.Index]], True: m.Classes[e.True], Pred: m.Classes[e.Pred], Confidence: e.Confidence})
	}
	return res, writeConfusion(opt.ConfusionPNG, res)
}

// evalRows picks the rows of a split: the head's recorded rows when the view
// is the one it was trained on, else (heads from before splits were
// recorded) the split redrawn with the head's seed and the default
// fractions.
func evalRows(m *head.Model, f *pipeline.Features, split string) (rows []int, note string, err error) {
	if split == "all" {
		rows = make([]int, f.N)
		for i := range rows {
			rows[i] = i
		}
		return rows, "", nil
	}
	if split != "train" && split != "val" && split != "test" {
		return nil, "", fmt.Errorf("split %q: expected test, val, train or all", split)
	}
	rec := m.Train.Split
	if rec == nil {
		so := DefaultSplit
		so.Seed = m.Train.Seed
		if rec, err = Split(f, so); err != nil {
			return nil, "", err
		}
		note = fmt.Sprintf("the head records no split (trained by an older headtune): the %s rows were redrawn with its seed %d and fractions val %g, test %g", split, so.Seed, so.Val, so.Test)
	} else if err := checkSplit(rec, f); err != nil {
		return nil, "", err
	}
	tr, va, te := Rows(rec)
	return map[string][]int{"train": tr, "val": va, "test": te}[split], note, nil
}

// remapLabels returns f's labels as indices into classes (the head's class
// order); a dataset class missing from classes is an error naming it.
func remapLabels(dataClasses []string, dataLabels []int32, classes []string) ([]int32, error) {
	idx := map[string]int32{}
	for i, name := range classes {
		idx[name] = int32(i)
	}
	for _, name := range dataClasses {
		if _, ok := idx[name]; !ok {
			return nil, fmt.Errorf("class %q of the dataset is not one of the head's classes %v", name, classes)
		}
	}
	labels := make([]int32, len(dataLabels))
	for i := range labels {
		labels[i] = idx[dataClasses[dataLabels[i]]]
	}
	return labels, nil
}

// evalOriginal evaluates an installed model's own classifier on a labelled
// dataset.
func evalOriginal(ctx context.Context, opt EvalOptions) (*EvalResult, error) {
	if opt.Dataset == "" {
		return nil, fmt.Errorf("evaluating %s's own classifier needs a labelled dataset", opt.Original)
	}
	ds, err := imaging.OpenDataset(opt.Dataset)
	if err != nil {
		return nil, err
	}
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	if _, err := store.Get(opt.Original); err != nil {
		return nil, unknownModel(opt.Original, err)
	}
	if err := opt.InitRuntime(); err != nil {
		return nil, err
	}
	orig, err := pipeline.OriginalScores(ctx, store, opt.Original, ds,
		pipeline.BackboneOptions{Session: opt.Session}, opt.OnSkip)
	if err != nil {
		return nil, err
	}
	classes, unknown := orig.Classes, orig.LeftOut
	ev, err := head.EvaluateProbs(orig.Probs, orig.Labels, classes)
	if err != nil {
		return nil, err
	}
	res := &EvalResult{Split: "all", Dataset: ds.Root, Eval: ev, Classes: classes, ClassesLeftOut: unknown, Model: opt.Original, Original: true}
	return res, writeConfusion(opt.ConfusionPNG, res)
}

func writeConfusion(path string, res *EvalResult) error {
	if path == "" {
		return nil
	}
	return head.ConfusionPNG(path, res.Eval, res.Classes)
}

// evalSets measures prediction sets on the evaluated rows d.
func evalSets(m *head.Model, d head.Data, opt EvalOptions, res *EvalResult) error {
	covs := opt.Coverage
	if m.Conformal == nil {
		if len(covs) > 0 {
			return fmt.Errorf("--coverage: the head has no conformal scores (trained before headtune recorded them, or without held-out images); train it again")
		}
		return nil
	}
	if covs == nil {
		covs = []float64{0.9}
	}
	k := m.NumClasses()
	n := d.Rows()
	probs := make([]float32, n*k)
	labels := make([]int32, n)
	var s head.Scratch
	for i := 0; i < n; i++ {
		if err := m.Predict(d.Row(i), probs[i*k:(i+1)*k], &s); err != nil {
			return err
		}
		labels[i] = d.Label(i)
	}
	return evalSetsProbs(m, probs, labels, covs, res)
}

// evalSetsProbs measures prediction sets from the evaluated rows'
// probabilities [len(labels)*K] at coverages covs.
func evalSetsProbs(m *head.Model, probs []float32, labels []int32, covs []float64, res *EvalResult) error {
	k := m.NumClasses()
	for _, c := range covs {
		st, err := m.Conformal.Evaluate(probs, labels, k, c)
		if err != nil {
			return fmt.Errorf("--coverage %g: %w", c, err)
		}
		res.Sets = append(res.Sets, st)
	}
	switch {
	case m.Conformal.Source == head.CalibValidation && res.Split == "val",
		m.Conformal.Source == head.CalibCV && (res.Split == "train" || res.Split == "all"):
		res.SetsNote = fmt.Sprintf("the prediction sets were calibrated on these %s rows: their coverage here is not a held-out figure", res.Split)
	}
	return nil
}

// WriteText writes the report for people: what was evaluated, the metrics
// and confusion matrix, and the misclassified images.
func (r *EvalResult) WriteText(w io.Writer) error {
	if r.Original {
		if len(r.ClassesLeftOut) > 0 {
			fmt.Fprintf(w, "eval: left out the images of %v: %s has no such classes\n", r.ClassesLeftOut, r.Model)
		}
		fmt.Fprintf(w, "eval: %s's own classifier on %d images of %s\n", r.Model, r.Eval.N, r.Dataset)
	} else {
		fmt.Fprintf(w, "eval: %d images of the %s split (%s)\n", r.Eval.N, r.Split, r.Dataset)
	}
	if err := r.Eval.WriteText(w); err != nil {
		return err
	}
	if len(r.Sets) > 0 {
		fmt.Fprintln(w, "\nprediction sets (predict --coverage):")
		for _, s := range r.Sets {
			all := ""
			if s.AllRows {
				all = " (too few held-out scores: every class in every set)"
			}
			fmt.Fprintf(w, "  coverage %.2f: empirical %.4f, mean set size %.2f, one class %.1f%%, empty %.1f%%%s\n", s.Coverage, s.Empirical, s.MeanSize, 100*s.Singleton, 100*s.Empty, all)
		}
		if r.SetsNote != "" {
			fmt.Fprintf(w, "  note: %s\n", r.SetsNote)
		}
	}
	if len(r.Misses) > 0 {
		fmt.Fprintln(w, "\nmisclassified (most confident first):")
		for _, e := range r.Misses {
			fmt.Fprintf(w, "  %s\ttrue %s\tpredicted %s\t%.3f\n", e.Path, e.True, e.Pred, e.Confidence)
		}
	}
	return nil
}
