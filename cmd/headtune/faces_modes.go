package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/atomicfile"
	"github.com/headtune/headtune/internal/bytesize"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

// facesArgs turns `--faces all` and `--faces largest` into flags urfave/cli
// can read: --faces (a boolean) plus --faces-all or --faces-largest.
func facesArgs(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		switch a {
		case "--faces=all":
			out = append(out, "--faces", "--faces-all")
			continue
		case "--faces=largest":
			out = append(out, "--faces", "--faces-largest")
			continue
		case "--faces":
			out = append(out, a)
			if i+1 < len(args) && (args[i+1] == "all" || args[i+1] == "largest") {
				out = append(out, "--faces-"+args[i+1])
				i++
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// facesSelectFlags are --faces [largest|all].
func facesSelectFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "faces", Usage: "face mode: detect faces and use " + what + " (`--faces all`: every face)"},
		&cli.BoolFlag{Name: "faces-all", Hidden: true, Usage: "set by `--faces all`"},
		&cli.BoolFlag{Name: "faces-largest", Hidden: true, Usage: "set by `--faces largest`"},
	}
}

// faceSpecFromFlags is the face recipe the --face-* flags describe for d.
func faceSpecFromFlags(c *cli.Context, d *faces.Detector) (faces.Spec, error) {
	spec := faces.DefaultSpec(d.SHA256())
	spec.Threshold = float32(c.Float64("face-threshold"))
	spec.MinSize = float32(c.Float64("face-min-size"))
	spec.Margin = float32(c.Float64("face-margin"))
	spec.Align = c.String("face-align")
	spec.Suppression = c.String("face-suppression")
	return spec, spec.Validate()
}

// pipelineDetector opens a detector for the pipeline, which runs one
// detection per core at once: one ONNX Runtime thread per call.
func pipelineDetector(c *cli.Context, name string, recipe *imaging.FaceSpec) (*faces.Detector, error) {
	if _, err := ort.Init(""); err != nil {
		return nil, err
	}
	store, err := openStore(c)
	if err != nil {
		return nil, err
	}
	opt := sessionOptions(c)
	opt.Threads = 1
	if recipe != nil {
		return faces.OpenDetectorFor(store, *recipe, opt)
	}
	return faces.OpenDetector(store, name, opt)
}

func runExtractFaces(c *cli.Context, ds *imaging.Dataset, root string) error {
	det, err := pipelineDetector(c, c.String("detector"), nil)
	if err != nil {
		return err
	}
	defer det.Close()
	spec, err := faceSpecFromFlags(c, det)
	if err != nil {
		return err
	}
	bb, err := openBackboneFromFlags(c, c.Int("tune-layers"), false, spec)
	if err != nil {
		return err
	}
	defer bb.Close()
	quiet := c.Bool("quiet")
	prog := newProgress("extract", quiet)
	for _, ig := range ds.Ignored {
		if !quiet && !c.Bool("json") {
			prog.Printf("ignored %s: %s\n", ig.Path, ig.Reason)
		}
	}
	sum, err := pipeline.ExtractFaces(c.Context, bb, det, c.Bool("faces-all"), ds, pipeline.ExtractOptions{
		CacheRoot: root, WaitLock: c.Bool("wait-lock"),
		Progress: func(p pipeline.ExtractProgress) {
			prog.Update(p.Done, p.Total, p.Computed+p.Skipped, fmt.Sprintf("  reused %d  skipped %d", p.Reused, p.Skipped))
		},
		OnSkip: func(f pipeline.Failure) { prog.Printf("skipped %s: %v\n", f.Path, f.Err) },
	})
	prog.Done()
	if sum != nil && (err == nil || errors.Is(err, context.Canceled)) {
		if c.Bool("json") {
			printJSON(sum)
		} else {
			fmt.Fprintf(os.Stderr, "extract: %d images: %d faces; %d images computed (%.1f img/s), %d reused from cache, %d skipped (%d with no face found) in %s\n",
				sum.Images, sum.Faces, sum.Computed, sum.ImagesPerS, sum.Reused, sum.Skipped, sum.NoFace, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Millisecond))
			if err == nil {
				fmt.Fprintf(os.Stderr, "extract: %d classes, %d-d features of face crops from %s (%s), cache %s\n", len(sum.Classes), sum.Dim, bb.Name, bb.Choice.Tensor, sum.CacheDir)
			}
		}
	}
	if err != nil {
		return err
	}
	if sum.Faces == 0 {
		return fmt.Errorf("%s: no face in any of the %d images (see the skipped lines above)", ds.Root, sum.Images)
	}
	return nil
}

