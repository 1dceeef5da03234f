package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/pipeline"
)

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "list, verify, repair and export the feature cache",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "the backbones with cached features",
				Action: func(c *cli.Context) error {
					root, err := cacheRoot(c)
					if err != nil {
						return err
					}
					infos, err := featcache.List(root)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(infos)
					}
					for _, in := range infos {
						fmt.Fprintf(os.Stdout, "%s\n", formatInfo(in))
					}
					fmt.Fprintf(os.Stdout, "cache: %s\n", root)
					return nil
				},
			},
			{
				Name:      "verify",
				Usage:     "check every cached row against its checksum and the index against the data (all backbones when no folder is given)",
				ArgsUsage: "[DIR...]",
				Action:    func(c *cli.Context) error { return verifyOrRepair(c, false) },
			},
			{
				Name:      "repair",
				Usage:     "drop cached rows that cannot be trusted (they are recomputed by the next extract)",
				ArgsUsage: "[DIR...]",
				Action:    func(c *cli.Context) error { return verifyOrRepair(c, true) },
			},
			{
				Name:  "export-npy",
				Usage: "write the last extract's features and labels as NumPy files, split as train splits them",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "features-npy", Usage: "output folder"},
					&cli.StringFlag{Name: "view", Usage: "dataset view file (default: the last extract's)"},
					&cli.Float64Flag{Name: "val", Value: 0.1},
					&cli.Float64Flag{Name: "test", Value: 0.1},
					&cli.Int64Flag{Name: "seed", Value: 1},
				},
				Action: runExportNPY,
			},
		},
	}
}

func formatInfo(in featcache.Info) string {
	if in.Err != nil {
		return fmt.Sprintf("%s  unreadable: %v", in.Dir, in.Err)
	}
	return fmt.Sprintf("%s  %d rows x %d (%s of float32)  tensor %s  model %.12s  views %s",
		in.Dir, in.Rows, in.Identity.Dim, bytesize.Format(in.DataBytes), in.Identity.FeatureTensor, in.Identity.ModelHash, strings.Join(in.Views, ", "))
}

func cacheDirs(c *cli.Context) ([]string, error) {
	if c.NArg() > 0 {
		return c.Args().Slice(), nil
	}
	root, err := cacheRoot(c)
	if err != nil {
		return nil, err
	}
	infos, err := featcache.List(root)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, in := range infos {
		dirs = append(dirs, in.Dir)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no cached features in %s", root)
	}
	return dirs, nil
}

func verifyOrRepair(c *cli.Context, repair bool) error {
	dirs, err := cacheDirs(c)
	if err != nil {
		return err
	}
	bad := 0
	var reports []any
	for _, d := range dirs {
		if repair {
			rep, err := featcache.Repair(d)
			if err != nil {
				return err
			}
			reports = append(reports, rep)
			if !c.Bool("json") {
				fmt.Fprintf(os.Stdout, "%s: kept %d rows, dropped %d (bad record %d, out of order %d, out of range %d, bad row data %d, duplicate %d); the next extract recomputes dropped rows\n",
					d, rep.Kept, rep.Dropped(), rep.DroppedBadRecord, rep.DroppedOutOfOrder, rep.DroppedOutOfRange, rep.DroppedBadRow, rep.DroppedDuplicate)
			}
			continue
		}
		rep, err := featcache.Verify(d)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
		if !rep.OK() {
			bad++
		}
		if !c.Bool("json") {
			status := "ok"
			if !rep.OK() {
				status = "DAMAGED: " + strings.Join(rep.Problems, "; ")
			}
			fmt.Fprintf(os.Stdout, "%s: %s\n", d, status)
		}
	}
	if c.Bool("json") {
		printJSON(reports)
	}
	if bad > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d cache folders are damaged: run `headtune cache repair`", bad, len(dirs))}
	}
	return nil
}

func runExportNPY(c *cli.Context) error {
	root, err := cacheRoot(c)
	if err != nil {
		return err
	}
	f, err := pipeline.LoadFeatures(root, c.String("view"))
	if err != nil {
		return err
	}
	tr, va, te, err := splitData(f, c.Float64("val"), c.Float64("test"), c.Int64("seed"))
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, part := range []struct {
		name string
		rows []int
	}{{"train", tr}, {"val", va}, {"test", te}} {
		X := make([]float32, 0, len(part.rows)*f.D)
		y := make([]int32, 0, len(part.rows))
		for _, r := range part.rows {
			X = append(X, f.X[r*f.D:(r+1)*f.D]...)
			y = append(y, f.Labels[r])
		}
		if err := featcache.WriteNPYFloat32(filepath.Join(out, "X"+part.name+".npy"), X, len(part.rows), f.D); err != nil {
			return err
		}
		if err := featcache.WriteNPYInt32(filepath.Join(out, "y"+part.name+".npy"), y); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "classes.txt"), []byte(strings.Join(f.Classes, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cache: wrote %s/{X,y}{train,val,test}.npy (%d/%d/%d rows, %d-d) and classes.txt\n", out, len(tr), len(va), len(te), f.D)
	return nil
}

func baseName(p string) string {
	return strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
}
