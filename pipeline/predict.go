package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/headtune/headtune/imaging"
)

// Prediction is the result for one input file.
type Prediction struct {
	Path     string
	Classes  []int     // top-k class indices, most probable first
	Probs    []float32 // their probabilities
	Features []float32 // the feature vector, when asked for (copy, owned by the receiver)
	Err      error     // set when the file could not be read or decoded
}

// Scorer turns a batch's session outputs into per-class probabilities.
// probs receives n*classes values.
type Scorer func(outputs [][]float32, n int, probs []float32) error

// PredictOptions configures Predict.
type PredictOptions struct {
	Classes    int  // number of classes the scorer produces
	TopK       int  // how many classes to report (default 1)
	Embeddings bool // copy the feature vectors into each Prediction
	FeatureOut int  // which session output holds the features (-1: none)
	BatchSize  int
	Workers    int
}

// Predict runs the files through runner's session, scores each batch, and
// calls emit for every file in order (failed files included, with Err).
func Predict(ctx context.Context, r *Runner, paths []string, score Scorer, opt PredictOptions, emit func(Prediction) error) error {
	top := newTopK(opt)
	probs := make([]float32, 0)
	var pending []Prediction // failures are reported in input order with the batch that follows them
	r.OnFail = func(f Failure) {
		pending = append(pending, Prediction{Path: f.Path, Err: f.Err})
	}
	flushBefore := func(idx int) error {
		// Failures reach us before the batch they were in; emit them when the
		// stream reaches their position so output keeps input order.
		for len(pending) > 0 {
			p := pending[0]
			if idx >= 0 && pathIndex(paths, p.Path, idx) > idx {
				break
			}
			pending = pending[1:]
			if err := emit(p); err != nil {
				return err
			}
		}
		return nil
	}
	err := r.Run(ctx, paths, func(b *Batch) error {
		if cap(probs) < b.N*opt.Classes {
			probs = make([]float32, b.N*opt.Classes)
		}
		probs = probs[:b.N*opt.Classes]
		if err := score(b.Outputs, b.N, probs); err != nil {
			return err
		}
		for i := 0; i < b.N; i++ {
			if err := flushBefore(b.Index[i]); err != nil {
				return err
			}
			p := Prediction{Path: paths[b.Index[i]]}
			p.Classes, p.Probs = top.rank(probs[i*opt.Classes : (i+1)*opt.Classes])
			if opt.Embeddings && opt.FeatureOut >= 0 {
				size := r.Session.OutputSizes()[opt.FeatureOut]
				p.Features = append([]float32(nil), b.Outputs[opt.FeatureOut][i*size:(i+1)*size]...)
			}
			if err := emit(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flushBefore(-1)
}

// topK ranks rows of class probabilities for Predict and PredictFaces.
type topK struct {
	k     int   // classes reported: opt.TopK (at least 1), at most opt.Classes
	order []int // scratch, reused between rows
}

func newTopK(opt PredictOptions) *topK {
	k := opt.TopK
	if k <= 0 {
		k = 1
	}
	return &topK{k: min(k, opt.Classes), order: make([]int, opt.Classes)}
}

// rank returns the k most probable classes of row, most probable first
// (ties in class order), and their probabilities, in new slices.
func (t *topK) rank(row []float32) ([]int, []float32) {
	for c := range t.order {
		t.order[c] = c
	}
	sort.SliceStable(t.order, func(a, c int) bool { return row[t.order[a]] > row[t.order[c]] })
	probs := make([]float32, t.k)
	for j := range probs {
		probs[j] = row[t.order[j]]
	}
	return append([]int(nil), t.order[:t.k]...), probs
}

// pathIndex finds the position of path in paths, looking at or before hint
// first (failures are always earlier than the batch being emitted).
func pathIndex(paths []string, path string, hint int) int {
	for i := min(hint, len(paths)-1); i >= 0; i-- {
		if paths[i] == path {
			return i
		}
	}
	for i := hint + 1; i < len(paths); i++ {
		if paths[i] == path {
			return i
		}
	}
	return -1
}

// ExpandInputs turns files and folders into the list of image files to
// predict on: folders are walked recursively (hidden entries skipped, only
// image extensions), files are taken as given (their content is sniffed
// later, so a mislabelled file still gets a row). Order is stable: arguments
// in order, each folder's files sorted.
func ExpandInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var files []string
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if p != a && strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && isImageName(name) {
				// Only regular files (symlinks followed): devices and
				// FIFOs named like images are passed over, as in datasets.
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					files = append(files, p)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

func isImageName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range imaging.ImageExtensions {
		if ext == e {
			return true
		}
	}
	return false
}