// runEvalExtractFaces extracts a labelled folder in face mode for eval
// (the head's recipe says faces), returning the view written.
func runEvalExtractFaces(c *cli.Context, bb *pipeline.Backbone, ds *imaging.Dataset, root string) (string, error) {
	det, err := pipelineDetector(c, "", &bb.Spec.Faces)
	if err != nil {
		return "", err
	}
	defer det.Close()
	prog := newProgress("eval", c.Bool("quiet"))
	sum, err := pipeline.ExtractFaces(c.Context, bb, det, c.Bool("faces-all"), ds, pipeline.ExtractOptions{
		CacheRoot: root, KeepLastRun: true,
		Progress: func(p pipeline.ExtractProgress) { prog.Update(p.Done, p.Total, p.Computed+p.Skipped, "") },
		OnSkip:   func(f pipeline.Failure) { prog.Printf("skipped %s: %v\n", f.Path, f.Err) },
	})
	prog.Done()
	if err != nil {
		return "", err
	}
	if !c.Bool("json") {
		fmt.Fprintf(os.Stderr, "eval: %d faces from %d images, %d with no face found\n", sum.Faces, sum.Images, sum.NoFace)
	}
	return sum.View, nil
}

// runPredictFaces is predict for a head trained on face crops: one row per
// face (every face; the largest only with `--faces largest`), and one row
// for an image without any.
func runPredictFaces(c *cli.Context, m *head.Model, bb *pipeline.Backbone, paths []string) error {
	if c.String("model") != "" || c.Bool("resume") || c.Bool("embeddings") {
		return errors.New("predict on faces works with --head only, without --resume or --embeddings")
	}
	det, err := pipelineDetector(c, "", &bb.Spec.Faces)
	if err != nil {
		return err
	}
	defer det.Close()
	all := !c.Bool("faces-largest")
	fr := &pipeline.FaceRunner{Detector: det, Session: bb.Session, Spec: bb.Spec, All: all, Workers: bb.Inferers}
	sink, err := newFaceSink(c)
	if err != nil {
		return err
	}
	defer sink.close()
	var ann *faceAnnotator
	if dir := c.String("annotate"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--annotate %s: %w", dir, err)
		}
		ann = &faceAnnotator{dir: dir, names: map[string]int{}}
	}
	prog := newProgress("predict", c.Bool("quiet") || sink.toStdout)
	threshold := float32(c.Float64("threshold"))
	images, failed, noFace, nFaces := 0, 0, 0, 0
	last := ""
	err = pipeline.PredictFaces(c.Context, fr, paths, func(outs [][]float32, n int, probs []float32) error {
		return m.PredictBatch(outs[0], n, probs)
	}, pipeline.PredictOptions{Classes: len(m.Classes), TopK: c.Int("top"), FeatureOut: -1}, func(p pipeline.FacePrediction) error {
		if p.Path != last {
			images++
			last = p.Path
			if ann != nil {
				if err := ann.flush(); err != nil {
					return err
				}
				ann.path = p.Path
			}
		}
		switch {
		case errors.Is(p.Err, pipeline.ErrNoFace):
			noFace++
		case p.Err != nil:
			failed++
			if !sink.toStdout || c.Bool("json") {
				prog.Printf("predict: %s: %v\n", p.Path, p.Err)
			}
		default:
			nFaces++
			if ann != nil {
				label := m.Classes[p.Classes[0]]
				if threshold > 0 && p.Probs[0] < threshold {
					label = "unknown"
				}
				ann.faces = append(ann.faces, faces.Annotation{Face: p.Box, Label: fmt.Sprintf("%s %.2f", label, p.Probs[0])})
			}
		}
		prog.Update(images, len(paths), images, "")
		return sink.write(p, m.Classes, threshold)
	})
	if err == nil && ann != nil {
		err = ann.flush()
	}
	prog.Done()
	if err != nil {
		return err
	}
	if err := sink.close(); err != nil {
		return err
	}
	if !c.Bool("quiet") && !c.Bool("json") {
		fmt.Fprintf(os.Stderr, "predict: %d faces in %d images, %d with no face found, %d unreadable\n", nFaces, images, noFace, failed)
	}
	if failed > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d of %d images could not be read or decoded", failed, len(paths))}
	}
	return nil
}

// faceAnnotator collects one image's predictions and writes the image with
// them drawn.
type faceAnnotator struct {
	dir   string
	path  string
	faces []faces.Annotation
	names map[string]int
}

