package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/pipeline"
)

func extractCommand() *cli.Command {
	return &cli.Command{
		Name:      "extract",
		Usage:     "compute and cache backbone features for a labelled image dataset",
		ArgsUsage: "DATASET (a folder of class folders, train/val/test split folders, or a path,label CSV; local or an object storage URL such as s3://bucket/prefix)",
		Flags: append(append(backboneFlags(),
			&cli.IntFlag{Name: "tune-layers", Usage: "cut before the backbone's last K dense layers so that train fine-tunes them"},
			&cli.BoolFlag{Name: "wait-lock", Usage: "wait for another extract on the same cache instead of refusing"},
		), shardFlags()...),
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
	arg := c.Args().First()
	location := pipeline.IsLocation(arg)
	var ds *imaging.Dataset
	if !location {
		var err error
		if ds, err = imaging.OpenDataset(arg); err != nil {
			return err
		}
	}
	root, err := cacheRoot(c)
	if err != nil {
		return err
	}
	bb, err := openBackboneFromFlags(c, c.Int("tune-layers"), false)
	if err != nil {
		return err
	}
	defer bb.Close()

	quiet := c.Bool("quiet")
	prog := newProgress("extract", quiet)
	if ds != nil {
		for _, ig := range ds.Ignored {
			if !quiet && !c.Bool("json") {
				prog.Printf("ignored %s: %s\n", ig.Path, ig.Reason)
			}
		}
	}
	opts := pipeline.ExtractOptions{
		CacheRoot: root,
		BatchSize: c.Int("batch"),
		Workers:   c.Int("workers"),
		WaitLock:  c.Bool("wait-lock"),
		Progress: func(p pipeline.ExtractProgress) {
			prog.Update(p.Done, p.Total, p.Computed+p.Skipped, fmt.Sprintf("  reused %d  skipped %d", p.Reused, p.Skipped))
		},
		OnSkip: func(f pipeline.Failure) {
			// One line per bad file, always (also when quiet): it is data
			// the user must know about, not progress.
			prog.Printf("skipped %s: %v\n", f.Path, f.Err)
		},
	}
	var sum *pipeline.ExtractSummary
	if location {
		sum, err = pipeline.ExtractLocation(c.Context, bb, arg, opts)
	} else {
		sum, err = pipeline.Extract(c.Context, bb, ds, opts)
	}
	prog.Done()
	if sum != nil && (err == nil || errors.Is(err, context.Canceled)) {
		if c.Bool("json") {
			printJSON(sum)
		} else {
			fmt.Fprintf(os.Stderr, "extract: %d images: %d computed (%.1f img/s), %d reused from cache, %d skipped in %s\n",
				sum.Images, sum.Computed, sum.ImagesPerS, sum.Reused, sum.Skipped, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Millisecond))
			if err == nil {
				fmt.Fprintf(os.Stderr, "extract: %d classes, %d-d features from %s (%s), cache %s\n", len(sum.Classes), sum.Dim, bb.Name, bb.Choice.Tensor, sum.CacheDir)
			}
		}
	}
	if err != nil {
		return err
	}
	if sum.Computed+sum.Reused == 0 {
		return fmt.Errorf("%s: none of the %d images could be used (see the skipped lines above)", arg, sum.Images)
	}
	return nil
}
