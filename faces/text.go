package faces

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable writes the faces found as an aligned table, one row per face
// (and one "no face found" row per image without any); unreadable images
// are left out (their Error is reported on its own). Box and eye positions
// are whole pixels of the displayed image.
func (r *FindResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tFACE\tX\tY\tW\tH\tSCORE\tRIGHT EYE\tLEFT EYE")
	for _, im := range r.Images {
		if im.Error != "" {
			continue
		}
		if len(im.Faces) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno face found\n", im.Path)
		}
		for i, f := range im.Faces {
			re, l := f.Keypoints[RightEye], f.Keypoints[LeftEye]
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%.0f,%.0f\t%.0f,%.0f\n", im.Path, i, f.Box.X, f.Box.Y, f.Box.W, f.Box.H, f.Score, re.X, re.Y, l.X, l.Y)
		}
	}
	return tw.Flush()
}

// WriteSummary writes one line counting the faces and readable images, the
// unreadable ones when there are any, and annotateDir when it is not empty
// (the folder the annotated copies went to).
func (r *FindResult) WriteSummary(w io.Writer, annotateDir string) error {
	fmt.Fprintf(w, "faces: %d faces in %d images", r.Faces, len(r.Images)-r.Failed)
	if r.Failed > 0 {
		fmt.Fprintf(w, ", %d unreadable", r.Failed)
	}
	if annotateDir != "" {
		fmt.Fprintf(w, "; annotated copies in %s", annotateDir)
	}
	_, err := fmt.Fprintln(w)
	return err
}
