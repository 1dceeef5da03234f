package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/job"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show a model's inputs, outputs, opsets, size and the feature tensor headtune would use",
		ArgsUsage: "MODEL.onnx|NAME",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("inspect takes one model, got %d arguments", c.NArg())
			}
			res, err := job.Inspect(c.Context, job.InspectOptions{Env: env(c), Model: c.Args().First()})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(res.Info)
			}
			return res.WriteText(os.Stdout)
		},
	}
}