func (a *faceAnnotator) flush() error {
	if a.path == "" {
		return nil
	}
	defer func() { a.path, a.faces = "", a.faces[:0] }()
	img, err := imaging.DecodeFile(a.path, imaging.DecodeOptions{})
	if err != nil {
		return nil // reported in its row already
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
	out := filepath.Join(a.dir, stem+".jpg")
	if err := atomicfile.Write(out, b.Bytes()); err != nil {
		return fmt.Errorf("--annotate: %w", err)
	}
	return nil
}

// faceSink writes one row per face: text on stdout, JSON Lines (--json or
// --out *.jsonl) or CSV (--out *.csv), flushed row by row.
type faceSink struct {
	w        *bufio.Writer
	f        *os.File
	csv      *csv.Writer
	jsonl    bool
	toStdout bool
}

func newFaceSink(c *cli.Context) (*faceSink, error) {
	s := &faceSink{}
	path := c.String("out")
	if path == "" || path == "-" {
		s.toStdout, s.w, s.jsonl = true, bufio.NewWriter(os.Stdout), c.Bool("json")
		return s, nil
	}
	low := strings.ToLower(path)
	s.jsonl = strings.HasSuffix(low, ".jsonl") || strings.HasSuffix(low, ".json")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	s.f, s.w = f, bufio.NewWriter(f)
	if !s.jsonl {
		s.csv = csv.NewWriter(s.w)
		s.csv.Write([]string{"path", "face", "x", "y", "w", "h", "face_score", "class", "probability", "top_k", "error"})
	}
	return s, nil
}

type faceRow struct {
	Path        string      `json:"path"`
	Face        int         `json:"face"`
	Box         *faces.Box  `json:"box,omitempty"`
	FaceScore   float32     `json:"face_score,omitempty"`
	Class       string      `json:"class,omitempty"`
	Probability float32     `json:"probability,omitempty"`
	TopK        []jsonClass `json:"top_k,omitempty"`
	Error       string      `json:"error,omitempty"`
}

func (s *faceSink) write(p pipeline.FacePrediction, classes []string, threshold float32) error {
	r := faceRow{Path: p.Path, Face: p.Face}
	if p.Err != nil {
		r.Error = p.Err.Error()
	} else {
		b := p.Box.Box
		r.Box, r.FaceScore = &b, p.Box.Score
		r.Class, r.Probability = classes[p.Classes[0]], p.Probs[0]
		if threshold > 0 && r.Probability < threshold {
			r.Class = "unknown"
		}
		for j, ci := range p.Classes {
			r.TopK = append(r.TopK, jsonClass{classes[ci], p.Probs[j]})
		}
	}
	parts := make([]string, len(r.TopK))
	for j, t := range r.TopK {
		parts[j] = t.Class + ":" + strconv.FormatFloat(float64(t.Probability), 'g', 4, 32)
	}
	switch {
	case s.jsonl:
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		s.w.Write(append(b, '\n'))
	case s.csv != nil:
		row := []string{r.Path, strconv.Itoa(r.Face), "", "", "", "", "", r.Class, "", strings.Join(parts, ";"), r.Error}
		if r.Box != nil {
			row[2], row[3], row[4], row[5] = fmt.Sprintf("%.1f", r.Box.X), fmt.Sprintf("%.1f", r.Box.Y), fmt.Sprintf("%.1f", r.Box.W), fmt.Sprintf("%.1f", r.Box.H)
			row[6], row[8] = strconv.FormatFloat(float64(r.FaceScore), 'g', 4, 32), strconv.FormatFloat(float64(r.Probability), 'g', 6, 32)
		}
		s.csv.Write(row)
		s.csv.Flush()
	default:
		if p.Err != nil {
			fmt.Fprintf(s.w, "%s\t-\t%s\n", r.Path, r.Error)
			break
		}
		fmt.Fprintf(s.w, "%s\tface %d at %.0f,%.0f %.0fx%.0f\t%s\t(%s)\n", r.Path, r.Face, r.Box.X, r.Box.Y, r.Box.W, r.Box.H, r.Class, strings.Join(parts, ", "))
	}
	return s.w.Flush()
}

func (s *faceSink) close() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Flush()
	s.w = nil
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// runExportFaces writes the face model (export.BuildFaces) for a head
// trained on faces.
func runExportFaces(c *cli.Context, m *head.Model, bb *pipeline.Backbone) error {
	if bb.Spec.Faces.IsZero() {
		return fmt.Errorf("export --faces: the head %s was not trained on faces (extract with --faces)", c.String("head"))
	}
	if c.Bool("with-features") {
		return errors.New("export --faces: --with-features is not available for face models")
	}
	store, err := openStore(c)
	if err != nil {
		return err
	}
	var detPath string
	inst, err := store.List()
	if err != nil {
		return err
	}
	for _, in := range inst {
		if in.Meta.Task == models.TaskFaceDetector && in.Meta.SHA256 == bb.Spec.Faces.DetectorSHA256 {
			detPath = in.ModelPath()
		}
	}
	if detPath == "" {
		return fmt.Errorf("export --faces: the face detector the head was trained with (sha256 %.12s...) is not installed: run `headtune models pull blazeface`", bb.Spec.Faces.DetectorSHA256)
	}
	det, err := backbone.ReadModelFile(detPath)
	if err != nil {
		return err
	}
	cls, err := export.Build(bb.Cut, bb.Spec, m, export.Options{WithPreprocessing: true, Version: version})
	if err != nil {
		return err
	}
	out, err := export.BuildFaces(cls, det, bb.Spec, export.FacesOptions{PhotoSize: c.Int("photo-size")})
	if err != nil {
		return err
	}
	path := c.String("out")
	if err := export.Write(path, out); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	S := c.Int("photo-size")
	if c.Bool("json") {
		return printJSON(map[string]any{"path": absPath(path), "bytes": st.Size(), "classes": m.Classes, "faces": true, "photo_size": S})
	}
	fmt.Fprintf(os.Stderr, "export: %s (%s): photo [1,%d,%d,3] RGB 0..255 (letterboxed) -> boxes [K,4], scores [K], keypoints [K,12], probabilities [K,%d]\n",
		path, bytesize.Format(st.Size()), S, S, len(m.Classes))
	return nil
}
