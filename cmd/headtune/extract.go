package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:      "extract",
		Usage:     "compute and cache backbone features for a labelled image dataset",
		ArgsUsage: "DATASET (a folder of class folders, train/val/test split folders, or a path,label CSV; local or an object storage URL such as s3://bucket/prefix)",
		Flags: append(append(append(append(backboneFlags(),
			&cli.IntFlag{Name: "tune-layers", Usage: "cut before the backbone's last K dense layers, or the last K convolutions before a pooled conv feature map (then the map is cached), so that train fine-tunes them"},
			&cli.BoolFlag{Name: "wait-lock", Usage: "wait for another extract on the same cache instead of refusing"},
			&cli.IntFlag{Name: "augment", Usage: "also cache `N` augmented views (flip, crop, rotation, colour jitter) of every training image; train uses them for training rows only"},
			&cli.Int64Flag{Name: "augment-seed", Value: 1, Usage: "seed of the augmented views (recorded; the same seed reuses the cached views)"},
		), facesSelectFlags("face mode: detect faces and use each image's largest face as its sample (--faces all: every face); images without one are skipped and counted")...), faceFlags()...), shardFlags()...),
		Action: runExtract,
	}
}

func runExtract(c *cli.Context) error {
	if c.IsSet("plan") {
		return runShardExtract(c)
	}
	for _, f := range []string{"shard", "out", "chunk-rows", "claim-ttl"} {
		if c.IsSet(f) {
			return fmt.Errorf("--%s works with --plan only", f)
		}
	}
	if c.NArg() != 1 {
		return fmt.Errorf("extract takes one dataset folder or CSV manifest, got %d arguments", c.NArg())
	}
	bo, err := backboneOptions(c, c.Int("tune-layers"))
	if err != nil {
		return err
	}
	quiet, asJSON := c.Bool("quiet"), c.Bool("json")
	prog := progress.New("extract", quiet)
	res, err := job.Extract(c.Context, job.ExtractOptions{
		Env:         env(c),
		Backbone:    bo,
		Dataset:     c.Args().First(),
		BatchSize:   c.Int("batch"),
		Workers:     c.Int("workers"),
		WaitLock:    c.Bool("wait-lock"),
		Augment:     c.Int("augment"),
		AugmentSeed: c.Int64("augment-seed"),
		Faces:       extractFaceOptions(c),
		OnIgnored: func(ig imaging.Skipped) {
			if !quiet && !asJSON {
				prog.Printf("ignored %s: %s\n", ig.Path, ig.Reason)
			}
		},
		Progress: func(p pipeline.ExtractProgress) {
			prog.Update(p.Done, p.Total, p.Computed+p.Skipped, fmt.Sprintf("  reused %d  skipped %d", p.Reused, p.Skipped))
		},
		OnSkip: printSkip(prog),
	})
	prog.Done()
	if res == nil || (err != nil && !errors.Is(err, context.Canceled)) {
		return err
	}
	if asJSON {
		printJSON(res)
		return err
	}
	res.WriteText(os.Stderr, c.Bool("faces"), err == nil)
	return err
}
