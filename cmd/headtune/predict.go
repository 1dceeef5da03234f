package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/pipeline"
)

func predictCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "predict",
		Usage:     "classify images (files or folders, recursively) with a trained head or an exported model",
		ArgsUsage: "IMAGE|FOLDER...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "head", Value: defaultHead, Usage: "trained head file"},
			&cli.StringFlag{Name: "model", Usage: "an ONNX file made by `headtune export` (instead of --head)"},
			&cli.IntFlag{Name: "top", Aliases: []string{"k"}, Value: 3, Usage: "how many classes to report per image"},
			&cli.Float64Flag{Name: "threshold", Usage: "answer `unknown` when the top probability is below this"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write one row per image to FILE (.csv or .jsonl), as it goes"},
			&cli.BoolFlag{Name: "resume", Usage: "with --out: skip images already in the output file"},
			&cli.BoolFlag{Name: "embeddings", Usage: "also write each image's feature vector"},
			&cli.IntFlag{Name: "batch", Usage: "images per inference batch (0: 1 when each core decodes its own images, 16 with --workers)"},
			&cli.IntFlag{Name: "workers", Usage: "decode on this many goroutines of their own, handing batches to inference (0: each core decodes and runs its own batches)"},
			&cli.BoolFlag{Name: "spin", Usage: "let ONNX Runtime threads spin-wait"},
			&cli.StringFlag{Name: "annotate", Usage: "heads trained on faces: write each image with its faces' boxes, classes and probabilities drawn into this folder"},
		},
		Action: runPredict,
	}
	// Heads trained on faces (extract --faces) predict per face: every face
	// by default, `--faces largest` for the largest only.
	cmd.Flags = append(cmd.Flags, facesSelectFlags("every face of each image (implied by a head trained on faces; `--faces largest`: the largest only)")...)
	return cmd
}

// predictor is what predict runs: a runner, how to score its outputs, and
// the class names.
type predictor struct {
	runner     *pipeline.Runner
	score      pipeline.Scorer
	classes    []string
	featureOut int
	close      func()
}

func runPredict(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("predict needs at least one image or folder")
	}
	paths, err := pipeline.ExpandInputs(c.Args().Slice())
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no images found in %s", strings.Join(c.Args().Slice(), ", "))
	}
	if c.String("model") == "" {
		if m, err := head.Load(c.String("head")); err == nil && len(m.Backbone.Preprocess) > 0 {
			if spec, err := imaging.ParseSpec(m.Backbone.Preprocess); err == nil && !spec.Faces.IsZero() {
				bb, err := openBackboneForHead(c, m, false)
				if err != nil {
					return err
				}
				defer bb.Close()
				return runPredictFaces(c, m, bb, paths)
			}
		}
	}
	if c.Bool("faces") || c.String("annotate") != "" {
		return errors.New("--faces and --annotate need a head trained on faces (headtune extract --faces, then train)")
	}
	var p *predictor
	if c.String("model") != "" {
		p, err = exportedPredictor(c, c.String("model"))
	} else {
		p, err = headPredictor(c)
	}
	if err != nil {
		return err
	}
	defer p.close()
	p.runner.BatchSize = c.Int("batch")
	p.runner.Workers = c.Int("workers")

	out, err := openPredictionSink(c, p.classes)
	if err != nil {
		return err
	}
	defer out.Close()
	if c.Bool("resume") {
		kept := paths[:0:0]
		for _, q := range paths {
			if !out.done[q] {
				kept = append(kept, q)
			}
		}
		if n := len(paths) - len(kept); n > 0 && !c.Bool("quiet") {
			fmt.Fprintf(os.Stderr, "predict: resuming, %d images already in %s\n", n, c.String("out"))
		}
		paths = kept
	}
	prog := newProgress("predict", c.Bool("quiet") || out.toStdout)
	done, failed := 0, 0
	threshold := float32(c.Float64("threshold"))
	err = pipeline.Predict(c.Context, p.runner, paths, p.score, pipeline.PredictOptions{
		Classes: len(p.classes), TopK: c.Int("top"), Embeddings: c.Bool("embeddings"), FeatureOut: p.featureOut,
	}, func(pr pipeline.Prediction) error {
		done++
		if pr.Err != nil {
			failed++
			if !out.toStdout || c.Bool("json") {
				prog.Printf("predict: %s: %v\n", pr.Path, pr.Err)
			}
		}
		prog.Update(done, len(paths), done, "")
		return out.Write(pr, p.classes, threshold)
	})
	prog.Done()
	if err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if failed > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d of %d images could not be read or decoded", failed, len(paths))}
	}
	return nil
}

// headPredictor runs the head's backbone (with the head's recorded
// preprocessing) and the head itself in Go.
func headPredictor(c *cli.Context) (*predictor, error) {
	m, err := head.Load(c.String("head"))
	if err != nil {
		return nil, err
	}
	bb, err := openBackboneForHead(c, m, false)
	if err != nil {
		return nil, err
	}
	return &predictor{
		runner:     &pipeline.Runner{Session: bb.Session, Spec: bb.Spec, Inferers: bb.Inferers},
		classes:    m.Classes,
		featureOut: 0,
		score: func(outs [][]float32, n int, probs []float32) error {
			return m.PredictBatch(outs[0], n, probs)
		},
		close: func() { bb.Close() },
	}, nil
}

