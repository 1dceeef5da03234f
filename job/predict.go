package job

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/pipeline"
	"github.com/headtune/headtune/predictions"
)

// PredictOptions configure Predict.
type PredictOptions struct {
	Env
	// Head is a head file, run behind its own backbone; Export is an ONNX
	// file made by Export, run as it is. Exactly one may be set; neither
	// means Head = DefaultHead.
	Head, Export string
	// Inputs are image files and folders (walked recursively).
	Inputs []string
	// TopK is how many classes each row lists (0: 1).
	TopK int
	// Threshold, when > 0, makes a row's class predictions.Unknown when
	// the top probability is below it.
	Threshold float64
	// Embeddings adds each image's feature vector to its row.
	Embeddings bool
	// Coverage, in (0, 1), adds to each row the prediction set that holds
	// the true class with this probability (split- or cross-conformal, from
	// the scores the head recorded at training). Heads only.
	Coverage float64
	// BatchSize and Workers are as in ExtractOptions.
	BatchSize, Workers int
	// Out receives one row per image, in input order, unless OutFile is
	// set. Predict does not close it.
	Out predictions.Writer
	// OutFile is a file to write the rows to instead (created with its
	// folder once the model is open, so that a job that cannot start
	// leaves no file), in OutFormat (empty: by its extension, see
	// predictions.ForPath). Resume keeps its rows and skips their images.
	OutFile, OutFormat string
	Resume             bool
	// Done lists paths already predicted; they are not run again (Resume
	// fills it from OutFile).
	Done map[string]bool
	// Progress is called after every row with the rows written and the
	// total of this run.
	Progress func(done, total int)
	// OnError is called for every file that could not be read or decoded
	// (its row, with the error, goes to Out as well).
	OnError func(path string, err error)
	// With a head trained on faces, each face gets a row (with its box in
	// Row.Face) and an image without one a row saying "no face found".
	// LargestFace keeps only each image's largest face; AnnotateDir, when
	// set, receives a copy of every image with each face's box, class and
	// probability drawn.
	LargestFace bool
	AnnotateDir string
}

// PredictResult reports a prediction run.
type PredictResult struct {
	Images  int      `json:"images"`  // images run in this call
	Failed  int      `json:"failed"`  // of them, files that could not be read or decoded
	Resumed int      `json:"resumed"` // inputs skipped because Done had them
	Classes []string `json:"classes"`
	// Face mode: faces classified, and images in which none was found.
	Faces  int `json:"faces,omitempty"`
	NoFace int `json:"no_face,omitempty"`
}

// ErrSomeFailed is wrapped by Predict's error when some files could not be
// read or decoded (their rows carry the reasons); every other file has a
// row.
var ErrSomeFailed = errors.New("some images could not be read or decoded")

// predictor is what Predict runs: a runner, how to score its outputs, and
// the class names.
type predictor struct {
	runner     *pipeline.Runner
	score      pipeline.Scorer
	classes    []string
	featureOut int
	close      func()
	model      *head.Model // set for a head: rows are scored from features with its domain guard
	// bb is set for a head trained on faces: Predict then runs
	// predictFaces with model instead of runner.
	bb *pipeline.Backbone
}

