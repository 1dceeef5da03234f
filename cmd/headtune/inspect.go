package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/pipeline"
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
			path := c.Args().First()
			if !pipeline.IsModelFile(path) {
				store, err := openStore(c)
				if err != nil {
					return err
				}
				inst, err := store.Get(path)
				if err != nil {
					return err
				}
				path = inst.ModelPath()
			}
			m, err := backbone.ReadModelFile(path)
			if err != nil {
				return err
			}
			info, err := backbone.Inspect(m)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if c.Bool("json") {
				return printJSON(info)
			}
			fmt.Fprintf(os.Stdout, "%s\n", path)
			return info.WriteText(os.Stdout)
		},
	}
}
