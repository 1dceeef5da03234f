package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/atomicfile"
	"github.com/headtune/headtune/pipeline"
	"github.com/headtune/headtune/predictions"
)

// FaceOptions choose the face recipe (imaging.FaceSpec) for Extract and
// FindFaces. Zero fields take the package faces defaults.
type FaceOptions struct {
	// Detector is the installed face detector's name; empty: "blazeface".
	Detector string
	// Threshold is the lowest detection score kept (0..1); MinSize the
	// smallest face kept (pixels, larger side of its box); Margin widens
	// the square crop by this fraction of the box's larger side on each
	// side. Zero: faces.DefaultThreshold, DefaultMinSize, DefaultMargin
	// (use NoMargin for a margin of 0).
	Threshold, MinSize, Margin float64
	NoMargin                   bool
	// Align is "eyes" or "none"; Suppression "blend" or "nms". Empty: the
	// defaults (eyes, blend).
	Align, Suppression string
	// All takes every face of each image as a sample (Extract); otherwise
	// the largest.
	All bool
}

// recipe is the FaceSpec o describes for detector d.
func (o FaceOptions) recipe(d *faces.Detector) (imaging.FaceSpec, error) {
	s := faces.DefaultSpec(d.SHA256())
	if o.Threshold != 0 {
		s.Threshold = float32(o.Threshold)
	}
	if o.MinSize != 0 {
		s.MinSize = float32(o.MinSize)
	}
	if o.Margin != 0 || o.NoMargin {
		s.Margin = float32(o.Margin)
	}
	if o.Align != "" {
		s.Align = o.Align
	}
	if o.Suppression != "" {
		s.Suppression = o.Suppression
	}
	return s, s.Validate()
}

// openDetector opens the named detector (or the one a recipe was made with,
// when recipe is not nil) for the pipeline: one ONNX Runtime thread per
// call, as the pipeline runs one detection per core at once.
func (e Env) openDetector(name string, recipe *imaging.FaceSpec, threads int) (*faces.Detector, error) {
	if err := e.InitRuntime(); err != nil {
		return nil, err
	}
	store, err := e.Store()
	if err != nil {
		return nil, err
	}
	opt := e.Session
	opt.Threads = threads
	if recipe != nil {
		return faces.OpenDetectorFor(store, *recipe, opt)
	}
	if name == "" {
		name = "blazeface"
	}
	return faces.OpenDetector(store, name, opt)
}

// FindFacesOptions configure FindFaces.
type FindFacesOptions struct {
	Env
	// Inputs are image files and folders (walked recursively).
	Inputs []string
	// Faces chooses the detector and its threshold, suppression and
	// minimum size (crop settings do not matter here).
	Faces FaceOptions
	// AnnotateDir, when set, receives a JPEG copy of every image with its
	// faces drawn.
	AnnotateDir string
	// Progress is called after each image.
	Progress func(done, total int)
}

// FindFaces lists the faces in images: what `headtune faces` shows, to
// check the detector on one's own photos. Unreadable images are reported in
// their entry and counted.
func FindFaces(ctx context.Context, opt FindFacesOptions) (*faces.FindResult, error) {
	if len(opt.Inputs) == 0 {
		return nil, errors.New("faces needs images or folders")
	}
	d, err := opt.openDetector(opt.Faces.Detector, nil, opt.Session.Threads)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	spec, err := opt.Faces.recipe(d)
	if err != nil {
		return nil, err
	}
	return faces.Find(ctx, faces.FindOptions{Paths: opt.Inputs, Detector: d, Spec: spec, AnnotateDir: opt.AnnotateDir, Progress: opt.Progress})
}

// extractFaces is Extract in face mode (opt.Faces set).
func extractFaces(ctx context.Context, opt ExtractOptions, ds *imaging.Dataset, root string) (*ExtractResult, error) {
	d, err := opt.openDetector(opt.Faces.Detector, nil, 1)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	spec, err := opt.Faces.recipe(d)
	if err != nil {
		return nil, err
	}
	bo := opt.Backbone
	bo.faces = spec
	bb, err := opt.openBackbone(bo, false)
	if err != nil {
		return nil, err
	}
	defer bb.Close()
	sum, err := pipeline.ExtractFaces(ctx, bb, d, opt.Faces.All, ds, pipeline.ExtractOptions{
		CacheRoot: root, WaitLock: opt.WaitLock, Progress: opt.Progress, OnSkip: opt.OnSkip,
	})
	if sum == nil {
		return nil, err
	}
	res := &ExtractResult{ExtractSummary: *sum, Backbone: bb.Name, FeatureTensor: bb.Choice.Tensor}
	if err != nil {
		return res, err
	}
	if sum.Faces == 0 {
		return res, fmt.Errorf("%s: no face found in any of the %d images (see the skipped files)", ds.Root, sum.Images)
	}
	return res, nil
}

// evalExtractFaces extracts a labelled folder in face mode for Eval (the
// head's recipe has a face stage) and returns the view written.
func evalExtractFaces(ctx context.Context, opt EvalOptions, bb *pipeline.Backbone, ds *imaging.Dataset, root string) (string, error) {
	d, err := opt.openDetector("", &bb.Spec.Faces, 1)
	if err != nil {
		return "", err
	}
	defer d.Close()
	sum, err := pipeline.ExtractFaces(ctx, bb, d, opt.AllFaces, ds, pipeline.ExtractOptions{
		CacheRoot: root, KeepLastRun: true, Progress: opt.Progress, OnSkip: opt.OnSkip,
	})
	if err != nil {
		return "", err
	}
	return sum.View, nil
}

