package segment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/objstore"
)

// ChunkRef is one sealed chunk found under a location.
type ChunkRef struct {
	Loc   *objstore.Location
	Rel   string // shard folder + "/" + chunk name
	Shard string // shard folder (relative to Loc)
	Size  int64
}

// ShardState is what a scan found in one shard folder.
type ShardState struct {
	Loc    *objstore.Location
	Dir    string
	Chunks []ChunkRef
	Done   *Done // nil when the shard is not complete
}

// Scan lists the shard folders below each location (an output root, a
// backbone folder or one shard folder) in one listing each. Folders are
// returned sorted by location order and name.
func Scan(ctx context.Context, locs []*objstore.Location) ([]*ShardState, error) {
	var out []*ShardState
	for _, loc := range locs {
		byDir := map[string]*ShardState{}
		var dirs []string
		get := func(dir string) *ShardState {
			s, ok := byDir[dir]
			if !ok {
				s = &ShardState{Loc: loc, Dir: dir}
				byDir[dir] = s
				dirs = append(dirs, dir)
			}
			return s
		}
		var doneRel, doneDir []string
		err := loc.Walk(ctx, "", func(o objstore.Object) error {
			dir, name := path.Split(o.Rel)
			dir = strings.TrimSuffix(dir, "/")
			switch {
			case strings.HasPrefix(name, "chunk-") && strings.HasSuffix(name, ".seg"):
				s := get(dir)
				s.Chunks = append(s.Chunks, ChunkRef{Loc: loc, Rel: o.Rel, Shard: dir, Size: o.Size})
			case name == DoneName:
				get(dir)
				doneRel = append(doneRel, o.Rel)
				doneDir = append(doneDir, dir)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for k, rel := range doneRel {
			data, err := loc.ReadAll(ctx, rel, 1<<20)
			if err != nil {
				return nil, err
			}
			var d Done
			if err := json.Unmarshal(data, &d); err != nil {
				return nil, fmt.Errorf("read %s: %w", loc.Describe(rel), err)
			}
			byDir[doneDir[k]].Done = &d
		}
		sort.Strings(dirs)
		for _, d := range dirs {
			out = append(out, byDir[d])
		}
	}
	return out, nil
}

// MergeOptions configures Merge.
type MergeOptions struct {
	// CacheRoot is the local feature cache root to merge into.
	CacheRoot string
	// AllowIncomplete merges shards without a completion marker too
	// (their sealed chunks); by default such shards are an error.
	AllowIncomplete bool
	// Downloads is how many chunks are fetched at once (default 8).
	Downloads int
	// Progress, when set, is called after each chunk from one goroutine.
	Progress func(done, total int)
}

// MergeSummary reports a merge.
type MergeSummary struct {
	BackboneID string             `json:"backbone_id"`
	Identity   featcache.Identity `json:"identity"`
	Model      string             `json:"model"`
	Options    json.RawMessage    `json:"backbone_options,omitempty"`
	Dataset    string             `json:"dataset"`
	CacheDir   string             `json:"cache_dir"`
	View       string             `json:"view"`
	Shards     int                `json:"shards"`
	Incomplete []string           `json:"incomplete,omitempty"`
	Chunks     int                `json:"chunks"`
	Entries    int                `json:"entries"`
	NewRows    int                `json:"new_rows"`
	KnownRows  int                `json:"known_rows"`
	Skipped    int                `json:"skipped"`
	Skips      []Skip             `json:"skips,omitempty"`
	// Providers lists "provider onnxruntime-version" pairs that computed
	// the rows, sorted; more than one means rows differ in the last bits.
	Providers []string `json:"providers"`
	Bytes     int64    `json:"bytes"`
	Seconds   float64  `json:"seconds"`
	RowsPerS  float64  `json:"rows_per_second"`
}

// ViewName is the view a dataset root's merged features are listed in:
// the root's last path element and a hash of the whole root.
func ViewName(root string) string {
	h := sha256.Sum256([]byte(root))
	base := root
	if i := strings.IndexByte(base, '?'); i >= 0 {
		base = base[:i]
	}
	base = path.Base(strings.TrimRight(base, "/"))
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base)
	if base == "" || base[0] == '_' {
		base = "dataset" + base
	}
	return base + "-" + hex.EncodeToString(h[:4])
}

// Merge copies the sealed chunks below locs into the local cache: rows are
// appended by content hash (a hash already cached keeps its row: first
// wins), and the view of the dataset lists every entry once, sorted by
// key. Merging the same segments again, or in another order, gives the
// same view and the same features per hash. Every chunk is verified. A
// shard without its completion marker (unless AllowIncomplete) or with
// chunks missing, and folders of more than one backbone, are refused
// before anything is written; a truncated or corrupt chunk, or one whose
// header names another backbone, stops the merge before the view is
// written (rows of sound chunks appended until then stay cached: they are
// valid, and the next merge finds them).
func Merge(ctx context.Context, locs []*objstore.Location, opt MergeOptions) (*MergeSummary, error) {
	start := time.Now()
	shards, err := Scan(ctx, locs)
	if err != nil {
		return nil, err
	}
	sum := &MergeSummary{}
	var chunks []ChunkRef
	id16 := ""
	for _, s := range shards {
		// The shard folder's full name (the location's own prefix when a
		// shard folder was given directly).
		full := strings.TrimSuffix(s.Loc.Prefix+s.Dir, "/")
		base := path.Base(full)
		if !strings.HasPrefix(base, "shard-") {
			continue
		}
		sum.Shards++
		owner := path.Base(path.Dir(full))
		if len(owner) != 16 {
			owner = "" // not under a backbone folder: identity comes from headers
		}
		if owner != "" {
			if id16 == "" {
				id16 = owner
			} else if owner != id16 {
				return nil, fmt.Errorf("merge: %s holds features of backbone %s, other segments are of backbone %s: merge one backbone at a time", s.Loc.Describe(s.Dir), owner, id16)
			}
		}
		switch {
		case s.Done == nil:
			sum.Incomplete = append(sum.Incomplete, s.Loc.Describe(s.Dir))
		case s.Done.Chunks != len(s.Chunks):
			return nil, fmt.Errorf("merge: %s: DONE.json lists %d chunks, %d found", s.Loc.Describe(s.Dir), s.Done.Chunks, len(s.Chunks))
		}
		chunks = append(chunks, s.Chunks...)
	}
	if len(sum.Incomplete) > 0 && !opt.AllowIncomplete {
		return nil, fmt.Errorf("merge: %d of %d shards are not complete (first: %s); finish them, or merge what is sealed with --allow-incomplete", len(sum.Incomplete), sum.Shards, sum.Incomplete[0])
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("merge: no sealed chunks found under %s", describe(locs))
	}
	sum.Chunks = len(chunks)

	// Chunks are fetched and verified Downloads at a time, and appended in
	// order.
	type fetched struct {
		h    *Header
		rows []float32
		err  error
	}
	n := opt.Downloads
	if n <= 0 {
		n = 8
	}
	results := make([]chan fetched, len(chunks))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	sem := make(chan struct{}, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for i, c := range chunks {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for j := i; j < len(chunks); j++ {
					results[j] <- fetched{err: ctx.Err()}
				}
				return
			}
			go func() {
				defer func() { <-sem }()
				data, err := c.Loc.ReadAll(ctx, c.Rel, 16<<30)
				if err != nil {
					results[i] <- fetched{err: err}
					return
				}
				h, rows, err := Decode(data, c.Loc.Describe(c.Rel))
				results[i] <- fetched{h: h, rows: rows, err: err}
			}()
		}
	}()
	var w *featcache.Writer
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	providers := map[string]bool{}
	var entries []featcache.ViewEntry
	var keys []featcache.Key
	var first *Header
	for i := range chunks {
		f := <-results[i]
		if f.err != nil {
			return nil, fmt.Errorf("merge: %w", f.err)
		}
		h := f.h
		if first == nil {
			first = h
			sum.BackboneID, sum.Identity, sum.Model, sum.Options, sum.Dataset = h.BackboneID, h.Identity, h.Model, h.Options, h.Dataset
			if w, err = featcache.OpenWriter(ctx, opt.CacheRoot, h.Identity, featcache.WriterOptions{Wait: true}); err != nil {
				return nil, err
			}
			sum.CacheDir = w.Dir()
		} else if h.BackboneID != first.BackboneID {
			return nil, fmt.Errorf("merge: %s holds features of backbone %s (model %s), %s of backbone %s (model %s): merge one backbone at a time",
				chunks[i].Loc.Describe(chunks[i].Rel), h.BackboneID[:16], h.Model, chunks[0].Loc.Describe(chunks[0].Rel), first.BackboneID[:16], first.Model)
		}
		providers[h.Provider+" onnxruntime "+h.ORTVersion] = true
		sum.Bytes += chunks[i].Size
		// One hash per row, in row order.
		keys = keys[:0]
		for r := 0; r < h.Rows; r++ {
			keys = append(keys, featcache.Key{})
		}
		for _, e := range h.Entries {
			keys[e.Row] = e.Hash
		}
		before := w.Len()
		if err := w.Append(keys, f.rows); err != nil {
			return nil, err
		}
		sum.NewRows += w.Len() - before
		sum.KnownRows += h.Rows - (w.Len() - before)
		for _, e := range h.Entries {
			entries = append(entries, featcache.ViewEntry{Path: e.Key, Label: e.Label, Split: e.Split, Key: e.Hash})
		}
		sum.Skipped += len(h.Skips)
		if len(sum.Skips) < 100 {
			sum.Skips = append(sum.Skips, h.Skips[:min(len(h.Skips), 100-len(sum.Skips))]...)
		}
		if opt.Progress != nil {
			opt.Progress(i+1, len(chunks))
		}
	}
	// The view: each key once (the smallest hash wins if two segments
	// disagree, so the result does not depend on the order of the inputs).
	sort.Slice(entries, func(a, b int) bool {
		if entries[a].Path != entries[b].Path {
			return entries[a].Path < entries[b].Path
		}
		return entries[a].Key.String() < entries[b].Key.String()
	})
	uniq := entries[:0]
	for i, e := range entries {
		if i > 0 && e.Path == entries[i-1].Path {
			continue
		}
		row, ok := w.Lookup(e.Key)
		if !ok {
			return nil, fmt.Errorf("merge: %s: hash %s has no row after appending (internal error)", e.Path, e.Key)
		}
		e.Row = row
		uniq = append(uniq, e)
	}
	sum.Entries = len(uniq)
	name := ViewName(first.Dataset)
	if err := featcache.WriteView(w.Dir(), name, uniq); err != nil {
		return nil, fmt.Errorf("merge: write view: %w", err)
	}
	sum.View = featcache.ViewPath(w.Dir(), name)
	for p := range providers {
		sum.Providers = append(sum.Providers, p)
	}
	sort.Strings(sum.Providers)
	if err := w.Close(); err != nil {
		return nil, err
	}
	w = nil
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.RowsPerS = float64(sum.NewRows+sum.KnownRows) / sum.Seconds
	}
	return sum, nil
}

