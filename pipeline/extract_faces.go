package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
)

// FaceViewPath is how a face sample appears in a dataset view: the image's
// path, with "#k" for face k when every face is taken (all), plain when only
// the largest is.
func FaceViewPath(path string, k int, all bool) string {
	if !all {
		return path
	}
	return fmt.Sprintf("%s#%d", path, k)
}

// ExtractFaces is Extract in face mode: every labelled image contributes
// its largest face (or, with all, every face) as a sample with the image's
// label, cropped as bb.Spec.Faces says (bb must be opened with
// BackboneOptions.Faces). Images where det finds no face are skipped with
// the reason "no face found" and counted in the summary's NoFace and
// Skipped. Resuming after a crash or cancellation detects faces again but
// computes features only for faces the cache lacks.
func ExtractFaces(ctx context.Context, bb *Backbone, det *faces.Detector, all bool, ds *imaging.Dataset, opt ExtractOptions) (*ExtractSummary, error) {
	if bb.Spec.Faces.IsZero() {
		return nil, errors.New("extract faces: the backbone was opened without a face recipe")
	}
	root := opt.CacheRoot
	if root == "" {
		var err error
		if root, err = featcache.DefaultDir(); err != nil {
			return nil, err
		}
	}
	if bb.Session == nil {
		return nil, errors.New("extract: backbone has no session")
	}
	w, err := featcache.OpenWriter(ctx, root, bb.Identity, featcache.WriterOptions{Wait: opt.WaitLock})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	known, err := featcache.Open(root, bb.Identity)
	if err != nil {
		return nil, err
	}
	defer known.Close()

	start := time.Now()
	n := len(ds.Samples)
	paths := make([]string, n)
	for i, s := range ds.Samples {
		paths[i] = s.Path
	}
	type sample struct {
		image, face int
		key         featcache.Key
	}
	var samples []sample
	sum := &ExtractSummary{
		Dataset: ds.Root, Model: bb.Ref, BackboneID: bb.Identity.ID(), CacheDir: w.Dir(),
		Classes: ds.Classes, Images: n, Dim: bb.Dim,
	}
	prog := ExtractProgress{Total: n}
	report := func() {
		if opt.Progress != nil {
			prog.Elapsed = time.Since(start)
			opt.Progress(prog)
		}
	}
	fr := &FaceRunner{
		Detector: det, Session: bb.Session, Spec: bb.Spec, All: all, Workers: bb.Inferers,
		Skip: func(k [32]byte) bool {
			_, ok := known.Lookup(featcache.Key(k))
			return ok
		},
	}
	gc := newGroupCommit(w)
	var keys []featcache.Key
	var rows []float32
	runErr := fr.Run(ctx, paths, func(fi *FaceImage) error {
		prog.Done++
		if fi.Err != nil {
			prog.Skipped++
			if errors.Is(fi.Err, ErrNoFace) {
				sum.NoFace++
			}
			sum.Skips = append(sum.Skips, SkipRecord{Path: fi.Path, Reason: fi.Err.Error()})
			if opt.OnSkip != nil {
				opt.OnSkip(Failure{Index: fi.Index, Path: fi.Path, Err: fi.Err})
			}
			report()
			return nil
		}
		keys, rows = keys[:0], rows[:0]
		computed := false
		for j, k := range fi.Selected {
			key := featcache.Key(fi.Keys[j])
			samples = append(samples, sample{fi.Index, k, key})
			if fi.Cached[j] {
				continue
			}
			computed = true
			keys = append(keys, key)
			rows = append(rows, fi.Outputs[0][j*bb.Dim:(j+1)*bb.Dim]...)
		}
		if computed {
			if err := gc.add(keys, rows); err != nil {
				return err
			}
			prog.Computed++
		} else {
			prog.Reused++
		}
		report()
		return nil
	})
	if err := gc.close(); err != nil && (runErr == nil || errors.Is(runErr, context.Canceled)) {
		runErr = err
	}
	sum.Computed, sum.Reused, sum.Skipped = prog.Computed, prog.Reused, prog.Skipped
	sum.Faces = len(samples)
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.ImagesPerS = float64(sum.Computed) / sum.Seconds
	}
	if runErr != nil {
		sum.Interrupted = errors.Is(runErr, context.Canceled)
		return sum, runErr
	}

	base := datasetBase(ds.Root)
	entries := make([]featcache.ViewEntry, 0, len(samples))
	sum.Splits = map[string]int{}
	for _, s := range samples {
		row, ok := w.Lookup(s.key)
		if !ok {
			return sum, fmt.Errorf("extract faces: %s face %d is not in the cache after its commit", paths[s.image], s.face)
		}
		ds := ds.Samples[s.image]
		entries = append(entries, featcache.ViewEntry{Path: FaceViewPath(relTo(base, ds.Path), s.face, all), Label: ds.Label, Split: ds.Split, Key: s.key, Row: row})
		sp := ds.Split
		if sp == "" {
			sp = "all"
		}
		sum.Splits[sp]++
	}
	name := ViewName(ds.Root)
	if err := featcache.WriteView(w.Dir(), name, entries); err != nil {
		return sum, fmt.Errorf("write dataset view: %w", err)
	}
	sum.View = featcache.ViewPath(w.Dir(), name)
	if opt.KeepLastRun {
		return sum, nil
	}
	idJSON, _ := json.Marshal(bb.Identity)
	last := LastRun{Dataset: ds.Root, Model: bb.Ref, ModelPath: bb.ModelPath, CacheDir: w.Dir(), View: sum.View,
		Identity: idJSON, Options: bb.Options, FeatureTensor: bb.Choice.Tensor}
	last.Options.Spec = &bb.Spec
	data, _ := json.MarshalIndent(last, "", "  ")
	if err := backbone.WriteFileAtomic(filepath.Join(root, lastRunFile), append(data, '\n')); err != nil {
		return sum, fmt.Errorf("record last run: %w", err)
	}
	return sum, nil
}
