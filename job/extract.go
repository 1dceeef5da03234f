package job

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

// BackboneOptions name a backbone and how to read features from it.
type BackboneOptions struct {
	// Model is an installed model's name or an .onnx file; empty:
	// models.DefaultModel, which must be installed.
	Model string
	// FeatureTensor overrides the detected feature tensor.
	FeatureTensor string
	// Preset is the preprocessing preset of a plain .onnx file (one of
	// imaging.PresetNames; "imagenet" when empty). Installed models carry
	// their own recipe.
	Preset string
	// Width and Height give the input size of a model whose size is
	// dynamic (pixels).
	Width, Height int
	// FastJPEG decodes JPEGs at a DCT-reduced scale (needs libjpeg-turbo);
	// it is part of the recipe, so features differ from full decoding.
	FastJPEG bool
	// TuneLayers cuts before the backbone's last K dense layers, or before
	// the last K convolutions when the features are a globally pooled conv
	// map (the map they read is cached, flattened), so that Train
	// fine-tunes them (pipeline.BackboneOptions.TuneLayers).
	TuneLayers int

	faces imaging.FaceSpec // set by Extract in face mode
}

// ExtractOptions configure Extract.
type ExtractOptions struct {
	Env
	Backbone BackboneOptions
	// Dataset is a folder of class folders, a folder of train/val/test
	// split folders, or a path,label CSV manifest; local, or an object
	// storage URL (s3://bucket/prefix, a manifest object, file:///folder).
	Dataset string
	// BatchSize is images per inference call (0: pipeline.DefaultBatch);
	// Workers is separate decode goroutines (0: each core decodes and runs
	// its own batches).
	BatchSize, Workers int
	// WaitLock waits for another extract on the same cache folder instead
	// of refusing.
	WaitLock bool
	// OnIgnored is called, before extraction, for every file the dataset
	// passes over (not an image, outside class folders).
	OnIgnored func(imaging.Skipped)
	// Progress and OnSkip are pipeline.ExtractOptions' callbacks.
	Progress func(pipeline.ExtractProgress)
	OnSkip   func(pipeline.Failure)
	// Faces, when set, makes every sample a face: each image contributes
	// its largest face (or every face), cropped as the recipe says; images
	// without a face are skipped with the reason "no face found" and
	// counted (ExtractSummary.NoFace).
	Faces *FaceOptions
	// Augment > 0 also caches that many augmented views of every training
	// image (imaging.DefaultAugment, seeded by AugmentSeed; images under
	// val/ or test/ get none), recorded beside the dataset's view so that
	// Train adds them to the training rows only. 0 removes the record of
	// an earlier augmented extract of the same dataset.
	Augment     int
	AugmentSeed int64
}

// ExtractResult reports an extraction.
type ExtractResult struct {
	pipeline.ExtractSummary
	// Backbone is the backbone's name; FeatureTensor the tensor the
	// features come from.
	Backbone      string `json:"backbone"`
	FeatureTensor string `json:"feature_tensor"`
	// Augmented reports the extraction of the augmented views (nil
	// without Augment).
	Augmented *pipeline.ExtractSummary `json:"augmented,omitempty"`
	// AugmentSeconds is the time spent decoding, augmenting and writing the
	// views (before their extraction, which Augmented times).
	AugmentSeconds float64 `json:"augment_seconds,omitempty"`
}

