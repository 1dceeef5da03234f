package main

import (
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/job"
)

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "list, verify, repair and export the feature cache",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "the backbones with cached features",
				Action: func(c *cli.Context) error {
					res, err := job.CacheList(c.Context, job.CacheListOptions{Env: env(c)})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(res.Folders)
					}
					return res.WriteText(os.Stdout)
				},
			},
			{
				Name:      "verify",
				Usage:     "check every cached row against its checksum and the index against the data (all backbones when no folder is given)",
				ArgsUsage: "[DIR...]",
				Action:    func(c *cli.Context) error { return checkCache(c, false) },
			},
			{
				Name:      "repair",
				Usage:     "drop cached rows that cannot be trusted (they are recomputed by the next extract)",
				ArgsUsage: "[DIR...]",
				Action:    func(c *cli.Context) error { return checkCache(c, true) },
			},
			{
				Name:  "export-npy",
				Usage: "write the last extract's features and labels as NumPy files, split as train splits them",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "features-npy", Usage: "output folder"},
					&cli.StringFlag{Name: "view", Usage: "dataset view file (default: the last extract's, or with --head the one it was trained on)"},
					&cli.StringFlag{Name: "head", Usage: "take the split this head recorded (instead of --val, --test and --seed)"},
					&cli.Float64Flag{Name: "val", Value: job.DefaultSplit.Val, Usage: "validation fraction when the dataset has no val/ folder, as train's --val"},
					&cli.Float64Flag{Name: "test", Value: job.DefaultSplit.Test, Usage: "test fraction when the dataset has no test/ folder, as train's --test"},
					&cli.Int64Flag{Name: "seed", Value: job.DefaultSplit.Seed, Usage: "seed of the split, as train's --seed"},
				},
				Action: runExportNPY,
			},
			cacheMergeCommand(),
		},
	}
}

func checkCache(c *cli.Context, repair bool) error {
	res, err := job.CacheCheck(c.Context, job.CacheCheckOptions{Env: env(c), Dirs: c.Args().Slice(), Repair: repair})
	if res == nil {
		return err
	}
	if c.Bool("json") {
		if repair {
			printJSON(res.Repaired)
		} else {
			printJSON(res.Verified)
		}
	} else {
		res.WriteText(os.Stdout)
	}
	if errors.Is(err, job.ErrDamaged) {
		return &exitError{code: 1, err: err}
	}
	return err
}

func runExportNPY(c *cli.Context) error {
	res, err := job.CacheExportNPY(c.Context, job.NPYOptions{
		Env:   env(c),
		View:  c.String("view"),
		Out:   c.String("out"),
		Head:  c.String("head"),
		Split: splitOptions(c),
	})
	if err != nil {
		return err
	}
	res.WriteText(os.Stderr)
	return nil
}
