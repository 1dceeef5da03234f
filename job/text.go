package job

import (
	"fmt"
	"io"
	"time"

	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/pipeline"
)

// WriteText writes the plan's summary, as `headtune plan` shows it: the
// objects ignored, then the images, classes and shard sizes.
func (p *PlanResult) WriteText(w io.Writer) error {
	minN, maxN := p.Counts[0].Samples, p.Counts[0].Samples
	for _, s := range p.Counts {
		minN, maxN = min(minN, s.Samples), max(maxN, s.Samples)
	}
	if p.Ignored > 0 {
		fmt.Fprintf(w, "plan: %d objects ignored (not images, or outside class folders; first: %s)\n", p.Ignored, p.FirstIgnored)
	}
	_, err := fmt.Fprintf(w, "plan: %d images (%.1f MB) in %d classes -> %d shards of %d-%d images, %s\n",
		p.Samples, float64(p.Bytes)/1e6, len(p.Classes), p.Shards, minN, maxN, p.Location)
	return err
}

// WriteText writes the extraction's summary, as `headtune extract` shows
// it. faces adds the face counts (face mode); complete adds the classes,
// features and cache line, which a cancelled run leaves out.
func (r *ExtractResult) WriteText(w io.Writer, faces, complete bool) error {
	fmt.Fprintf(w, "extract: %d images: %s, %d reused from cache, %d skipped in %s\n",
		r.Images, pipeline.ComputedText(r.Computed, r.ImagesPerS), r.Reused, r.Skipped, seconds(r.Seconds))
	if faces {
		fmt.Fprintf(w, "extract: %d faces; no face found in %d of the images (skipped)\n", r.Faces, r.NoFace)
	}
	if complete {
		fmt.Fprintf(w, "extract: %d classes, %d-d features from %s (%s), cache %s\n", len(r.Classes), r.Dim, r.Backbone, r.FeatureTensor, r.CacheDir)
	}
	if a := r.Augmented; a != nil {
		_, err := fmt.Fprintf(w, "extract: %d augmented views of the training images made in %s, extracted: %s, %d reused from cache in %s\n",
			a.Images, seconds(r.AugmentSeconds), pipeline.ComputedText(a.Computed, a.ImagesPerS), a.Reused, seconds(a.Seconds))
		return err
	}
	return nil
}

// seconds is s seconds as a duration rounded to the millisecond.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// WriteText writes the export's summary, as `headtune export` shows it:
// the model's input and outputs, and a note per consumer that cannot run
// it. out is the file's name as the user gave it.
func (r *ExportResult) WriteText(w io.Writer, out string) error {
	if r.Faces {
		_, err := fmt.Fprintf(w, "export: %s (%s): photo [1,%d,%d,3] RGB 0..255, letterboxed -> boxes [K,4], scores [K], keypoints [K,12], probabilities [K,%d]\n",
			out, bytesize.Format(r.Bytes), r.PhotoSize, r.PhotoSize, len(r.Classes))
		return err
	}
	in := "normalised"
	if r.WithPreprocessing {
		in = "raw 0..255"
	}
	_, err := fmt.Fprintf(w, "export: %s (%s): %s %dx%d %s input -> probabilities [N,%d]\n",
		out, bytesize.Format(r.Bytes), r.Spec.Layout, r.Spec.Width, r.Spec.Height, in, len(r.Classes))
	for _, l := range r.Limits {
		_, err = fmt.Fprintf(w, "export: note: %s\n", l)
	}
	return err
}

// WriteText writes the model's path, what headtune export recorded in it
// (when it is one) and its inputs, outputs, opsets and feature tensor, as
// `headtune inspect` shows them.
func (r *InspectResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s\n", r.Path)
	if e := r.Export; e != nil {
		fmt.Fprintf(w, "headtune export: %s head (%d classes) on %s, feature vector %q (%d-d)\n", e.HeadKind, len(e.Classes), e.Backbone.ID, "features", e.FeatureDim)
	}
	return r.Info.WriteText(w)
}

// WriteText writes the one-line summary of the files written, as `headtune
// cache export-npy` shows it.
func (r *NPYResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "cache: wrote %s/{X,y}{train,val,test}.npy (%d/%d/%d rows, %d-d) and classes.txt\n", r.Out, r.Train, r.Val, r.Test, r.Dim)
	return err
}

// WriteText writes the report, as `headtune doctor` shows it, and where the
// HTML page went (when one was written).
func (r *DoctorResult) WriteText(w io.Writer) error {
	if err := r.Report.WriteText(w, r.Path); err != nil {
		return err
	}
	if r.HTML != "" {
		fmt.Fprintf(w, "\ndoctor: report with thumbnails written to %s\n", r.HTML)
	}
	return nil
}
