package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/headtune/headtune/featcache"
)

// Features is an extracted dataset loaded from the cache: one row per image
// that has features, with its label and split.
type Features struct {
	Run     *LastRun
	Classes []string  // sorted class names; Labels index it
	X       []float32 // [N*D] row-major, owned by the caller
	N, D    int
	Labels  []int32  // [N]
	Splits  []string // [N] "train", "val", "test" or ""
	Paths   []string // [N] as recorded in the view (relative to the dataset)
	Entries []featcache.ViewEntry
	Ident   featcache.Identity
}

// LoadFeatures loads the features of the latest extraction under cacheRoot
// (or, when view is not empty, of that view file).
func LoadFeatures(cacheRoot, view string) (*Features, error) {
	run, view, dir, name, err := resolveView(cacheRoot, view)
	if err != nil {
		return nil, err
	}
	entries, err := featcache.ReadView(dir, name)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("view %s lists no images with features", view)
	}
	r, err := featcache.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	X, n, d, err := featcache.LoadMatrix(r, entries)
	if err != nil {
		return nil, err
	}
	f := &Features{Run: run, X: X, N: n, D: d, Entries: entries, Ident: r.Identity()}
	if len(run.Identity) == 0 {
		run.Identity, _ = json.Marshal(f.Ident)
	}
	f.labelEntries()
	return f, nil
}

// resolveView finds the view file that LoadFeatures and OpenViewIndex read:
// the latest extraction's under cacheRoot when view is empty, else view
// (looked for under cacheRoot when it is not there from here). It returns
// the record of the extraction behind it, the view's path, its identity
// folder dir and its name there.
func resolveView(cacheRoot, view string) (run *LastRun, path, dir, name string, err error) {
	if view == "" {
		if run, err = ReadLastRun(cacheRoot); err != nil {
			return nil, "", "", "", err
		}
		view = run.View
	} else {
		// A relative view that is not there from here was recorded by an
		// older headtune (augment records) relative to another folder.
		if _, err := os.Stat(view); err != nil {
			if v, ok := viewUnder(cacheRoot, view); ok {
				view = v
			}
		}
		view = absPath(view)
		run = viewRun(cacheRoot, view)
	}
	dir, name = viewDirName(view)
	return run, view, dir, name, nil
}

// viewDirName splits a view file's path, <identity dir>/views/<name>.csv,
// into the identity folder and the view's name, as featcache.ReadView
// takes them.
func viewDirName(view string) (dir, name string) {
	return filepath.Dir(filepath.Dir(view)), strings.TrimSuffix(filepath.Base(view), ".csv")
}

// labelEntries sets Classes (the entries' labels, sorted), Labels, Splits
// and Paths from f.Entries, so that a cache view and merged segments label
// their rows alike.
func (f *Features) labelEntries() {
	classSet := map[string]bool{}
	for _, e := range f.Entries {
		classSet[e.Label] = true
	}
	f.Classes = f.Classes[:0]
	for c := range classSet {
		f.Classes = append(f.Classes, c)
	}
	sort.Strings(f.Classes)
	idx := map[string]int32{}
	for i, c := range f.Classes {
		idx[c] = int32(i)
	}
	n := len(f.Entries)
	f.Labels = make([]int32, n)
	f.Splits = make([]string, n)
	f.Paths = make([]string, n)
	for i, e := range f.Entries {
		f.Labels[i] = idx[e.Label]
		f.Splits[i] = e.Split
		f.Paths[i] = e.Path
	}
}

// viewRun is the record of the extraction that computed the features view
// (an absolute path) lists: the identity folder's own record, else the
// cache root's when it was made into the same folder. A record of another
// dataset into the same identity still names the right backbone (the
// identity fixes the model file, tensor and preprocessing) but not the
// dataset, which is then left empty. Model is empty when neither record
// exists (caches written before identity folders kept one).
func viewRun(cacheRoot, view string) *LastRun {
	dir := filepath.Dir(filepath.Dir(view))
	run := &LastRun{}
	if l, err := ReadLastRun(dir); err == nil {
		run = l
	} else if l, err := ReadLastRun(cacheRoot); err == nil && sameFile(filepath.Dir(filepath.Dir(l.View)), dir) {
		run = l
	}
	if !sameFile(run.View, view) {
		run.Dataset = ""
	}
	run.View, run.CacheDir = view, dir
	return run
}

func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// SplitRows returns the rows of each named split ("train", "val", "test").
func (f *Features) SplitRows() map[string][]int {
	out := map[string][]int{}
	for i, s := range f.Splits {
		out[s] = append(out[s], i)
	}
	return out
}
