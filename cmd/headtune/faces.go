package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/faces"
)

func facesCommand() *cli.Command {
	return &cli.Command{
		Name:      "faces",
		Usage:     "list the faces found in photos (and draw them with --annotate): check the detector on your own pictures",
		ArgsUsage: "IMAGE|FOLDER...",
		Flags: append(faceFlags(),
			&cli.StringFlag{Name: "annotate", Usage: "write a copy of each image with its faces drawn into this folder"},
		),
		Action: runFaces,
	}
}

// faceFlags set the face recipe (imaging.FaceSpec) wherever faces are
// detected.
func faceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "detector", Value: "blazeface", Usage: "installed face detector (`headtune models pull blazeface`)"},
		&cli.Float64Flag{Name: "face-threshold", Value: faces.DefaultThreshold, Usage: "lowest detection score kept (0..1)"},
		&cli.Float64Flag{Name: "face-min-size", Value: faces.DefaultMinSize, Usage: "smallest face kept, pixels (larger side of its box)"},
		&cli.Float64Flag{Name: "face-margin", Value: faces.DefaultMargin, Usage: "crop margin on each side, as a fraction of the box's larger side"},
		&cli.StringFlag{Name: "face-align", Value: faces.DefaultAlign, Usage: "eyes (rotate so the eyes are level) or none"},
		&cli.StringFlag{Name: "face-suppression", Value: faces.DefaultSuppression, Usage: "blend (MediaPipe's weighted merge of overlapping boxes) or nms"},
	}
}

// openFaceDetector loads ONNX Runtime and the --detector, and returns the
// recipe the flags describe for it.
func openFaceDetector(c *cli.Context) (*faces.Detector, faces.Spec, error) {
	if _, err := ort.Init(""); err != nil {
		return nil, faces.Spec{}, err
	}
	store, err := openStore(c)
	if err != nil {
		return nil, faces.Spec{}, err
	}
	d, err := faces.OpenDetector(store, c.String("detector"), sessionOptions(c))
	if err != nil {
		return nil, faces.Spec{}, err
	}
	spec := faces.DefaultSpec(d.SHA256())
	spec.Threshold = float32(c.Float64("face-threshold"))
	spec.MinSize = float32(c.Float64("face-min-size"))
	spec.Margin = float32(c.Float64("face-margin"))
	spec.Align = c.String("face-align")
	spec.Suppression = c.String("face-suppression")
	if err := spec.Validate(); err != nil {
		d.Close()
		return nil, faces.Spec{}, err
	}
	return d, spec, nil
}

func runFaces(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("faces needs images or folders")
	}
	d, spec, err := openFaceDetector(c)
	if err != nil {
		return err
	}
	defer d.Close()
	prog := newProgress("faces", c.Bool("quiet") || c.Bool("json"))
	res, err := faces.Find(c.Context, faces.FindOptions{
		Paths: c.Args().Slice(), Detector: d, Spec: spec, AnnotateDir: c.String("annotate"),
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
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tFACE\tX\tY\tW\tH\tSCORE\tRIGHT EYE\tLEFT EYE")
	for _, im := range res.Images {
		if im.Error != "" {
			continue
		}
		if len(im.Faces) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno face found\n", im.Path)
		}
		for i, f := range im.Faces {
			r, l := f.Keypoints[faces.RightEye], f.Keypoints[faces.LeftEye]
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%.0f,%.0f\t%.0f,%.0f\n", im.Path, i, f.Box.X, f.Box.Y, f.Box.W, f.Box.H, f.Score, r.X, r.Y, l.X, l.Y)
		}
	}
	tw.Flush()
	fmt.Fprintf(os.Stderr, "faces: %d faces in %d images", res.Faces, len(res.Images)-res.Failed)
	if res.Failed > 0 {
		fmt.Fprintf(os.Stderr, ", %d unreadable", res.Failed)
	}
	if dir := c.String("annotate"); dir != "" {
		fmt.Fprintf(os.Stderr, "; annotated copies in %s", dir)
	}
	fmt.Fprintln(os.Stderr)
	if res.Failed > 0 && res.Failed == len(res.Images) {
		return &exitError{code: 1, err: fmt.Errorf("no image could be read")}
	}
	return nil
}
