package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
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
	ds, err := source.Open(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	defer ds.Close()
	out, err := objstore.Create(c.Context, c.String("out"))
	if err != nil {
		return err
	}
	defer out.Close()
	p, err := shardplan.Write(c.Context, ds, out, shardplan.Options{Shards: c.Int("shards")})
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
	if ds.IgnoredCount > 0 {
		fmt.Fprintf(os.Stderr, "plan: %d objects ignored (not images, or outside class folders; first: %s: %s)\n", ds.IgnoredCount, ds.Ignored[0].Path, ds.Ignored[0].Reason)
	}
	fmt.Fprintf(os.Stderr, "plan: %d images (%.1f MB) in %d classes -> %d shards of %d-%d images, %s\n",
		p.Samples, float64(p.Bytes)/1e6, len(p.Classes), p.Shards, minN, maxN, out.Describe(shardplan.PlanFile))
	return nil
}
