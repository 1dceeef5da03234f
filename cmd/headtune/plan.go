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
	minN, maxN := p.Counts[0].Samples, p.Counts[0].Samples
	for _, s := range p.Counts {
		minN, maxN = min(minN, s.Samples), max(maxN, s.Samples)
	}
	if p.Ignored > 0 {
		fmt.Fprintf(os.Stderr, "plan: %d objects ignored (not images, or outside class folders; first: %s)\n", p.Ignored, p.FirstIgnored)
	}
	fmt.Fprintf(os.Stderr, "plan: %d images (%.1f MB) in %d classes -> %d shards of %d-%d images, %s\n",
		p.Samples, float64(p.Bytes)/1e6, len(p.Classes), p.Shards, minN, maxN, p.Location)
	return nil
}
