package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/internal/progress"
	"github.com/headtune/headtune/job"
)

func facesCommand() *cli.Command {
	return &cli.Command{
		Name:      "faces",
		Usage:     "list the faces found in photos (and draw them with --annotate): check the detector on your own pictures",
		ArgsUsage: "IMAGE|FOLDER...",
		Flags: append(faceFlags(),
			&cli.StringFlag{Name: "annotate", Usage: "write a copy of each image with its faces drawn into this `DIR`"},
		),
		Action: runFaces,
	}
}

// faceFlags set the face recipe (imaging.FaceSpec) where faces are
// detected for a new recipe (faces, extract --faces).
func faceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "detector", Value: "blazeface", Usage: "installed face detector (headtune models pull blazeface)"},
		&cli.Float64Flag{Name: "face-threshold", Value: faces.DefaultThreshold, Usage: "lowest detection score kept (0..1)"},
		&cli.Float64Flag{Name: "face-min-size", Value: faces.DefaultMinSize, Usage: "smallest face kept, pixels (larger side of its box)"},
		&cli.Float64Flag{Name: "face-margin", Value: faces.DefaultMargin, Usage: "crop margin on each side, as a fraction of the box's larger side"},
		&cli.StringFlag{Name: "face-align", Value: faces.DefaultAlign, Usage: "eyes (rotate so the eyes are level) or none (upright crops)"},
		&cli.StringFlag{Name: "face-suppression", Value: faces.DefaultSuppression, Usage: "blend (MediaPipe's weighted merge of overlapping boxes) or nms"},
	}
}

// faceOptions reads faceFlags.
func faceOptions(c *cli.Context, all bool) *job.FaceOptions {
	return &job.FaceOptions{
		Detector: c.String("detector"), Threshold: c.Float64("face-threshold"), MinSize: c.Float64("face-min-size"),
		Margin: c.Float64("face-margin"), NoMargin: c.Float64("face-margin") == 0,
		Align: c.String("face-align"), Suppression: c.String("face-suppression"), All: all,
	}
}

// facesSelectFlags are --faces [largest|all] (see cliargs.FacesArgs).
func facesSelectFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "faces", Usage: what},
		&cli.BoolFlag{Name: "faces-all", Hidden: true, Usage: "set by --faces all"},
		&cli.BoolFlag{Name: "faces-largest", Hidden: true, Usage: "set by --faces largest"},
	}
}

func runFaces(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("faces needs images or folders")
	}
	prog := progress.New("faces", c.Bool("quiet") || c.Bool("json"))
	res, err := job.FindFaces(c.Context, job.FindFacesOptions{
		Env: env(c), Inputs: c.Args().Slice(), Faces: *faceOptions(c, false), AnnotateDir: c.String("annotate"),
		Progress: func(done, total int) { prog.Update(done, total, done, "") },
	})
	prog.Done()
	if err != nil {
		return err
	}
	for _, im := range res.Images {
		if im.Error != "" {
			fmt.Fprintf(os.Stderr, "headtune: %s\n", im.Error)
		}
	}
	if c.Bool("json") {
		return printJSON(res)
	}
	res.WriteTable(os.Stdout)
	res.WriteSummary(os.Stderr, c.String("annotate"))
	if res.Failed > 0 && res.Failed == len(res.Images) {
		return &exitError{code: 1, err: fmt.Errorf("no image could be read")}
	}
	return nil
}

// faceHead reports whether predict runs a head trained on faces (its rows
// then carry face columns).
func faceHead(headPath, exportPath string) bool {
	return exportPath == "" && job.IsFaceHead(headPath)
}

// extractFaceOptions is extract's face mode: nil without --faces.
func extractFaceOptions(c *cli.Context) *job.FaceOptions {
	if !c.Bool("faces") {
		return nil
	}
	return faceOptions(c, c.Bool("faces-all"))
}
