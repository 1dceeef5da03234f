package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/objstore"
)

// ExtractOptions configures Extract.
type ExtractOptions struct {
	CacheRoot string // feature cache root (featcache.DefaultDir when empty)
	BatchSize int
	Workers   int
	WaitLock  bool // wait for another extract on the same cache instead of refusing
	// Progress, when set, is called after every batch and for every file
	// that is reused or skipped, from one goroutine.
	Progress func(ExtractProgress)
	// OnSkip, when set, is called for every file that could not be used.
	OnSkip func(Failure)
	// Read, when set, reads sample i of the dataset instead of the local
	// file Samples[i].Path (object storage datasets; see ExtractLocation).
	Read func(ctx context.Context, i int, buf []byte) ([]byte, error)
	// KeepLastRun leaves the cache's record of the latest extraction alone,
	// so that evaluating a test folder never becomes what `train` reads by
	// default.
	KeepLastRun bool
}

// ExtractProgress is a snapshot of a running extraction.
type ExtractProgress struct {
	Done, Total int // files finished (computed, reused or skipped) of all
	Computed    int // files whose features were computed in this run
	Reused      int
	Skipped     int
	Elapsed     time.Duration
}

// ExtractSummary reports a finished (or interrupted) extraction.
type ExtractSummary struct {
	Dataset     string         `json:"dataset"`
	Model       string         `json:"model"`
	BackboneID  string         `json:"backbone_id"`
	CacheDir    string         `json:"cache_dir"`
	View        string         `json:"view"`
	Classes     []string       `json:"classes"`
	Images      int            `json:"images"`
	Computed    int            `json:"computed"`
	Reused      int            `json:"reused"`
	Skipped     int            `json:"skipped"`
	Skips       []SkipRecord   `json:"skips,omitempty"`
	Splits      map[string]int `json:"splits,omitempty"`
	Seconds     float64        `json:"seconds"`
	ImagesPerS  float64        `json:"computed_images_per_second"`
	Dim         int            `json:"feature_dim"`
	Interrupted bool           `json:"interrupted,omitempty"`
	// Face mode (ExtractFaces): samples made (faces), and images skipped
	// because no face was found (also counted in Skipped).
	Faces  int `json:"faces,omitempty"`
	NoFace int `json:"no_face,omitempty"`
	// Retries counts object storage reads retried (ExtractLocation).
	Retries int64 `json:"read_retries,omitempty"`
}

// SkipRecord is one file left out, with the reason.
type SkipRecord struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// LastRun is what the latest extract recorded in the cache root, so that
// `headtune train` needs no arguments, and in the identity folder it wrote
// to (<root>/<identity>/last-extract.json), so that a view chosen by file
// names its backbone. Dataset, CacheDir and View are absolute (records
// before 2026-12 held them relative to extract's working folder; ReadLastRun
// finds such a view under the cache root).
type LastRun struct {
	Dataset   string          `json:"dataset"`
	Model     string          `json:"model"`
	ModelPath string          `json:"model_path"`
	CacheDir  string          `json:"cache_dir"`
	View      string          `json:"view"`
	Identity  json.RawMessage `json:"identity"`
	// Options reopen the backbone exactly as extract opened it (training
	// with --tune-layers needs the pretrained dense layers).
	Options BackboneOptions `json:"options"`
	// FeatureTensor is the tensor the features were read from.
	FeatureTensor string `json:"feature_tensor"`
}

const lastRunFile = "last-extract.json"

// ViewName is the name under which a dataset's view is stored: the folder's
// base name and a hash of its absolute path, so two datasets never share one.
func ViewName(datasetRoot string) string {
	if objstore.IsURL(datasetRoot) {
		return segment.ViewName(datasetRoot)
	}
	abs, err := filepath.Abs(datasetRoot)
	if err != nil {
		abs = datasetRoot
	}
	h := sha256.Sum256([]byte(abs))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs)))
	if base == "" || base[0] == '_' {
		base = "dataset" + base
	}
	return base + "-" + hex.EncodeToString(h[:4])
}

