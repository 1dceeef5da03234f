package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/job"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write one ONNX model: the backbone cut at its features, then the trained head and softmax",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: job.DefaultHead, Usage: "trained head file"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "headtune.onnx", Usage: "output ONNX file"},
			&cli.BoolFlag{Name: "with-preprocessing", Usage: "bake the normalisation into the graph: the model takes raw 0..255 pixels"},
			&cli.BoolFlag{Name: "with-features", Aliases: []string{"features"}, Usage: "also output the feature vector (output \"" + export.OutputFeatures + "\", [N, D])"},
			&cli.BoolFlag{Name: "faces", Usage: "heads trained on faces: one model from a letterboxed photo to boxes, scores, keypoints and per-face probabilities (detector included)"},
			&cli.IntFlag{Name: "photo-size", Value: export.DefaultPhotoSize, Usage: "with --faces: side of the square photo input, pixels"},
			&cli.BoolFlag{Name: "fp16", Usage: "half-precision weights and activations inside the graph (half the file size; input and outputs stay float32)"},
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	res, err := job.Export(c.Context, job.ExportOptions{
		Env:               env(c),
		Head:              c.String("head"),
		Out:               c.String("out"),
		WithPreprocessing: c.Bool("with-preprocessing"),
		WithFeatures:      c.Bool("with-features"),
		FP16:              c.Bool("fp16"),
		Version:           version,
		Faces:             c.Bool("faces"),
		PhotoSize:         c.Int("photo-size"),
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(map[string]any{"path": res.Path, "bytes": res.Bytes, "classes": res.Classes, "with_preprocessing": res.WithPreprocessing, "fp16": res.FP16, "limits": res.Limits})
	}
	res.WriteText(os.Stderr, c.String("out"))
	return nil
}
