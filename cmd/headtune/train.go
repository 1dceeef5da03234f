package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/job"
)

func trainCommand() *cli.Command {
	lin, mlp := head.DefaultConfig(head.KindLinear), head.DefaultConfig(head.KindMLP)
	byKind := func(l, m any) string { return fmt.Sprintf("linear %v, mlp %v", l, m) }
	return &cli.Command{
		Name:  "train",
		Usage: "train a new classification head on the cached features of the last extract",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "classes", Usage: "expected number of classes, checked against the dataset", DefaultText: "any"},
			&cli.StringFlag{Name: "view", Usage: "dataset view file (a .csv under the cache's views/ folders) to train on (default: the last extract's)"},
			&cli.StringSliceFlag{Name: "segments", Usage: "train on sealed segments (from extract --plan) at these `URL`s directly, without cache merge"},
			&cli.StringFlag{Name: "head", Value: job.DefaultHead, Usage: "where to write the trained head"},
			&cli.StringFlag{Name: "kind", Value: head.KindLinear, Usage: "linear (softmax regression) or mlp"},
			&cli.IntSliceFlag{Name: "hidden", Usage: "MLP hidden layer widths", DefaultText: fmt.Sprint(mlp.Hidden[0])},
			&cli.Float64Flag{Name: "dropout", Usage: "MLP dropout probability", DefaultText: fmt.Sprint(mlp.Dropout)},
			&cli.StringFlag{Name: "optimizer", Usage: "lbfgs, adam or sgd", DefaultText: "lbfgs for a linear head on plain features, adam for mlp or after extract --tune-layers"},
			&cli.Float64Flag{Name: "lr", Usage: "peak learning rate (adam, sgd)", DefaultText: fmt.Sprint(lin.LR)},
			&cli.Float64Flag{Name: "weight-decay", Usage: "L2 strength (adam, sgd)", DefaultText: fmt.Sprint(lin.WeightDecay)},
			&cli.Float64Flag{Name: "C", Value: lin.C, Usage: "lbfgs inverse regularisation, as scikit-learn's LogisticRegression"},
			&cli.Float64Flag{Name: "label-smoothing", Usage: "move this much of each target's probability evenly onto all classes, [0, 1)"},
			&cli.IntFlag{Name: "epochs", Usage: "maximum epochs (adam, sgd)", DefaultText: byKind(lin.Epochs, mlp.Epochs)},
			&cli.IntFlag{Name: "batch-size", Usage: "mini-batch size (adam, sgd)", DefaultText: fmt.Sprint(lin.BatchSize)},
			&cli.IntFlag{Name: "patience", Usage: "early stopping patience in epochs (0 turns it off)", DefaultText: byKind(lin.Patience, mlp.Patience)},
			&cli.StringFlag{Name: "schedule", Usage: "cosine or constant learning rate (after warm-up)", DefaultText: lin.Schedule},
			&cli.BoolFlag{Name: "balance", Usage: "weight classes inversely to their frequency"},
			&cli.Float64Flag{Name: "val", Value: job.DefaultSplit.Val, Usage: "validation fraction when the dataset has no val/ folder"},
			&cli.Float64Flag{Name: "test", Value: job.DefaultSplit.Test, Usage: "test fraction when the dataset has no test/ folder"},
			&cli.Int64Flag{Name: "seed", Value: job.DefaultSplit.Seed, Usage: "seed for splits, folds, initialisation and shuffling (recorded in the head)"},
			&cli.StringFlag{Name: "memory", Usage: "budget for features, e.g. `SIZE` 4GiB or 512MB: larger feature sets stream minibatches (mlp, adam, sgd) or train L-BFGS on a subsample chosen by content hash", DefaultText: "half of physical memory"},
			&cli.IntFlag{Name: "max-rows", Usage: "L-BFGS on features larger than --memory: at most `N` rows in the subsample", DefaultText: "as many as the budget holds"},
			&cli.IntFlag{Name: "cv", Usage: "K: stratified K-fold cross-validation on the training images (per-fold and mean ± std figures), calibration and prediction sets on its out-of-fold predictions, then the final head on all training images; no validation split is drawn", DefaultText: "only when the validation split is too small to calibrate on"},
		},
		Action: runTrain,
	}
}

func runTrain(c *cli.Context) error {
	cfg, err := trainConfig(c)
	if err != nil {
		return err
	}
	var log io.Writer = os.Stderr
	if c.Bool("quiet") {
		log = nil
	}
	mem, err := memoryFlag(c)
	if err != nil {
		return err
	}
	mem.MaxRows = c.Int("max-rows")
	res, err := job.Train(c.Context, job.TrainOptions{
		Memory:   mem,
		Env:      env(c),
		View:     c.String("view"),
		Segments: c.StringSlice("segments"),
		Head:     c.String("head"),
		Classes:  c.Int("classes"),
		Config:   cfg,
		Split:    splitOptions(c),
		CV:       c.Int("cv"),
		Log:      log,
		// A conv tail has its own defaults; only flags given override them.
		ConvTail: job.ConvTailOptions{Epochs: setInt(c, "epochs"), LR: setFloat(c, "lr"), BatchSize: setInt(c, "batch-size")},
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res.Summary())
	}
	res.WriteText(os.Stderr, c.String("head"))
	return nil
}

// trainConfig starts from the kind's defaults and applies the flags given.
// The optimizer stays empty unless given, so that job.Train picks one that
// can train what the extraction left (tuned layers need adam).
func trainConfig(c *cli.Context) (head.Config, error) {
	cfg, err := kindConfig(c)
	if err != nil {
		return cfg, err
	}
	cfg.Optimizer = c.String("optimizer")
	if v := c.IntSlice("hidden"); len(v) > 0 {
		cfg.Hidden = v
	}
	set := func(name string, apply func()) {
		if c.IsSet(name) {
			apply()
		}
	}
	set("dropout", func() { cfg.Dropout = c.Float64("dropout") })
	set("lr", func() { cfg.LR = c.Float64("lr") })
	set("weight-decay", func() { cfg.WeightDecay = c.Float64("weight-decay") })
	set("C", func() { cfg.C = c.Float64("C") })
	set("label-smoothing", func() { cfg.LabelSmoothing = c.Float64("label-smoothing") })
	set("epochs", func() { cfg.Epochs = c.Int("epochs") })
	set("batch-size", func() { cfg.BatchSize = c.Int("batch-size") })
	set("patience", func() { cfg.Patience = c.Int("patience") })
	set("schedule", func() { cfg.Schedule = c.String("schedule") })
	// One L-BFGS log line per 50 iterations: 1000 iterations should not
	// print 100 lines.
	cfg.LogEvery = 50
	cfg.Balance = c.Bool("balance")
	cfg.Seed = c.Int64("seed")
	cfg.Threads = c.Int("threads")
	return cfg, nil
}

// memoryFlag reads --memory (unset: job's default budget).
func memoryFlag(c *cli.Context) (job.Memory, error) {
	if !c.IsSet("memory") {
		return job.Memory{}, nil
	}
	b, err := bytesize.Parse(c.String("memory"))
	if err != nil {
		return job.Memory{}, fmt.Errorf("--memory: %w", err)
	}
	return job.Memory{Bytes: b}, nil
}

// setInt and setFloat return a flag's value when it was given, else 0.
func setInt(c *cli.Context, name string) int {
	if c.IsSet(name) {
		return c.Int(name)
	}
	return 0
}

func setFloat(c *cli.Context, name string) float64 {
	if c.IsSet(name) {
		return c.Float64(name)
	}
	return 0
}
