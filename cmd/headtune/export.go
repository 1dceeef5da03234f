package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/bytesize"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write one ONNX model: the backbone cut at its features, then the trained head and softmax",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: defaultHead, Usage: "trained head file"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "headtune.onnx", Usage: "output ONNX file"},
			&cli.BoolFlag{Name: "with-preprocessing", Usage: "bake the normalisation into the graph: the model takes raw 0..255 pixels"},
			&cli.BoolFlag{Name: "with-features", Aliases: []string{"features"}, Usage: "also output the feature vector (`features` [N, D])"},
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	m, err := head.Load(c.String("head"))
	if err != nil {
		return err
	}
	bb, err := openBackboneForHead(c, m, true)
	if err != nil {
		return err
	}
	out, err := export.Build(bb.Cut, bb.Spec, m, export.Options{
		WithFeatures:      c.Bool("with-features"),
		WithPreprocessing: c.Bool("with-preprocessing"),
		Version:           version,
	})
	if err != nil {
		return err
	}
	path := c.String("out")
	if err := export.Write(path, out); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(map[string]any{"path": absPath(path), "bytes": st.Size(), "classes": m.Classes, "with_preprocessing": c.Bool("with-preprocessing")})
	}
	in := "normalised"
	if c.Bool("with-preprocessing") {
		in = "raw 0..255"
	}
	fmt.Fprintf(os.Stderr, "export: %s (%s): %s %dx%d %s input -> probabilities [N,%d]\n",
		path, bytesize.Format(st.Size()), bb.Spec.Layout, bb.Spec.Width, bb.Spec.Height, in, len(m.Classes))
	return nil
}
