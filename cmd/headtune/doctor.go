package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/head/audit"
	"github.com/headtune/headtune/job"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "check a dataset's cached features for likely mislabelled images, near-duplicates and train/test leaks, outliers and class imbalance",
		ArgsUsage: "[DATASET]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "view", Usage: "dataset view file (default: DATASET's, else the last extract's)"},
			&cli.StringFlag{Name: "html", Usage: "also write a self-contained HTML page with thumbnails of the suspects to `FILE`"},
			&cli.StringFlag{Name: "kind", Value: head.KindLinear, Usage: "head trained in cross-validation for the out-of-fold predictions: linear or mlp"},
			&cli.IntFlag{Name: "folds", Value: 5, Usage: "cross-validation folds (fewer when a class is smaller)"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed for the folds and the heads"},
			&cli.Float64Flag{Name: "dup-cosine", Value: audit.DefaultDupCosine, Usage: "near-duplicate threshold on the centred cosine of the features"},
			&cli.Float64Flag{Name: "outlier-z", Value: audit.DefaultOutlierZ, Usage: "flag images whose robust z-score of closeness to the nearest class is below minus this"},
			&cli.IntFlag{Name: "tiny", Value: 10, Usage: "report classes with fewer images than this"},
			&cli.IntFlag{Name: "max", Value: 50, Usage: "list at most this many images per check (0: all; the counts are always complete)"},
		},
		Action: runDoctor,
	}
}

func runDoctor(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("doctor takes at most one dataset, got %d arguments", c.NArg())
	}
	cfg, err := kindConfig(c)
	if err != nil {
		return err
	}
	cfg.Seed = c.Int64("seed")
	cfg.Threads = c.Int("threads")
	var log io.Writer = os.Stderr
	if c.Bool("quiet") || c.Bool("json") {
		log = nil
	}
	res, err := job.Doctor(c.Context, job.DoctorOptions{
		Env:     env(c),
		Dataset: c.Args().First(),
		View:    c.String("view"),
		HTML:    c.String("html"),
		Log:     log,
		Check: audit.Options{Config: cfg, Folds: c.Int("folds"), Seed: c.Int64("seed"), DupCosine: c.Float64("dup-cosine"),
			OutlierZ: c.Float64("outlier-z"), TinyClass: c.Int("tiny"), MaxSuspects: c.Int("max"), MaxDupPairs: c.Int("max")},
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	return res.WriteText(os.Stdout)
}