// predictFaces is Predict for a head trained on face crops: one row per
// face (every face, or the largest with LargestFace), one row saying "no
// face found" for an image without any, and annotated copies with
// AnnotateDir.
// guard, when not nil, rescores each face from its features as it does
// whole images (domain check, prediction sets).
func predictFaces(ctx context.Context, opt PredictOptions, m *head.Model, guard *headGuard, bb *pipeline.Backbone, paths []string, res *PredictResult) error {
	if opt.Resume || opt.Embeddings {
		return errors.New("predict on faces: --resume and --embeddings are not available")
	}
	d, err := opt.openDetector("", &bb.Spec.Faces, 1)
	if err != nil {
		return err
	}
	defer d.Close()
	fr := &pipeline.FaceRunner{Detector: d, Session: bb.Session, Spec: bb.Spec, All: !opt.LargestFace, Workers: bb.Inferers}
	var ann *annotator
	if opt.AnnotateDir != "" {
		if err := os.MkdirAll(opt.AnnotateDir, 0o755); err != nil {
			return fmt.Errorf("annotate %s: %w", opt.AnnotateDir, err)
		}
		ann = &annotator{dir: opt.AnnotateDir, names: map[string]int{}}
	}
	threshold := float32(opt.Threshold)
	last := ""
	err = pipeline.PredictFaces(ctx, fr, paths, func(outs [][]float32, n int, probs []float32) error {
		return m.PredictBatch(outs[0], n, probs)
	}, pipeline.PredictOptions{Classes: len(m.Classes), TopK: opt.TopK, Embeddings: guard != nil, FeatureOut: 0}, func(p pipeline.FacePrediction) error {
		if p.Path != last {
			res.Images++
			last = p.Path
			if ann != nil {
				if err := ann.flush(); err != nil {
					return err
				}
				ann.path = p.Path
			}
			if opt.Progress != nil {
				opt.Progress(res.Images, len(paths))
			}
		}
		pr := pipeline.Prediction{Path: p.Path, Classes: p.Classes, Probs: p.Probs, Features: p.Features, Err: p.Err}
		row := RowOf(pr, m.Classes, threshold)
		if guard != nil && p.Err == nil {
			row = guard.row(pr, threshold)
		}
		switch {
		case errors.Is(p.Err, pipeline.ErrNoFace):
			res.NoFace++
		case p.Err != nil:
			res.Failed++
			if opt.OnError != nil {
				opt.OnError(p.Path, p.Err)
			}
		default:
			res.Faces++
			b := p.Box.Box
			row.Face = &predictions.Face{Index: p.Face, X: b.X, Y: b.Y, W: b.W, H: b.H, Score: p.Box.Score}
			if ann != nil {
				ann.faces = append(ann.faces, faces.Annotation{Face: p.Box, Label: fmt.Sprintf("%s %.2f", row.Class, row.Probability)})
			}
		}
		return opt.Out.Write(row)
	})
	if err == nil && ann != nil {
		err = ann.flush()
	}
	return err
}

// annotator collects one image's predicted faces and writes the image with
// them drawn.
type annotator struct {
	dir   string
	path  string
	faces []faces.Annotation
	names map[string]int
}

func (a *annotator) flush() error {
	if a.path == "" {
		return nil
	}
	defer func() { a.path, a.faces = "", a.faces[:0] }()
	img, err := imaging.DecodeFile(a.path, imaging.DecodeOptions{})
	if err != nil {
		return nil // its row says why already
	}
	m, err := faces.Annotate(img, a.faces)
	if err != nil {
		return err
	}
	stem := strings.TrimSuffix(filepath.Base(a.path), filepath.Ext(a.path))
	a.names[stem]++
	if n := a.names[stem]; n > 1 {
		stem = fmt.Sprintf("%s-%d", stem, n)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 88}); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(a.dir, stem+".jpg"), b.Bytes()); err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	return nil
}

// exportFaces builds the face model (export.BuildFaces) for a head trained
// on faces.
func exportFaces(opt ExportOptions, m *head.Model, bb *pipeline.Backbone) (*onnxpb.ModelProto, error) {
	if opt.WithFeatures {
		return nil, errors.New("export --faces: the feature output is not available for face models")
	}
	store, err := opt.Store()
	if err != nil {
		return nil, err
	}
	inst, err := store.List()
	if err != nil {
		return nil, err
	}
	var detPath string
	for _, in := range inst {
		if in.Meta.SHA256 == bb.Spec.Faces.DetectorSHA256 {
			detPath = in.ModelPath()
		}
	}
	if detPath == "" {
		return nil, fmt.Errorf("export --faces: the face detector the head was trained with (sha256 %.12s...) is not installed: run `headtune models pull blazeface`", bb.Spec.Faces.DetectorSHA256)
	}
	det, err := backbone.ReadModelFile(detPath)
	if err != nil {
		return nil, err
	}
	cls, err := export.Build(bb.Cut, bb.Spec, m, export.Options{WithPreprocessing: true, Version: opt.Version})
	if err != nil {
		return nil, err
	}
	out, err := export.BuildFaces(cls, det, bb.Spec, export.FacesOptions{PhotoSize: opt.PhotoSize})
	return out, err
}

// IsFaceHead reports whether the head file at path was trained on face
// crops (its recipe has a face stage). An unreadable head gives false: the
// job that opens it reports why.
func IsFaceHead(path string) bool {
	path = headOrDefault(path)
	m, err := head.Load(path)
	if err != nil {
		return false
	}
	spec, err := imaging.ParseSpec(m.Backbone.Preprocess)
	return err == nil && !spec.Faces.IsZero()
}
