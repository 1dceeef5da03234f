package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/job"
)

func planCommand() *cli.Command {
	return &cli.Command{
		Name:      "plan",
		Usage:     "list a dataset once and split it into shard manifests for `extract --plan` tasks on a batch scheduler",
		ArgsUsage: "DATASET (a folder, a CSV manifest, or an object storage URL: s3://bucket/prefix, file:///folder, ...)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "shards", Aliases: []string{"n"}, Required: true, Usage: "number of shards (one task each)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "plan location (URL or folder); must not hold a plan yet"},
		},
		Action: runPlan,
	}
}

func runPlan(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("plan takes one dataset, got %d arguments", c.NArg())
	}
	p, err := job.Plan(c.Context, job.PlanOptions{Dataset: c.Args().First(), Shards: c.Int("shards"), Out: c.String("out")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(p)
	}
	p.WriteText(os.Stderr)
	return nil
}
