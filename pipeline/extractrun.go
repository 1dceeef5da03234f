package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
)

// extractRun is what Extract and ExtractFaces share around their own
// inference loops: the cache opened for writing and for lookups of what it
// already holds, and the summary and progress being built. Both modes must
// lock, resume, count and record a run the same way, so that train, eval
// and the job layer read either one's results alike.
type extractRun struct {
	root  string
	w     *featcache.Writer
	known *featcache.Reader
	start time.Time
	paths []string // ds.Samples' paths, in order
	sum   *ExtractSummary
	prog  ExtractProgress
	opt   ExtractOptions
}

// cacheRoot is root, or the default feature cache root when root is empty.
func cacheRoot(root string) (string, error) {
	if root != "" {
		return root, nil
	}
	return featcache.DefaultDir()
}

// openCache opens the cache folder of id under root for appending (with
// wait, waiting for another writer's lock instead of refusing) and for
// lookups of what it already holds. The caller closes both.
func openCache(ctx context.Context, root string, id featcache.Identity, wait bool) (*featcache.Writer, *featcache.Reader, error) {
	w, err := featcache.OpenWriter(ctx, root, id, featcache.WriterOptions{Wait: wait})
	if err != nil {
		return nil, nil, err
	}
	known, err := featcache.Open(root, id)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, known, nil
}

// startExtract opens bb's cache under opt.CacheRoot (the default root when
// empty) and starts the summary of extracting ds. The caller must close it.
func startExtract(ctx context.Context, bb *Backbone, ds *imaging.Dataset, opt ExtractOptions) (*extractRun, error) {
	root, err := cacheRoot(opt.CacheRoot)
	if err != nil {
		return nil, err
	}
	if bb.Session == nil {
		return nil, errors.New("extract: backbone has no session")
	}
	w, known, err := openCache(ctx, root, bb.Identity, opt.WaitLock)
	if err != nil {
		return nil, err
	}
	n := len(ds.Samples)
	e := &extractRun{root: root, w: w, known: known, start: time.Now(), paths: make([]string, n), opt: opt,
		sum: &ExtractSummary{
			Dataset: ds.Root, Model: bb.Ref, BackboneID: bb.Identity.ID(), CacheDir: w.Dir(),
			Classes: ds.Classes, Images: n, Dim: bb.Dim,
		},
		prog: ExtractProgress{Total: n},
	}
	for i, s := range ds.Samples {
		e.paths[i] = s.Path
	}
	return e, nil
}

// close releases the cache reader and the writer's lock.
func (e *extractRun) close() {
	e.known.Close()
	e.w.Close()
}

// has reports whether the cache already holds the features of key h.
func (e *extractRun) has(h [32]byte) bool {
	_, ok := e.known.Lookup(featcache.Key(h))
	return ok
}

// report hands the progress to opt.Progress, if set.
func (e *extractRun) report() {
	if e.opt.Progress != nil {
		e.prog.Elapsed = time.Since(e.start)
		e.opt.Progress(e.prog)
	}
}

// skip counts and records a file left out.
func (e *extractRun) skip(f Failure) {
	e.prog.Done++
	e.prog.Skipped++
	e.sum.Skips = append(e.sum.Skips, SkipRecord{Path: f.Path, Reason: f.Err.Error()})
	if e.opt.OnSkip != nil {
		e.opt.OnSkip(f)
	}
	e.report()
}

// finish commits every batch handed to gc, cancelled or not (nothing
// finished is lost), fills in the summary's counts and returns the run's
// error: runErr, or the commit's failure.
func (e *extractRun) finish(gc *groupCommit, runErr error) error {
	if err := gc.close(); err != nil && (runErr == nil || errors.Is(runErr, context.Canceled)) {
		runErr = err
	}
	e.sum.Computed, e.sum.Reused, e.sum.Skipped = e.prog.Computed, e.prog.Reused, e.prog.Skipped
	e.sum.Seconds = time.Since(e.start).Seconds()
	if e.sum.Seconds > 0 {
		e.sum.ImagesPerS = float64(e.sum.Computed) / e.sum.Seconds
	}
	if runErr != nil {
		e.sum.Interrupted = errors.Is(runErr, context.Canceled)
	}
	return runErr
}

// record writes the dataset's view (entries) and, unless opt.KeepLastRun,
// the record of this run that `train` reads by default.
func (e *extractRun) record(bb *Backbone, ds *imaging.Dataset, entries []featcache.ViewEntry) error {
	e.sum.Splits = map[string]int{}
	for _, en := range entries {
		sp := en.Split
		if sp == "" {
			sp = "all"
		}
		e.sum.Splits[sp]++
	}
	name := ViewName(ds.Root)
	if err := featcache.WriteView(e.w.Dir(), name, entries); err != nil {
		return fmt.Errorf("write dataset view: %w", err)
	}
	// Absolute, so that the record, the augment record and the heads that
	// name this view work from any working folder.
	e.sum.View = absPath(featcache.ViewPath(e.w.Dir(), name))
	if e.opt.KeepLastRun {
		return nil
	}
	idJSON, _ := json.Marshal(bb.Identity)
	last := LastRun{Dataset: absPath(ds.Root), Model: bb.Ref, ModelPath: bb.ModelPath, CacheDir: absPath(e.w.Dir()), View: e.sum.View,
		Identity: idJSON, Options: bb.Options, FeatureTensor: bb.Choice.Tensor}
	last.Options.Spec = &bb.Spec
	data, _ := json.MarshalIndent(last, "", "  ")
	data = append(data, '\n')
	// The identity folder keeps a copy, so that a view chosen by file
	// (train --view) still names the backbone that computed its features
	// after other extractions replaced the cache root's record.
	if err := backbone.WriteFileAtomic(filepath.Join(e.w.Dir(), lastRunFile), data); err != nil {
		return fmt.Errorf("record last run: %w", err)
	}
	if err := backbone.WriteFileAtomic(filepath.Join(e.root, lastRunFile), data); err != nil {
		return fmt.Errorf("record last run: %w", err)
	}
	return nil
}