// Predict classifies images with a head (behind the backbone and
// preprocessing it records) or with an exported model, writing one row per
// image to opt.Out as it goes.
func Predict(ctx context.Context, opt PredictOptions) (*PredictResult, error) {
	if (opt.Out == nil) == (opt.OutFile == "") {
		return nil, errors.New("predict: give one output, a writer or a file")
	}
	if opt.Resume && opt.OutFile == "" {
		return nil, errors.New("resuming needs an output file: it skips the images already in that file")
	}
	if opt.Head != "" && opt.Export != "" {
		return nil, fmt.Errorf("both a head (%s) and an export (%s) were given: predict runs one of them", opt.Head, opt.Export)
	}
	if len(opt.Inputs) == 0 {
		return nil, errors.New("predict needs at least one image or folder")
	}
	// The model first: a wrong --head or --export is the mistake to
	// report, whatever the inputs.
	var p *predictor
	var err error
	if opt.Export != "" {
		p, err = opt.exportedPredictor(opt.Export, opt.Embeddings)
	} else {
		p, err = opt.headPredictor(opt.Head)
	}
	if err != nil {
		return nil, err
	}
	defer p.close()
	paths, read, closeInputs, err := predictInputs(ctx, opt.Inputs)
	if err != nil {
		return nil, err
	}
	defer closeInputs()
	if len(paths) == 0 {
		return nil, fmt.Errorf("no images found in %s", strings.Join(opt.Inputs, ", "))
	}
	p.runner.BatchSize = opt.BatchSize
	p.runner.Workers = opt.Workers
	p.runner.Read = read

	var guard *headGuard
	if p.model != nil {
		if guard, err = newHeadGuard(p.model, opt); err != nil {
			return nil, err
		}
	} else if opt.Coverage != 0 {
		return nil, fmt.Errorf("--coverage needs a head (--head): an export does not carry the conformal scores of its head")
	}
	// An output URL is written to a local file and uploaded when the run
	// ends (also when it is interrupted, so that --resume continues it).
	var remote *remoteOut
	if objstore.IsURL(opt.OutFile) {
		if remote, err = openRemoteOut(ctx, opt.OutFile, opt.Resume); err != nil {
			return nil, err
		}
		defer remote.discard()
	}
	if opt.OutFile != "" {
		outPath := opt.OutFile
		if remote != nil {
			outPath = remote.local
		}
		f, err := predictions.Create(outPath, predictions.CreateOptions{
			Options: predictions.Options{Embeddings: opt.Embeddings, Sets: guard != nil, Faces: p.bb != nil}, Format: opt.OutFormat, Resume: opt.Resume,
		})
		if err != nil {
			return nil, err
		}
		defer f.Close()
		opt.Out = f
		if opt.Resume {
			if opt.Done == nil {
				opt.Done = map[string]bool{}
			}
			for k := range f.Done {
				opt.Done[k] = true
			}
		}
	}
	res := &PredictResult{Classes: p.classes}
	if len(opt.Done) > 0 {
		kept := paths[:0:0]
		for _, q := range paths {
			if !opt.Done[q] {
				kept = append(kept, q)
			}
		}
		res.Resumed = len(paths) - len(kept)
		paths = kept
	}
	if p.bb != nil {
		if err := predictFaces(ctx, opt, p.model, guard, p.bb, paths, res); err != nil {
			return res, err
		}
		if f, ok := opt.Out.(*predictions.File); ok {
			if err := f.Close(); err != nil {
				return res, err
			}
		}
		if res.Failed > 0 {
			return res, fmt.Errorf("%d of %d images: %w", res.Failed, res.Images, ErrSomeFailed)
		}
		return res, nil
	}
	if opt.AnnotateDir != "" || opt.LargestFace {
		return res, errors.New("annotated copies and the largest face need a head trained on faces (headtune extract --faces, then train)")
	}
	threshold := float32(opt.Threshold)
	err = pipeline.Predict(ctx, p.runner, paths, p.score, pipeline.PredictOptions{
		// a head's rows are rescored from their features (domain guard, sets)
		Classes: len(p.classes), TopK: opt.TopK, Embeddings: opt.Embeddings || guard != nil, FeatureOut: p.featureOut,
	}, func(pr pipeline.Prediction) error {
		res.Images++
		if pr.Err != nil {
			res.Failed++
			if opt.OnError != nil {
				opt.OnError(pr.Path, pr.Err)
			}
		}
		row := RowOf(pr, p.classes, threshold)
		if guard != nil && pr.Err == nil {
			row = guard.row(pr, threshold)
		}
		if err := opt.Out.Write(row); err != nil {
			return err
		}
		if opt.Progress != nil {
			opt.Progress(res.Images, len(paths))
		}
		return nil
	})
	if f, ok := opt.Out.(*predictions.File); ok {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if remote != nil {
			// Upload what was written, finished or not: the context may be
			// cancelled already, so the upload gets its own.
			if uerr := remote.upload(context.WithoutCancel(ctx)); uerr != nil && err == nil {
				err = uerr
			}
		}
	}
	if err != nil {
		return res, err
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%d of %d images: %w", res.Failed, res.Images, ErrSomeFailed)
	}
	return res, nil
}

