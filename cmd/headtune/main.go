// Command headtune trains new image classifiers on top of frozen ONNX
// backbones: extract features once, train a pure-Go head in seconds, predict,
// and export one combined ONNX model. See README.md.
//
// The work is done by package job; this command declares flags, builds the
// job's options, calls it and prints the result.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/cliargs"
	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// exitError carries a process exit status through urfave/cli.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	err := app.RunContext(ctx, cliargs.Interspersed(app, cliargs.FacesArgs(os.Args)))
	ort.Shutdown()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "headtune: interrupted; finished work is kept, run the same command again to resume")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "headtune: %v\n", err)
	}
	os.Exit(code)
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "headtune",
		Usage:   "transfer learning on images: frozen ONNX backbone + pure-Go head",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ort-lib", Usage: "the ONNX Runtime shared library `FILE` to load", DefaultText: "$" + ort.LibraryEnv + ", $ONNXRUNTIME_SHARED_LIBRARY_PATH, .deps/ of the repository, the library make setup recorded, system folders"},
			&cli.IntFlag{Name: "threads", Usage: "cores to use: concurrent single-threaded inference calls, and training workers", DefaultText: "one per core"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu or cuda"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress display"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable JSON summary on stdout"},
			&cli.StringFlag{Name: "cache", Usage: "feature cache folder (default $HEADTUNE_CACHE, $HEADTUNE_CACHE_DIR or ~/.cache/headtune/features)", EnvVars: []string{"HEADTUNE_CACHE", "HEADTUNE_CACHE_DIR"}},
			&cli.StringFlag{Name: "models-dir", Usage: "installed models folder (default $HEADTUNE_HOME/models or ~/.local/share/headtune/models)"},
		},
		Commands: []*cli.Command{
			extractCommand(),
			planCommand(),
			trainCommand(),
			evalCommand(),
			doctorCommand(),
			predictCommand(),
			exportCommand(),
			facesCommand(),
			inspectCommand(),
			modelsCommand(),
			cacheCommand(),
			{
				Name:  "version",
				Usage: "print headtune's version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(os.Stdout, "headtune %s\n", version)
					return nil
				},
			},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // errors are printed once, in main
	}
	cliargs.RefuseUnknownCommands(app, func(err error) error { return &exitError{code: 2, err: err} })
	return app
}

// env builds the jobs' shared settings from the global flags.
func env(c *cli.Context) job.Env {
	return job.Env{
		CacheDir:         c.String("cache"),
		ModelsDir:        c.String("models-dir"),
		ORTLibrary:       c.String("ort-lib"),
		ORTLibrarySource: "--ort-lib",
		Session:          ortOptions(c),
	}
}

func ortOptions(c *cli.Context) ort.SessionOptions {
	return ort.SessionOptions{Threads: c.Int("threads"), Device: c.String("device"), Spinning: c.Bool("spin")}
}

// printJSON writes v as indented JSON on stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// presetList is the preset names for help texts, from imaging's list.
func presetList() string { return strings.Join(imaging.PresetNames, ", ") }

// backboneFlags are shared by the commands that open a backbone.
func backboneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "backbone: an installed model name or an .onnx file (default: " + models.DefaultModel + ")"},
		&cli.StringFlag{Name: "feature-tensor", Usage: "read features from this tensor instead of the detected one"},
		&cli.StringFlag{Name: "preset", Usage: "preprocessing preset for a plain .onnx file: " + presetList()},
		&cli.StringFlag{Name: "input-size", Usage: "WxH for models with a dynamic input size"},
		&cli.BoolFlag{Name: "fast-jpeg", Usage: "decode JPEGs at a DCT-reduced scale (libjpeg-turbo); recorded in the preprocessing spec"},
		&cli.BoolFlag{Name: "spin", Usage: "let ONNX Runtime threads spin-wait (faster on an idle machine, slower beside decode workers)"},
		batchFlag(),
		workersFlag(),
	}
}

func batchFlag() cli.Flag {
	return &cli.IntFlag{Name: "batch", Usage: "images per inference batch", DefaultText: "1 when each core decodes its own images, 16 with --workers"}
}

func workersFlag() cli.Flag {
	return &cli.IntFlag{Name: "workers", Usage: "decode on this many goroutines of their own, handing batches to inference", DefaultText: "none: each core decodes and runs its own batches"}
}

// backboneOptions reads backboneFlags.
func backboneOptions(c *cli.Context, tuneLayers int) (job.BackboneOptions, error) {
	w, h, err := cliargs.ParseSize(c.String("input-size"))
	if err != nil {
		return job.BackboneOptions{}, err
	}
	return job.BackboneOptions{
		Model:         c.String("model"),
		FeatureTensor: c.String("feature-tensor"),
		Preset:        c.String("preset"),
		Width:         w,
		Height:        h,
		FastJPEG:      c.Bool("fast-jpeg"),
		TuneLayers:    tuneLayers,
	}, nil
}

// splitOptions reads --val, --test and --seed.
func splitOptions(c *cli.Context) job.SplitOptions {
	return job.SplitOptions{Val: c.Float64("val"), Test: c.Float64("test"), Seed: c.Int64("seed")}
}

// kindConfig reads --kind: the default configuration of a linear or an mlp
// head.
func kindConfig(c *cli.Context) (head.Config, error) {
	kind := c.String("kind")
	if kind != head.KindLinear && kind != head.KindMLP {
		return head.Config{}, fmt.Errorf("--kind %q: expected %s or %s", kind, head.KindLinear, head.KindMLP)
	}
	return head.DefaultConfig(kind), nil
}

// printSkip reports an image an extraction could not use, one line each,
// always (also when quiet): it is data the user must know about, not
// progress.
func printSkip(prog *progress.Line) func(pipeline.Failure) {
	return func(f pipeline.Failure) { prog.Printf("skipped %s: %v\n", f.Path, f.Err) }
}
