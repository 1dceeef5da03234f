package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone/quantize"
	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

// modelsQuantizeCommand is `headtune models quantize`.
func modelsQuantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "make a static int8 copy of an installed backbone, calibrated on your images",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "calibrate", Required: true, Usage: "folder (any layout) or dataset CSV of images like the ones you will extract"},
			&cli.IntFlag{Name: "samples", Value: pipeline.DefaultCalibrationSamples, Usage: "calibration images, drawn at random with --seed"},
			&cli.StringFlag{Name: "name", Usage: "name of the int8 model (default NAME-int8)"},
			&cli.StringFlag{Name: "method", Value: quantize.Percentile, Usage: "activation ranges: percentile or minmax"},
			&cli.Float64Flag{Name: "percentile", Value: quantize.DefaultPercentile, Usage: "percentile of each activation's values that sets its range (--method percentile)"},
			&cli.StringSliceFlag{Name: "float", Usage: "keep these layers float32 (node or output tensor names; repeat or comma-separate)"},
			&cli.Float64Flag{Name: "min-cosine", Usage: "keep the most sensitive layers float until int8 features reach this mean cosine similarity to float32 ones (e.g. 0.995)"},
			&cli.IntFlag{Name: "max-float", Value: 8, Usage: "--min-cosine tries at most this many layers float (each kept only if it helps)"},
			&cli.BoolFlag{Name: "quantize-dense", Usage: "also quantize the dense layers before the features (then --tune-layers cannot fine-tune them)"},
			&cli.BoolFlag{Name: "no-rewrite", Usage: "quantize the graph as it is, without first moving average pools after the 1x1 convolution they feed (an exact rewrite that makes Inception-style pool branches cheaper in int8)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "picks the calibration images"},
			&cli.BoolFlag{Name: "replace", Usage: "overwrite an installed model of the new name"},
		},
		Action: runModelsQuantize,
	}
}

func runModelsQuantize(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("models quantize takes one installed model name")
	}
	var float []string
	for _, f := range c.StringSlice("float") {
		for _, p := range strings.Split(f, ",") {
			if p = strings.TrimSpace(p); p != "" {
				float = append(float, p)
			}
		}
	}
	name := c.Args().First()
	prog := progress.New("quantize "+name, c.Bool("quiet"))
	res, err := job.ModelsQuantize(c.Context, job.QuantizeOptions{Env: env(c), QuantizeOptions: pipeline.QuantizeOptions{
		Model: name, Name: c.String("name"), Dataset: c.String("calibrate"),
		Samples: c.Int("samples"), Seed: c.Uint64("seed"), Method: c.String("method"), Percentile: c.Float64("percentile"),
		MinCosine: c.Float64("min-cosine"), MaxFloat: c.Int("max-float"),
		Float: float, QuantizeDense: c.Bool("quantize-dense"), NoRewrite: c.Bool("no-rewrite"), Replace: c.Bool("replace"),
		Progress: func(stage string, done, total int) { prog.Update(done, total, done, "  "+stage) },
	}})
	prog.Done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	res.WriteText(os.Stderr, name)
	return nil
}
