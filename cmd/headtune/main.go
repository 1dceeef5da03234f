// Command headtune trains new image classifiers on top of frozen ONNX
// backbones: extract features once, train a pure-Go head in seconds, predict,
// and export one combined ONNX model. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging/turbojpeg"
	"github.com/headtune/headtune/models"
	_ "github.com/headtune/headtune/models/tfjs" // builds the registry-shipped backbones
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
	err := app.RunContext(ctx, interspersed(app, os.Args))
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
	return &cli.App{
		Name:    "headtune",
		Usage:   "transfer learning on images: frozen ONNX backbone + pure-Go head",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime shared library (default: $HEADTUNE_ORT_LIB, $ONNXRUNTIME_SHARED_LIBRARY_PATH, ./.deps, system)", EnvVars: []string{ort.LibraryEnv}},
			&cli.IntFlag{Name: "threads", Usage: "cores to use: concurrent single-threaded inference calls, and training workers (0: one per core)"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu or cuda"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress display"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable JSON summary on stdout"},
			&cli.StringFlag{Name: "cache", Usage: "feature cache folder (default $HEADTUNE_CACHE, $HEADTUNE_CACHE_DIR or ~/.cache/headtune/features)", EnvVars: []string{"HEADTUNE_CACHE", "HEADTUNE_CACHE_DIR"}},
			&cli.StringFlag{Name: "models-dir", Usage: "installed models folder (default $HEADTUNE_HOME/models or ~/.local/share/headtune/models)"},
		},
		Before: func(c *cli.Context) error {
			if lib := c.String("ort-lib"); lib != "" {
				os.Setenv(ort.LibraryEnv, lib)
			}
			return nil
		},
		Commands: []*cli.Command{
			extractCommand(),
			planCommand(),
			trainCommand(),
			evalCommand(),
			predictCommand(),
			exportCommand(),
			inspectCommand(),
			modelsCommand(),
			cacheCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // errors are printed once, in main
	}
}

// cacheRoot is --cache or the default feature cache folder.
func cacheRoot(c *cli.Context) (string, error) {
	if d := c.String("cache"); d != "" {
		return d, nil
	}
	return featcache.DefaultDir()
}

// openStore opens --models-dir or the default models folder.
func openStore(c *cli.Context) (*models.Store, error) {
	dir := c.String("models-dir")
	if dir == "" {
		var err error
		if dir, err = models.DefaultDir(); err != nil {
			return nil, err
		}
	}
	return models.OpenStore(dir)
}

func sessionOptions(c *cli.Context) ort.SessionOptions {
	return ort.SessionOptions{Threads: threads(c), Device: c.String("device"), Spinning: c.Bool("spin")}
}

func threads(c *cli.Context) int {
	if t := c.Int("threads"); t > 0 {
		return t
	}
	return runtime.NumCPU()
}

// printJSON writes v as indented JSON on stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// backboneFlags are shared by the commands that open a backbone.
func backboneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "backbone: an installed model name or an .onnx file (default: " + models.DefaultModel + ")"},
		&cli.StringFlag{Name: "feature-tensor", Usage: "read features from this tensor instead of the detected one"},
		&cli.StringFlag{Name: "preset", Usage: "preprocessing preset for a plain .onnx file: imagenet, unit, symmetric, raw, caffe"},
		&cli.StringFlag{Name: "input-size", Usage: "WxH for models with a dynamic input size"},
		&cli.BoolFlag{Name: "fast-jpeg", Usage: "decode JPEGs at a DCT-reduced scale (libjpeg-turbo); recorded in the preprocessing spec"},
		&cli.BoolFlag{Name: "spin", Usage: "let ONNX Runtime threads spin-wait (faster on an idle machine, slower beside decode workers)"},
		&cli.IntFlag{Name: "batch", Usage: "images per inference batch (0: 1 when each core decodes its own images, 16 with --workers)"},
		&cli.IntFlag{Name: "workers", Usage: "decode on this many goroutines of their own, handing batches to inference (0: each core decodes and runs its own batches)"},
	}
}

// openBackboneFromFlags opens --model (or the default) for extraction.
func openBackboneFromFlags(c *cli.Context, tuneLayers int, noSession bool) (*pipeline.Backbone, error) {
	store, err := openStore(c)
	if err != nil {
		return nil, err
	}
	ref := c.String("model")
	if ref == "" {
		ref = models.DefaultModel
		if _, err := store.Get(ref); err != nil {
			return nil, fmt.Errorf("the default backbone %s is not installed: run `headtune models pull %s` (or pass --model FILE.onnx)", ref, ref)
		}
	}
	if err := checkFastJPEG(c.Bool("fast-jpeg"), "extract"); err != nil {
		return nil, err
	}
	w, h, err := parseSize(c.String("input-size"))
	if err != nil {
		return nil, err
	}
	return pipeline.OpenBackbone(ref, pipeline.BackboneOptions{
		Store:         store,
		FeatureTensor: c.String("feature-tensor"),
		Preset:        c.String("preset"),
		Width:         w,
		Height:        h,
		FastJPEG:      c.Bool("fast-jpeg"),
		TuneLayers:    tuneLayers,
		Session:       sessionOptions(c),
		NoSession:     noSession,
	})
}

func parseSize(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	var w, h int
	if n, err := fmt.Sscanf(s, "%dx%d", &w, &h); n != 2 || err != nil || w <= 0 || h <= 0 {
		if n, err := fmt.Sscanf(s, "%d", &w); n == 1 && err == nil && w > 0 {
			return w, w, nil
		}
		return 0, 0, fmt.Errorf("--input-size %q: expected WxH, e.g. 224x224", s)
	}
	return w, h, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// checkFastJPEG refuses a FastJPEG recipe on a machine without
// libjpeg-turbo: the pure-Go fallback decodes at full size, so features
// would not match the ones the recipe stands for.
func checkFastJPEG(fast bool, what string) error {
	if !fast || turbojpeg.Available() {
		return nil
	}
	return fmt.Errorf("%s uses --fast-jpeg (DCT-domain JPEG scaling), which needs libjpeg-turbo: install libturbojpeg0 (`make setup` does) or set %s; without it JPEG pixels would differ from the recorded recipe (%v)", what, turbojpeg.EnvLibrary, turbojpeg.LoadError())
}
