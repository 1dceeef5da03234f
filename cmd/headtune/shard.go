package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

// shardFlags are extract's flags for one task of a shard plan.
func shardFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "plan", Usage: "run one shard of the plan at `URL` (a folder or object storage URL made by headtune plan) instead of a whole dataset"},
		&cli.StringFlag{Name: "shard", Usage: "with --plan: the shard, `I/N` (shard I of N; default: the scheduler's index: JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX, BATCH_TASK_INDEX, CLOUD_RUN_TASK_INDEX)"},
		&cli.StringFlag{Name: "out", Usage: "with --plan: where sealed segments go, a `URL` or folder (default: the plan's segments/ folder)"},
		&cli.IntFlag{Name: "chunk-rows", Value: 1024, Usage: "with --plan: seal a chunk every this many images (every attempt at a shard must use the same value)"},
		&cli.DurationFlag{Name: "claim-ttl", Value: 15 * time.Minute, Usage: "with --plan: how long another attempt's claim on a chunk is honoured"},
	}
}

func runShardExtract(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("extract --plan takes no dataset argument (the plan names it), got %d", c.NArg())
	}
	bo, err := backboneOptions(c, c.Int("tune-layers"))
	if err != nil {
		return err
	}
	quiet, asJSON := c.Bool("quiet"), c.Bool("json")
	prog := progress.New("extract", quiet)
	sum, err := job.ExtractShard(c.Context, job.ShardOptions{
		Env: env(c), Backbone: bo,
		Plan: c.String("plan"), Out: c.String("out"), Shard: c.String("shard"),
		ChunkRows: c.Int("chunk-rows"), ClaimTTL: c.Duration("claim-ttl"),
		BatchSize: c.Int("batch"), Workers: c.Int("workers"), Version: version,
		Progress: func(p pipeline.ShardProgress) {
			prog.Update(p.Done, p.Total, p.Computed, fmt.Sprintf("  chunk %d/%d", p.Chunk+1, p.Chunks))
		},
		OnSkip: printSkip(prog),
		Log: func(s string) {
			if !quiet && !asJSON {
				prog.Printf("extract: %s\n", s)
			}
		},
	})
	prog.Done()
	if sum != nil && (err == nil || errors.Is(err, context.Canceled)) {
		if asJSON {
			printJSON(sum)
		} else if err == nil {
			sum.WriteText(os.Stderr)
		}
	}
	return err
}
