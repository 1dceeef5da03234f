package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/pipeline"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "evaluate a trained head on the test split, or on a labelled folder",
		ArgsUsage: "[DATASET]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: defaultHead, Usage: "trained head file"},
			&cli.StringFlag{Name: "split", Value: "test", Usage: "without DATASET: which split of the last extract to evaluate (test, val, train, all)"},
			&cli.StringFlag{Name: "view", Usage: "dataset view file (default: the last extract's)"},
			&cli.BoolFlag{Name: "errors", Usage: "list misclassified images (path, true, predicted, confidence)"},
			&cli.IntFlag{Name: "max-errors", Value: 50, Usage: "how many misclassified images --errors lists"},
			&cli.StringFlag{Name: "confusion-png", Usage: "write the confusion matrix as a PNG image"},
			&cli.Float64Flag{Name: "val", Value: 0.1, Usage: "as given to train, to rebuild the same split"},
			&cli.Float64Flag{Name: "test", Value: 0.1, Usage: "as given to train, to rebuild the same split"},
			&cli.IntFlag{Name: "batch", Usage: "images per inference batch (with DATASET; 0: automatic, see extract)"},
			&cli.IntFlag{Name: "workers", Usage: "separate decode workers (with DATASET; 0: each core decodes its own batches)"},
			&cli.BoolFlag{Name: "original", Usage: "with DATASET and --model: evaluate the backbone's own classifier (e.g. face-expression's 7 expressions) instead of a head"},
			&cli.StringFlag{Name: "model", Usage: "with --original: the installed model whose own classifier to evaluate"},
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.Bool("original") {
		return runEvalOriginal(c)
	}
	m, err := head.Load(c.String("head"))
	if err != nil {
		return err
	}
	root, err := cacheRoot(c)
	if err != nil {
		return err
	}
	view := c.String("view")
	split := c.String("split")
	var runModel, runDataset string
	if c.NArg() == 1 {
		// A labelled folder: extract its features with the head's own
		// backbone and preprocessing (cached), then evaluate all of it.
		ds, err := imaging.OpenDataset(c.Args().First())
		if err != nil {
			return err
		}
		bb, err := openBackboneForHead(c, m, false)
		if err != nil {
			return err
		}
		defer bb.Close()
		prog := newProgress("eval", c.Bool("quiet"))
		sum, err := pipeline.Extract(c.Context, bb, ds, pipeline.ExtractOptions{
			CacheRoot: root, BatchSize: c.Int("batch"), Workers: c.Int("workers"), KeepLastRun: true,
			Progress: func(p pipeline.ExtractProgress) { prog.Update(p.Done, p.Total, p.Computed+p.Skipped, "") },
			OnSkip:   func(f pipeline.Failure) { prog.Printf("skipped %s: %v\n", f.Path, f.Err) },
		})
		prog.Done()
		if err != nil {
			return err
		}
		view, split = sum.View, "all"
		runModel, runDataset = bb.Ref, ds.Root
	} else if c.NArg() > 1 {
		return fmt.Errorf("eval takes at most one dataset, got %d arguments", c.NArg())
	}
	f, err := pipeline.LoadFeatures(root, view)
	if err != nil {
		return err
	}
	if runModel != "" {
		f.Run.Model, f.Run.Dataset = runModel, runDataset
	}
	if err := m.CheckBackbone(head.BackboneRef{ID: f.Run.Model, ModelHash: f.Ident.ModelHash, FeatureTensor: f.Ident.FeatureTensor, Preprocess: f.Ident.Preprocess, TuneCut: m.Backbone.TuneCut}); err != nil {
		return fmt.Errorf("%s: %w", c.String("head"), err)
	}
	// Labels follow the head's class order; a class the head does not
	// know is an error naming it.
	classIdx := map[string]int32{}
	for i, name := range m.Classes {
		classIdx[name] = int32(i)
	}
	var rows []int
	switch split {
	case "all":
		for i := 0; i < f.N; i++ {
			rows = append(rows, i)
		}
	default:
		tr, va, te, err := splitData(f, c.Float64("val"), c.Float64("test"), m.Train.Seed)
		if err != nil {
			return err
		}
		rows = map[string][]int{"train": tr, "val": va, "test": te}[split]
		if _, ok := map[string]bool{"train": true, "val": true, "test": true}[split]; !ok {
			return fmt.Errorf("--split %q: expected test, val, train or all", split)
		}
	}
	if len(rows) == 0 {
		return fmt.Errorf("the %s split of %s is empty", split, f.Run.Dataset)
	}
	labels := make([]int32, f.N)
	for i, name := range f.Classes {
		_ = i
		if _, ok := classIdx[name]; !ok {
			return fmt.Errorf("class %q of the dataset is not one of the head's classes %v", name, m.Classes)
		}
	}
	for i := range labels {
		labels[i] = classIdx[f.Classes[f.Labels[i]]]
	}
	ev, err := head.Evaluate(m, head.Data{X: f.X, N: f.N, D: f.D, Y: labels, Idx: rows})
	if err != nil {
		return err
	}
	if p := c.String("confusion-png"); p != "" {
		if err := head.ConfusionPNG(p, ev, m.Classes); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		out := map[string]any{"split": split, "eval": ev}
		if !c.Bool("errors") {
			ev.Errors = nil
		} else {
			out["error_paths"] = missPaths(ev, f, rows, m.Classes, c.Int("max-errors"))
		}
		return printJSON(out)
	}
	fmt.Fprintf(os.Stdout, "eval: %d images of the %s split (%s)\n", ev.N, split, f.Run.Dataset)
	if err := ev.WriteText(os.Stdout); err != nil {
		return err
	}
	if c.Bool("errors") {
		fmt.Fprintln(os.Stdout, "\nmisclassified (most confident first):")
		for _, e := range missPaths(ev, f, rows, m.Classes, c.Int("max-errors")) {
			fmt.Fprintf(os.Stdout, "  %s\ttrue %s\tpredicted %s\t%.3f\n", e.Path, e.True, e.Pred, e.Confidence)
		}
	}
	if p := c.String("confusion-png"); p != "" {
		fmt.Fprintf(os.Stdout, "confusion matrix image: %s\n", p)
	}
	return nil
}