// RowOf turns a pipeline prediction into an output row: class names, and
// predictions.Unknown when the top probability is below threshold (> 0).
func RowOf(p pipeline.Prediction, classes []string, threshold float32) predictions.Row {
	r := predictions.Row{Path: p.Path, Embedding: p.Features}
	if p.Err != nil {
		r.Error = p.Err.Error()
		return r
	}
	r.Class, r.Probability = classes[p.Classes[0]], p.Probs[0]
	if threshold > 0 && r.Probability < threshold {
		r.Class = predictions.Unknown
	}
	for j, ci := range p.Classes {
		r.TopK = append(r.TopK, predictions.Scored{Class: classes[ci], Probability: p.Probs[j]})
	}
	return r
}

// headPredictor runs the head's backbone (with the head's recorded
// preprocessing) and the head itself in Go.
func (e Env) headPredictor(path string) (*predictor, error) {
	path = headOrDefault(path)
	m, err := LoadHead(path)
	if err != nil {
		return nil, err
	}
	bb, err := e.openForHead(m, path, false)
	if err != nil {
		return nil, err
	}
	p := &predictor{
		runner:     &pipeline.Runner{Session: bb.Session, Spec: bb.Spec, Inferers: bb.Inferers},
		classes:    m.Classes,
		featureOut: 0,
		score: func(outs [][]float32, n int, probs []float32) error {
			return m.PredictBatch(outs[0], n, probs)
		},
		close: func() { bb.Close() },
		model: m,
	}
	if !bb.Spec.Faces.IsZero() {
		p.bb = bb
	}
	return p, nil
}

// exportedPredictor runs a combined model made by Export.
func (e Env) exportedPredictor(path string, embeddings bool) (*predictor, error) {
	if looksLikeHead(path) {
		return nil, fmt.Errorf("%s is a head file, not an ONNX export: pass it with --head %s", path, path)
	}
	if _, err := os.Stat(path); err != nil && !pipeline.IsModelFile(path) {
		return nil, fmt.Errorf("%s: no such file; predict runs an ONNX file made by `headtune export` (--export FILE.onnx) or a head (--head FILE); a backbone name such as %s belongs to `headtune extract --model`", path, path)
	}
	meta, mp, err := export.ReadMetadataFile(path)
	if errors.Is(err, export.ErrNotExport) {
		return nil, fmt.Errorf("%s is a plain ONNX model without headtune's metadata, not a model made by `headtune export`: extract features with it (`headtune extract DATASET --model %s`), train a head and export that", path, path)
	}
	if err != nil {
		return nil, err
	}
	if err := CheckFastJPEG(meta.Spec.FastJPEG, path); err != nil {
		return nil, err
	}
	ss, err := meta.SessionSpec(embeddings)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := backbone.MarshalModel(mp)
	if err != nil {
		return nil, err
	}
	if err := e.InitRuntime(); err != nil {
		return nil, err
	}
	inferers, sessOpt := pipeline.PipelineThreads(e.Session)
	sess, err := ort.NewSession(data, ss, sessOpt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	featureOut := -1
	if embeddings {
		featureOut = 1
	}
	k := len(meta.Classes)
	return &predictor{
		runner:     &pipeline.Runner{Session: sess, Spec: meta.FeedSpec(), Inferers: inferers},
		classes:    meta.Classes,
		featureOut: featureOut,
		score: func(outs [][]float32, n int, probs []float32) error {
			copy(probs, outs[0][:n*k])
			return nil
		},
		close: func() { sess.Close() },
	}, nil
}