// Extract computes the features of every image of ds that the cache does not
// hold yet, and writes the dataset's view (path, label, split, hash, row).
// Files that cannot be read or decoded are reported and skipped. On
// cancellation every finished batch stays in the cache and the returned
// error is ctx.Err(); the view is not rewritten, so a later run resumes.
func Extract(ctx context.Context, bb *Backbone, ds *imaging.Dataset, opt ExtractOptions) (*ExtractSummary, error) {
	e, err := startExtract(ctx, bb, ds, opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	n := len(ds.Samples)
	keys := make([]featcache.Key, n)
	have := make([]bool, n)
	batchKeys := make([]featcache.Key, 0, max(opt.BatchSize, 16))
	r := &Runner{
		Session:   bb.Session,
		Spec:      bb.Spec,
		BatchSize: opt.BatchSize,
		Workers:   opt.Workers,
		Inferers:  bb.Inferers,
		Read:      opt.Read,
		Skip:      e.has,
		OnCached: func(i int, h [32]byte) {
			keys[i], have[i] = featcache.Key(h), true
			e.prog.Done++
			e.prog.Reused++
			e.report()
		},
		OnFail: e.skip,
	}
	gc := newGroupCommit(e.w)
	runErr := r.Run(ctx, e.paths, func(b *Batch) error {
		batchKeys = batchKeys[:0]
		for k := 0; k < b.N; k++ {
			batchKeys = append(batchKeys, featcache.Key(b.Hash[k]))
		}
		if err := gc.add(batchKeys, b.Outputs[0][:b.N*bb.Dim]); err != nil {
			return err // names the cache folder and what failed
		}
		for k, idx := range b.Index {
			keys[idx], have[idx] = batchKeys[k], true
		}
		e.prog.Done += b.N
		e.prog.Computed += b.N
		e.report()
		return nil
	})
	if err := e.finish(gc, runErr); err != nil {
		return e.sum, err
	}

	base := datasetBase(ds.Root)
	entries := make([]featcache.ViewEntry, 0, n)
	for i, s := range ds.Samples {
		if !have[i] {
			continue
		}
		row, _ := e.w.Lookup(keys[i])
		entries = append(entries, featcache.ViewEntry{Path: relTo(base, s.Path), Label: s.Label, Split: s.Split, Key: keys[i], Row: row})
	}
	return e.sum, e.record(bb, ds, entries)
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// ReadLastRun returns what the latest extract under root recorded.
func ReadLastRun(root string) (*LastRun, error) {
	p := filepath.Join(root, lastRunFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no extracted dataset in cache %s: run `headtune extract DATASET` first (or pass --cache)", root)
	}
	if err != nil {
		return nil, err
	}
	var l LastRun
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	// Records written before paths were made absolute hold the view
	// relative to the folder extract ran in. Every view lies at
	// <root>/<identity>/views/<name>.csv, so take it from there.
	if v, ok := viewUnder(root, l.View); ok {
		l.View, l.CacheDir = v, filepath.Dir(filepath.Dir(v))
	}
	return &l, nil
}

// viewUnder finds a view recorded by a path relative to some other working
// folder under cache root (every view is <root>/<identity>/views/<name>.csv):
// the absolute path and true, or false when view is absolute or not there.
func viewUnder(root, view string) (string, bool) {
	if filepath.IsAbs(view) {
		return "", false
	}
	id := filepath.Base(filepath.Dir(filepath.Dir(view)))
	v := filepath.Join(absPath(root), id, filepath.Base(filepath.Dir(view)), filepath.Base(view))
	if _, err := os.Stat(v); err != nil {
		return "", false
	}
	return v, true
}

// datasetBase is the folder that view paths are relative to.
func datasetBase(root string) string {
	if st, err := os.Stat(root); err == nil && !st.IsDir() {
		return filepath.Dir(root)
	}
	return root
}

func relTo(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// groupCommit appends batches to the cache from a goroutine of its own,
// at most once per commitInterval, each commit taking every batch that
// arrived since the last. A commit costs two fsyncs, milliseconds of
// waiting and of kernel CPU on most disks: made for each small batch in
// the pipeline's ordered hand-off it would hold up inference and take CPU
// from it. A crash loses at most the batches of the last interval and the
// commit in flight (they are recomputed on resume); a cancelled or
// finished run commits everything.
type groupCommit struct {
	w       *featcache.Writer
	mu      sync.Mutex
	keys    []featcache.Key // pending, in order
	rows    []float32
	err     error // the first failed commit; sticky
	kick    chan struct{}
	closing chan struct{}
	done    chan struct{}
}

// commitInterval is the shortest time between two cache commits.
const commitInterval = 100 * time.Millisecond

func newGroupCommit(w *featcache.Writer) *groupCommit {
	g := &groupCommit{w: w, kick: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	go g.loop()
	return g
}

// add queues one batch (copied) and returns the error of an earlier commit,
// if one failed.
func (g *groupCommit) add(keys []featcache.Key, rows []float32) error {
	g.mu.Lock()
	err := g.err
	if err == nil {
		g.keys = append(g.keys, keys...)
		g.rows = append(g.rows, rows...)
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case g.kick <- struct{}{}:
	default: // a commit is already due
	}
	return nil
}

func (g *groupCommit) loop() {
	defer close(g.done)
	var keys []featcache.Key
	var rows []float32
	commit := func() {
		g.mu.Lock()
		keys, g.keys = g.keys, keys[:0]
		rows, g.rows = g.rows, rows[:0]
		failed := g.err != nil
		g.mu.Unlock()
		if len(keys) == 0 || failed {
			return
		}
		if err := g.w.Append(keys, rows); err != nil {
			g.mu.Lock()
			g.err = err
			g.mu.Unlock()
		}
	}
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-g.kick:
		case <-g.closing:
			commit()
			return
		}
		select {
		case <-pace.C:
		case <-g.closing:
			commit()
			return
		}
		pace.Reset(commitInterval)
		commit()
	}
}

// close commits what is pending, stops the goroutine and returns the first
// commit error.
func (g *groupCommit) close() error {
	close(g.closing)
	<-g.done
	return g.err
}