// exportedPredictor runs a combined model made by `headtune export`.
func exportedPredictor(c *cli.Context, path string) (*predictor, error) {
	meta, mp, err := export.ReadMetadataFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkFastJPEG(meta.Spec.FastJPEG, path); err != nil {
		return nil, err
	}
	ss, err := meta.SessionSpec(c.Bool("embeddings"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := backbone.MarshalModel(mp)
	if err != nil {
		return nil, err
	}
	if _, err := ort.Init(""); err != nil {
		return nil, err
	}
	inferers, sessOpt := pipeline.PipelineThreads(sessionOptions(c))
	sess, err := ort.NewSession(data, ss, sessOpt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	featureOut := -1
	if c.Bool("embeddings") {
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

// predictionSink writes rows to stdout (text, or JSON Lines with --json) or
// to --out as CSV or JSON Lines, flushing every row so that an interrupted
// job keeps what it finished.
type predictionSink struct {
	w        *bufio.Writer
	f        *os.File
	csv      *csv.Writer
	jsonl    bool
	text     bool
	toStdout bool
	done     map[string]bool // paths already in the output file (--resume)
	closed   bool
	topK     int
	embed    bool
}

func openPredictionSink(c *cli.Context, classes []string) (*predictionSink, error) {
	s := &predictionSink{done: map[string]bool{}, topK: c.Int("top"), embed: c.Bool("embeddings")}
	path := c.String("out")
	if path == "" || path == "-" {
		s.toStdout = true
		s.w = bufio.NewWriter(os.Stdout)
		s.jsonl = c.Bool("json")
		s.text = !s.jsonl
		return s, nil
	}
	s.jsonl = strings.HasSuffix(strings.ToLower(path), ".jsonl") || strings.HasSuffix(strings.ToLower(path), ".json")
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if c.Bool("resume") {
		if err := s.loadDone(path); err != nil {
			return nil, err
		}
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	if dir := filepath.Dir(path); dir != "" {
		os.MkdirAll(dir, 0o755)
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, err
	}
	st, _ := f.Stat()
	s.f = f
	s.w = bufio.NewWriter(f)
	if !s.jsonl {
		s.csv = csv.NewWriter(s.w)
		if st == nil || st.Size() == 0 {
			hdr := []string{"path", "class", "probability", "top_k", "error"}
			if s.embed {
				hdr = append(hdr, "embedding")
			}
			s.csv.Write(hdr)
			s.csv.Flush()
		}
	}
	return s, nil
}

// loadDone reads the paths already written by an interrupted job. A torn
// last line (killed mid-write) is dropped and rewritten.
func (s *predictionSink) loadDone(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if i := strings.LastIndexByte(string(data), '\n'); i != len(data)-1 {
		// Cut the torn tail so appended rows start on a fresh line.
		if err := os.Truncate(path, int64(i+1)); err != nil {
			return err
		}
		data = data[:i+1]
	}
	if s.jsonl {
		for _, line := range strings.Split(string(data), "\n") {
			var row struct{ Path string }
			if json.Unmarshal([]byte(line), &row) == nil && row.Path != "" {
				s.done[row.Path] = true
			}
		}
		return nil
	}
	rows, err := csv.NewReader(strings.NewReader(string(data))).ReadAll()
	if err != nil {
		return fmt.Errorf("--resume: %s is not a predictions CSV: %w", path, err)
	}
	for i, r := range rows {
		if i == 0 || len(r) == 0 {
			continue
		}
		s.done[r[0]] = true
	}
	return nil
}

type jsonRow struct {
	Path        string      `json:"path"`
	Class       string      `json:"class,omitempty"`
	Probability float32     `json:"probability,omitempty"`
	TopK        []jsonClass `json:"top_k,omitempty"`
	Error       string      `json:"error,omitempty"`
	Embedding   []float32   `json:"embedding,omitempty"`
}

type jsonClass struct {
	Class       string  `json:"class"`
	Probability float32 `json:"probability"`
}

func (s *predictionSink) Write(p pipeline.Prediction, classes []string, threshold float32) error {
	top, prob := "", float32(0)
	var tk []jsonClass
	if p.Err == nil {
		top, prob = classes[p.Classes[0]], p.Probs[0]
		if threshold > 0 && prob < threshold {
			top = "unknown"
		}
		for j, ci := range p.Classes {
			tk = append(tk, jsonClass{classes[ci], p.Probs[j]})
		}
	}
	errText := ""
	if p.Err != nil {
		errText = p.Err.Error()
	}
	switch {
	case s.text:
		if p.Err != nil {
			fmt.Fprintf(s.w, "%s\terror: %s\n", p.Path, errText)
			break
		}
		parts := make([]string, len(tk))
		for j, t := range tk {
			parts[j] = fmt.Sprintf("%s %.3f", t.Class, t.Probability)
		}
		fmt.Fprintf(s.w, "%s\t%s\t(%s)\n", p.Path, top, strings.Join(parts, ", "))
	case s.jsonl:
		b, err := json.Marshal(jsonRow{Path: p.Path, Class: top, Probability: prob, TopK: tk, Error: errText, Embedding: p.Features})
		if err != nil {
			return err
		}
		s.w.Write(append(b, '\n'))
	default:
		parts := make([]string, len(tk))
		for j, t := range tk {
			parts[j] = t.Class + ":" + strconv.FormatFloat(float64(t.Probability), 'g', 6, 32)
		}
		probText := ""
		if p.Err == nil {
			probText = strconv.FormatFloat(float64(prob), 'g', 6, 32)
		}
		row := []string{p.Path, top, probText, strings.Join(parts, ";"), errText}
		if s.embed {
			row = append(row, formatVector(p.Features))
		}
		s.csv.Write(row)
		s.csv.Flush()
	}
	// One row, one flush: an interrupted job loses at most the row in
	// flight, and --resume finds everything before it.
	return s.w.Flush()
}

func formatVector(v []float32) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(x), 'g', 7, 32))
	}
	return b.String()
}

func (s *predictionSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.w.Flush()
	if s.f != nil {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

var _ io.Closer = (*predictionSink)(nil)