// Extract computes and caches the backbone features of every image of a
// labelled dataset and records it as the cache's latest extraction, which
// Train reads by default. A dataset with fewer than two classes is refused
// before any work: no classifier can be trained on it. Unreadable images are
// reported through OnSkip and left out; an extraction in which no image
// could be used is an error. On cancellation the result describes the
// partial run and the error is ctx.Err(); running again resumes.
func Extract(ctx context.Context, opt ExtractOptions) (*ExtractResult, error) {
	if pipeline.IsLocation(opt.Dataset) {
		return extractLocation(ctx, opt)
	}
	ds, err := imaging.OpenDataset(opt.Dataset)
	if err != nil {
		return nil, err
	}
	if err := checkClasses(ds.Root, ds.Classes); err != nil {
		return nil, err
	}
	opt.reportIgnored(ds.Ignored)
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	if opt.Faces != nil {
		if opt.Augment != 0 {
			return nil, errors.New("--augment is not available with --faces: augmented views are made of whole images, not of face crops")
		}
		return extractFaces(ctx, opt, ds, root)
	}
	bb, err := opt.openBackbone(opt.Backbone, false)
	if err != nil {
		return nil, err
	}
	defer bb.Close()
	sum, err := pipeline.Extract(ctx, bb, ds, pipeline.ExtractOptions{
		CacheRoot: root,
		BatchSize: opt.BatchSize,
		Workers:   opt.Workers,
		WaitLock:  opt.WaitLock,
		Progress:  opt.Progress,
		OnSkip:    opt.OnSkip,
	})
	if sum == nil {
		return nil, err
	}
	res := &ExtractResult{ExtractSummary: *sum, Backbone: bb.Name, FeatureTensor: bb.Choice.Tensor}
	if err != nil {
		return res, err
	}
	if sum.Computed+sum.Reused == 0 {
		return res, fmt.Errorf("%s: none of the %d images could be used (see the skipped files)", ds.Root, sum.Images)
	}
	if opt.Augment < 0 {
		return res, fmt.Errorf("--augment %d: want a number of views, 0 or more", opt.Augment)
	}
	if opt.Augment == 0 {
		if err := os.Remove(augmentRecordPath(sum.View)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, err
		}
		return res, nil
	}
	asum, made, err := opt.extractAugmented(ctx, bb, ds, root, sum.View)
	res.Augmented, res.AugmentSeconds = asum, made
	return res, err
}

// checkClasses refuses dataset name when no classifier can be trained on
// its classes (fewer than two), before any work.
func checkClasses(name string, classes []string) error {
	if len(classes) >= 2 {
		return nil
	}
	have := "no classes found"
	if len(classes) == 1 {
		have = fmt.Sprintf("only one class (%s)", strings.Join(classes, ""))
	}
	return fmt.Errorf("%s: %s: a classifier needs at least two classes (one folder of images per class)", name, have)
}

// reportIgnored hands every file the dataset passed over to OnIgnored.
func (o ExtractOptions) reportIgnored(ignored []imaging.Skipped) {
	if o.OnIgnored != nil {
		for _, ig := range ignored {
			o.OnIgnored(ig)
		}
	}
}

// openBackbone opens a backbone for extraction (or, with noSession, for
// reading its graph).
func (e Env) openBackbone(b BackboneOptions, noSession bool) (*pipeline.Backbone, error) {
	store, err := e.Store()
	if err != nil {
		return nil, err
	}
	ref := b.Model
	if ref == "" {
		ref = models.DefaultModel
		if _, err := store.Get(ref); err != nil {
			return nil, fmt.Errorf("the default backbone %s is not installed: run `headtune models pull %s` (or pass --model FILE.onnx)", ref, ref)
		}
	} else if !pipeline.IsModelFile(ref) {
		in, err := store.Get(ref)
		if err != nil {
			return nil, unknownModel(ref, err)
		}
		if in.Meta.Task == models.TaskFaceDetector {
			return nil, fmt.Errorf("%s is a face detector, not a backbone: it finds the faces that --faces crops for a backbone (e.g. --faces --model face-expression)", ref)
		}
	}
	if err := CheckFastJPEG(b.FastJPEG, "extract"); err != nil {
		return nil, err
	}
	if !noSession {
		if err := e.InitRuntime(); err != nil {
			return nil, err
		}
	}
	return pipeline.OpenBackbone(ref, pipeline.BackboneOptions{
		Store:         store,
		FeatureTensor: b.FeatureTensor,
		Preset:        b.Preset,
		Width:         b.Width,
		Height:        b.Height,
		FastJPEG:      b.FastJPEG,
		TuneLayers:    b.TuneLayers,
		Faces:         b.faces,
		Session:       e.Session,
		NoSession:     noSession,
	})
}

// unknownModel adds close catalog names to a store lookup failure.
func unknownModel(name string, err error) error {
	if _, lerr := models.Lookup(name); lerr == nil {
		return err // a catalog model that is not installed: err says how to pull it
	}
	if near := models.Suggest(name); len(near) > 0 {
		return fmt.Errorf("%w; did you mean %s? (`headtune models list` shows the catalog)", err, strings.Join(near, " or "))
	}
	return fmt.Errorf("%w (`headtune models list` shows the catalog)", err)
}