type missRow struct {
	Path       string  `json:"path"`
	True       string  `json:"true"`
	Pred       string  `json:"predicted"`
	Confidence float64 `json:"confidence"`
}

func missPaths(ev *head.Eval, f *pipeline.Features, rows []int, classes []string, limit int) []missRow {
	var out []missRow
	for _, e := range ev.Errors {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, missRow{Path: f.Paths[rows[e.Index]], True: classes[e.True], Pred: classes[e.Pred], Confidence: e.Confidence})
	}
	return out
}

// openBackboneForHead opens the backbone a head was trained on, with the
// head's recorded preprocessing and cut point, and checks the identity.
func openBackboneForHead(c *cli.Context, m *head.Model, noSession bool) (*pipeline.Backbone, error) {
	spec, err := imaging.ParseSpec(m.Backbone.Preprocess)
	if err != nil {
		return nil, fmt.Errorf("head %s: preprocessing recipe: %w", c.String("head"), err)
	}
	if err := checkFastJPEG(spec.FastJPEG, "head "+c.String("head")); err != nil {
		return nil, err
	}
	store, err := openStore(c)
	if err != nil {
		return nil, err
	}
	tensor := m.Backbone.FeatureTensor
	if m.Backbone.TuneCut != "" {
		tensor = m.Backbone.TuneCut
	}
	bb, err := pipeline.OpenBackbone(m.Backbone.ID, pipeline.BackboneOptions{
		Store: store, FeatureTensor: tensor, Spec: &spec, Session: sessionOptions(c), NoSession: noSession,
	})
	if err != nil {
		return nil, fmt.Errorf("head %s was trained on backbone %s: %w", c.String("head"), m.Backbone.ID, err)
	}
	got := head.BackboneRef{ID: bb.Ref, ModelHash: bb.ModelHash, FeatureTensor: bb.Choice.Tensor, Preprocess: bb.Identity.Preprocess, TuneCut: m.Backbone.TuneCut}
	if err := m.CheckBackbone(got); err != nil {
		bb.Close()
		return nil, fmt.Errorf("%s: %w", c.String("head"), err)
	}
	return bb, nil
}

// runEvalOriginal evaluates an installed model's own classifier on a
// labelled folder, for comparison with a new head on the same images.
func runEvalOriginal(c *cli.Context) error {
	if c.NArg() != 1 || c.String("model") == "" {
		return fmt.Errorf("eval --original needs a labelled DATASET and --model NAME")
	}
	ds, err := imaging.OpenDataset(c.Args().First())
	if err != nil {
		return err
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	orig, err := pipeline.OriginalScores(c.Context, store, c.String("model"), ds,
		pipeline.BackboneOptions{Session: sessionOptions(c)},
		func(f pipeline.Failure) { fmt.Fprintf(os.Stderr, "skipped %s: %v\n", f.Path, f.Err) })
	if err != nil {
		return err
	}
	ev, err := head.EvaluateProbs(orig.Probs, orig.Labels, orig.Classes)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		ev.Errors = nil
		return printJSON(map[string]any{"model": c.String("model"), "original": true, "eval": ev, "classes_left_out": orig.LeftOut})
	}
	if len(orig.LeftOut) > 0 {
		fmt.Fprintf(os.Stdout, "eval: left out the images of %v: %s has no such classes\n", orig.LeftOut, c.String("model"))
	}
	fmt.Fprintf(os.Stdout, "eval: %s's own classifier on %d images of %s\n", c.String("model"), ev.N, ds.Root)
	return ev.WriteText(os.Stdout)
}
