package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
)

func cacheMergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "merge sealed segments (from `extract --plan`) into the local feature cache; idempotent, any order",
		ArgsUsage: "URL... (segment outputs: an output root, a backbone folder or shard folders)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "allow-incomplete", Usage: "also merge the sealed chunks of shards that have not finished"},
			&cli.IntFlag{Name: "downloads", Value: 8, Usage: "chunks fetched at once"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fmt.Errorf("cache merge needs at least one segment location")
			}
			prog := progress.New("merge", c.Bool("quiet"))
			sum, err := job.Merge(c.Context, job.MergeOptions{
				Env: env(c), Inputs: c.Args().Slice(), AllowIncomplete: c.Bool("allow-incomplete"),
				Downloads: c.Int("downloads"),
				Progress:  func(done, total int) { prog.Update(done, total, done, " chunks") },
			})
			prog.Done()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(sum)
			}
			sum.WriteText(os.Stderr)
			return nil
		},
	}
}
