package job

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/image/draw"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/head/audit"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/atomicfile"
	"github.com/headtune/headtune/pipeline"
)

// DoctorOptions configure Doctor.
type DoctorOptions struct {
	Env
	// Dataset is a dataset folder extracted before (its cached view is
	// used); empty: the cache's latest extraction. View, when set, names
	// the view file directly.
	Dataset, View string
	// Check configures the checks (folds, seed, thresholds, the head kind
	// used for out-of-fold predictions).
	Check audit.Options
	// HTML, when set, is where to write a self-contained page with
	// thumbnails of the images the report lists.
	HTML string
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DoctorResult is a doctor report with the images' paths.
type DoctorResult struct {
	Dataset string        `json:"dataset"`
	Report  *audit.Report `json:"report"`
	Paths   []string      `json:"paths"` // dataset-relative path of every row the report mentions, by row
	HTML    string        `json:"html,omitempty"`
}

// Path returns the dataset-relative path of row i.
func (r *DoctorResult) Path(i int) string {
	if i >= 0 && i < len(r.Paths) && r.Paths[i] != "" {
		return r.Paths[i]
	}
	return fmt.Sprintf("row %d", i)
}

// Doctor checks a dataset's cached features for likely mislabelled images,
// near-duplicates (within a class, across classes, between train and
// val/test), outliers and class imbalance (audit.Check), and optionally
// writes an HTML page with thumbnails.
func Doctor(ctx context.Context, opt DoctorOptions) (*DoctorResult, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	view := opt.View
	dataset := opt.Dataset
	if view == "" && dataset != "" {
		run, err := pipeline.ReadLastRun(root)
		if err != nil {
			return nil, fmt.Errorf("doctor %s: %w", dataset, err)
		}
		view = filepath.Join(run.CacheDir, "views", pipeline.ViewName(dataset)+".csv")
		if _, err := os.Stat(view); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("doctor %s: no cached features for this dataset with the last extract's backbone (%s): run `headtune extract %s` first", dataset, run.Model, dataset)
		}
	}
	f, err := pipeline.LoadFeatures(root, view)
	if err != nil {
		return nil, err
	}
	if dataset == "" {
		dataset = f.Run.Dataset
	}
	chk := opt.Check
	if chk.Log == nil {
		chk.Log = opt.Log
	}
	if chk.Config.Kind == "" {
		chk.Config = head.DefaultConfig(head.KindLinear)
	}
	rep, err := audit.Check(ctx, audit.Input{X: f.X, N: f.N, D: f.D, Labels: f.Labels, Classes: f.Classes, Splits: f.Splits}, chk)
	if err != nil {
		return nil, err
	}
	res := &DoctorResult{Dataset: dataset, Report: rep, Paths: make([]string, f.N)}
	mention := func(i int) { res.Paths[i] = f.Paths[i] }
	for _, s := range rep.Suspects {
		mention(s.Row)
	}
	for _, p := range rep.Duplicates {
		mention(p.A)
		mention(p.B)
	}
	for _, o := range rep.Outliers {
		mention(o.Row)
	}
	if opt.HTML != "" {
		var b bytes.Buffer
		thumb := func(i int) string {
			if res.Paths[i] == "" || dataset == "" {
				return ""
			}
			uri, err := Thumbnail(filepath.Join(dataset, res.Paths[i]), 96)
			if err != nil {
				return ""
			}
			return uri
		}
		if err := rep.WriteHTML(&b, res.Path, thumb); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(opt.HTML, b.Bytes()); err != nil {
			return nil, fmt.Errorf("doctor: write %s: %w", opt.HTML, err)
		}
		res.HTML = absPath(opt.HTML)
	}
	return res, nil
}

// Thumbnail decodes an image file and returns it scaled to fit side×side
// pixels as a PNG data: URI.
func Thumbnail(path string, side int) (string, error) {
	img, err := imaging.DecodeFile(path, imaging.DecodeOptions{})
	if err != nil {
		return "", err
	}
	src := image.NewRGBA(image.Rect(0, 0, img.W, img.H))
	for i := 0; i < img.W*img.H; i++ {
		src.Pix[4*i], src.Pix[4*i+1], src.Pix[4*i+2], src.Pix[4*i+3] = img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2], 255
	}
	w, h := img.W, img.H
	if w > side || h > side {
		if w >= h {
			w, h = side, max(1, img.H*side/img.W)
		} else {
			w, h = max(1, img.W*side/img.H), side
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	var b bytes.Buffer
	if err := png.Encode(&b, dst); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes()), nil
}
