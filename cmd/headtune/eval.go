package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "evaluate a trained head on the test split it recorded, or on a labelled folder",
		ArgsUsage: "[DATASET]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: job.DefaultHead, Usage: "trained head file"},
			&cli.StringFlag{Name: "split", Value: "test", Usage: "without DATASET: which split of the head's training data to evaluate (test, val, train, all)"},
			&cli.StringFlag{Name: "view", Usage: "dataset view file (default: the one the head was trained on)"},
			&cli.BoolFlag{Name: "errors", Usage: "list misclassified images (path, true, predicted, confidence)"},
			&cli.IntFlag{Name: "max-errors", Value: 50, Usage: "how many misclassified images --errors lists"},
			&cli.StringFlag{Name: "confusion-png", Usage: "write the confusion matrix as a PNG image"},
			&cli.IntFlag{Name: "batch", Usage: "images per inference batch, with DATASET", DefaultText: "as extract"},
			&cli.IntFlag{Name: "workers", Usage: "separate decode workers, with DATASET", DefaultText: "as extract"},
			&cli.BoolFlag{Name: "original", Usage: "with DATASET and --model: evaluate the backbone's own classifier (e.g. face-expression's 7 expressions) instead of a head"},
			&cli.StringFlag{Name: "model", Usage: "with --original: the installed model whose own classifier to evaluate"},
			facesSelectFlags("with DATASET and a head trained on faces (face mode is then implied): --faces all evaluates every face, not only the largest")[0],
			facesSelectFlags("")[1],
			facesSelectFlags("")[2],
			&cli.StringFlag{Name: "memory", Usage: "budget for features, e.g. `SIZE` 4GiB: larger views, and heads trained on streamed features, are evaluated block by block", DefaultText: "half of physical memory"},
			&cli.Float64SliceFlag{Name: "coverage", Usage: "measure the head's prediction sets at these coverages `P` (empirical coverage, mean set size)", DefaultText: "0.9 when the head has conformal scores"},
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("eval takes at most one dataset, got %d arguments", c.NArg())
	}
	opt := job.EvalOptions{
		Env:          env(c),
		Head:         c.String("head"),
		Dataset:      c.Args().First(),
		Split:        c.String("split"),
		View:         c.String("view"),
		MaxErrors:    c.Int("max-errors"),
		ConfusionPNG: c.String("confusion-png"),
		BatchSize:    c.Int("batch"),
		Workers:      c.Int("workers"),
		AllFaces:     c.Bool("faces-all"),
		Coverage:     c.Float64Slice("coverage"),
	}
	var err error
	if opt.Memory, err = memoryFlag(c); err != nil {
		return err
	}
	switch {
	case c.Bool("original"):
		if opt.Dataset == "" || c.String("model") == "" {
			return fmt.Errorf("eval --original needs a labelled DATASET and --model NAME")
		}
		if c.IsSet("head") {
			return fmt.Errorf("eval --original evaluates --model's own classifier; --head %s would be ignored: leave one out", c.String("head"))
		}
		opt.Original = c.String("model")
	case c.IsSet("model"):
		return fmt.Errorf("eval --model names a model whose own classifier to evaluate and needs --original; a head brings its own backbone")
	}
	prog := progress.New("eval", c.Bool("quiet"))
	opt.Progress = func(p pipeline.ExtractProgress) { prog.Update(p.Done, p.Total, p.Computed+p.Skipped, "") }
	opt.OnSkip = printSkip(prog)
	res, err := job.Eval(c.Context, opt)
	prog.Done()
	if err != nil {
		return err
	}
	if !c.Bool("errors") {
		res.Misses = nil
	}
	if c.Bool("json") {
		res.Eval.Errors = nil // their paths are in Misses
		return printJSON(res)
	}
	if res.Note != "" {
		fmt.Fprintf(os.Stderr, "eval: note: %s\n", res.Note)
	}
	if err := res.WriteText(os.Stdout); err != nil {
		return err
	}
	if p := opt.ConfusionPNG; p != "" {
		fmt.Fprintf(os.Stdout, "confusion matrix image: %s\n", p)
	}
	return nil
}
