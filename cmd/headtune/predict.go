package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/predictions"
)

func predictCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "predict",
		Usage:     "classify images (files or folders, recursively) with a trained head or an exported model",
		ArgsUsage: "IMAGE|FOLDER...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: job.DefaultHead, Usage: "trained head file (run behind the backbone it records)"},
			&cli.StringFlag{Name: "export", Aliases: []string{"model"}, Usage: "an ONNX `FILE` made by headtune export, run instead of a head"},
			&cli.IntFlag{Name: "top", Aliases: []string{"k"}, Value: 3, Usage: "how many classes to report per image"},
			&cli.Float64Flag{Name: "threshold", Usage: "report the class as \"unknown\" when the top probability is below this `P`", DefaultText: "0, never"},
			&cli.Float64Flag{Name: "coverage", Usage: "with a head: add each image's prediction set, the classes that hold the true one with probability `P` (e.g. 0.9; conformal, from held-out scores recorded at training)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write one row per image to `FILE` as it goes (or to an object storage URL, uploaded when the run ends); the format follows the extension (.csv, .jsonl, .txt) or --format"},
			&cli.StringFlag{Name: "format", Usage: "output format: csv, jsonl or text (default: from --out's extension; text on a terminal, jsonl with --json)"},
			&cli.BoolFlag{Name: "resume", Usage: "with --out: skip images already in the output file"},
			&cli.BoolFlag{Name: "embeddings", Usage: "also write each image's feature vector"},
			batchFlag(),
			workersFlag(),
			&cli.BoolFlag{Name: "spin", Usage: "let ONNX Runtime threads spin-wait"},
			&cli.StringFlag{Name: "annotate", Usage: "heads trained on faces: write each image with its faces' boxes, classes and probabilities drawn into this `DIR`"},
		},
		Action: runPredict,
	}
	cmd.Flags = append(cmd.Flags, facesSelectFlags("heads trained on faces (face mode is then implied): a row per face, every face; --faces largest: only the largest")...)
	return cmd
}

func runPredict(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("predict needs at least one image or folder")
	}
	opt := job.PredictOptions{
		Env:         env(c),
		Head:        c.String("head"),
		Export:      c.String("export"),
		Inputs:      c.Args().Slice(),
		TopK:        c.Int("top"),
		Threshold:   c.Float64("threshold"),
		Coverage:    c.Float64("coverage"),
		Embeddings:  c.Bool("embeddings"),
		BatchSize:   c.Int("batch"),
		Workers:     c.Int("workers"),
		LargestFace: c.Bool("faces-largest"),
		AnnotateDir: c.String("annotate"),
	}
	if opt.Export != "" {
		if c.IsSet("head") {
			return fmt.Errorf("predict got both --head %s and --export %s: it runs one of them", opt.Head, opt.Export)
		}
		opt.Head = ""
	}
	toStdout := c.String("out") == "" || c.String("out") == "-"
	if toStdout {
		name := c.String("format")
		if name == "" {
			name = map[bool]string{false: "text", true: "jsonl"}[c.Bool("json")]
		}
		f, err := predictions.Lookup(name)
		if err != nil {
			return err
		}
		face := faceHead(opt.Head, opt.Export)
		opt.Out = f.New(os.Stdout, predictions.Options{Embeddings: opt.Embeddings, Header: true, Sets: opt.Export == "" && !face, Faces: face})
		defer opt.Out.Close()
	} else {
		opt.OutFile, opt.OutFormat, opt.Resume = c.String("out"), c.String("format"), c.Bool("resume")
	}
	quiet := c.Bool("quiet")
	prog := progress.New("predict", quiet || toStdout)
	opt.Progress = func(done, total int) { prog.Update(done, total, done, "") }
	opt.OnError = func(path string, err error) {
		if !toStdout || c.Bool("json") {
			prog.Printf("predict: %s: %v\n", path, err)
		}
	}
	res, err := job.Predict(c.Context, opt)
	prog.Done()
	if res != nil && res.Resumed > 0 && !quiet {
		fmt.Fprintf(os.Stderr, "predict: resumed: %d images were already in %s\n", res.Resumed, c.String("out"))
	}
	if res != nil && !toStdout && !quiet && !c.Bool("json") {
		fmt.Fprintf(os.Stderr, "predict: %d images, %d unreadable, rows in %s\n", res.Images, res.Failed, c.String("out"))
	}
	if res != nil && res.Faces+res.NoFace > 0 && !quiet && !c.Bool("json") {
		fmt.Fprintf(os.Stderr, "predict: %d faces; no face found in %d of the images\n", res.Faces, res.NoFace)
	}
	if errors.Is(err, job.ErrSomeFailed) {
		return &exitError{code: 2, err: err}
	}
	return err
}