func describe(locs []*objstore.Location) string {
	var s []string
	for _, l := range locs {
		s = append(s, l.String())
	}
	return strings.Join(s, ", ")
}

// ReadHeader reads and decodes only the header of chunk c (two ranged
// reads), for an index of its entries without its rows. The header is not
// verified against the chunk's checksum; Decode of the whole chunk does
// that when its rows are read.
func ReadHeader(ctx context.Context, c ChunkRef) (*Header, error) {
	where := c.Loc.Describe(c.Rel)
	pre, _, err := c.Loc.ReadRange(ctx, c.Rel, 0, int64(len(magic)+4))
	if err != nil {
		return nil, err
	}
	if len(pre) < len(magic)+4 || string(pre[:len(magic)]) != magic {
		return nil, fmt.Errorf("chunk %s: %w: not a segment chunk", where, ErrCorrupt)
	}
	hl := int64(binary.LittleEndian.Uint32(pre[len(magic):]))
	if hl > MaxHeader {
		return nil, fmt.Errorf("chunk %s: %w: header length %d does not fit", where, ErrCorrupt, hl)
	}
	hj, _, err := c.Loc.ReadRange(ctx, c.Rel, int64(len(magic)+4), hl)
	if err != nil {
		return nil, err
	}
	var h Header
	if int64(len(hj)) != hl {
		return nil, fmt.Errorf("chunk %s: %w: header of %d bytes, %d read", where, ErrCorrupt, hl, len(hj))
	}
	if err := json.Unmarshal(hj, &h); err != nil {
		return nil, fmt.Errorf("chunk %s: %w: header: %v", where, ErrCorrupt, err)
	}
	if h.Format != format || h.Version != version {
		return nil, fmt.Errorf("chunk %s: format %q version %d, this build reads %q version %d", where, h.Format, h.Version, format, version)
	}
	if err := h.Identity.Validate(); err != nil {
		return nil, fmt.Errorf("chunk %s: %w", where, err)
	}
	for i, e := range h.Entries {
		if e.Row < 0 || e.Row >= h.Rows {
			return nil, fmt.Errorf("chunk %s: %w: entry %d (%s) points at row %d of %d", where, ErrCorrupt, i, e.Key, e.Row, h.Rows)
		}
	}
	return &h, nil
}
