package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/objstore"
)

// Split codes of FeatureIndex.Splits.
const (
	SplitNone  uint8 = iota // no split folder
	SplitTrain              // "train"
	SplitVal                // "val"
	SplitTest               // "test"
)

// splitCode maps a view's split name to its code.
func splitCode(s string) (uint8, error) {
	switch s {
	case "":
		return SplitNone, nil
	case "train":
		return SplitTrain, nil
	case "val":
		return SplitVal, nil
	case "test":
		return SplitTest, nil
	}
	return 0, fmt.Errorf("unknown split %q", s)
}

// SplitName is the view's name of a split code.
func SplitName(c uint8) string {
	return [...]string{"", "train", "val", "test"}[c]
}

// IndexRowBytes is the most memory a FeatureIndex keeps per row, in
// bytes: label (4), split (1), content-hash prefix (8) and location (8 for
// a cache row and its place in block order; 4 per segment entry, so 17 for
// segments). Opening a local cache also holds the cache's own index (about 56
// bytes per cached row: hash, row, checksum and its hash-table slot), and
// building a segment index sorts 40 bytes per entry once. No paths are
// held.
const IndexRowBytes = 21

// FeatureIndex is a dataset's features without the features: the labels,
// splits and content hashes of every row, and where each row's features
// lie, so that they can be read block by block (head.Blocks) when the
// N x D matrix does not fit in memory. Rows are numbered as LoadFeatures
// numbers them for a cache view (the view's order); for segments they are
// ordered by a hash of each dataset key (LoadSegmentFeatures sorts by the
// key itself, which would mean holding every path), keeping one row per
// key as Merge does.
type FeatureIndex struct {
	Run     *LastRun
	Classes []string // sorted class names; Labels index it
	N, D    int
	Labels  []int32 // [N]
	Splits  []uint8 // [N] SplitNone, SplitTrain, SplitVal or SplitTest
	// Hashes are the first 8 bytes (big-endian) of each row's content
	// hash: the key of the content-hash subsample (SubsampleByHash).
	Hashes []uint64 // [N]
	Ident  featcache.Identity
	// Fingerprint is the hex SHA-256 of the rows' metadata in order: for a
	// cache view the same value as job.Fingerprint of LoadFeatures' result.
	Fingerprint string
	// Source describes where the features are read from, for people:
	// "cache view <path>" or "12 segments".
	Source string
	// Meter counts the feature buffers ReadBlock allocates (nil: none).
	Meter *head.MemMeter

	// A cache view: rows are read by cache row, in cache-row order, in
	// blocks of blockRows.
	reader    *featcache.Reader
	view      string   // view file, for Paths
	cacheRow  []uint32 // [N] the row's row in the cache
	order     []uint32 // [N] rows sorted by cache row
	blockRows int

	// Segments: every chunk is a block.
	locs      []*objstore.Location
	chunks    []segment.ChunkRef
	chunkOff  []int   // [chunks+1] first entry of each chunk in entryRow
	entryRow  []int32 // entry of every chunk (in chunk order) -> row, -1 when another entry won
	chunkRows []int32 // [chunks] feature rows stored in each chunk
}

// SetBlockRows sets the rows per block of a cache view (at least 1);
// segments keep their chunks as blocks.
func (x *FeatureIndex) SetBlockRows(n int) { x.blockRows = max(1, n) }

// NumBlocks is the number of blocks ReadBlock reads.
func (x *FeatureIndex) NumBlocks() int {
	if x.reader != nil {
		return (x.N + x.blockRows - 1) / x.blockRows
	}
	return len(x.chunks)
}

// BlockBytes is the most feature memory one ReadBlock call allocates: a
// row for a cache, the fetched and the decoded chunk for a segment.
func (x *FeatureIndex) BlockBytes() int64 {
	if x.reader != nil {
		return int64(4 * x.D)
	}
	var mx int64
	for c := range x.chunks {
		mx = max(mx, x.chunkBytes(c))
	}
	return mx
}

// chunkBytes is what reading chunk c holds at once: the object as
// fetched and its rows decoded.
func (x *FeatureIndex) chunkBytes(c int) int64 {
	return x.chunks[c].Size + int64(x.chunkRows[c])*int64(4*x.D)
}

// BlockRows is the number of rows of the largest block.
func (x *FeatureIndex) BlockRows() int {
	if x.reader != nil {
		return min(x.blockRows, x.N)
	}
	mx := 0
	for c := range x.chunks {
		mx = max(mx, x.chunkOff[c+1]-x.chunkOff[c])
	}
	return mx
}

// ReadBlock calls fn for every row of block b (head.Blocks).
func (x *FeatureIndex) ReadBlock(ctx context.Context, b int, in func(row int) bool, fn func(row int, feat []float32) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if x.reader != nil {
		feat := make([]float32, x.D)
		x.Meter.Add(int64(4 * x.D))
		defer x.Meter.Add(-int64(4 * x.D))
		for _, r := range x.order[b*x.blockRows : min(x.N, (b+1)*x.blockRows)] {
			if in != nil && !in(int(r)) {
				continue
			}
			if err := x.reader.Row(int(x.cacheRow[r]), feat); err != nil {
				return fmt.Errorf("read features of row %d of %s: %w", r, x.view, err)
			}
			if err := fn(int(r), feat); err != nil {
				return err
			}
		}
		return nil
	}
	c := x.chunks[b]
	x.Meter.Add(x.chunkBytes(b))
	defer x.Meter.Add(-x.chunkBytes(b))
	data, err := c.Loc.ReadAll(ctx, c.Rel, 16<<30)
	if err != nil {
		return err
	}
	h, rows, err := segment.Decode(data, c.Loc.Describe(c.Rel))
	if err != nil {
		return err
	}
	data = nil
	if len(h.Entries) != x.chunkOff[b+1]-x.chunkOff[b] || h.Identity.Dim != x.D {
		return fmt.Errorf("segments: %s changed since it was indexed (%d entries, was %d)", c.Loc.Describe(c.Rel), len(h.Entries), x.chunkOff[b+1]-x.chunkOff[b])
	}
	for i, e := range h.Entries {
		r := x.entryRow[x.chunkOff[b]+i]
		if r < 0 || in != nil && !in(int(r)) {
			continue
		}
		if err := fn(int(r), rows[e.Row*x.D:(e.Row+1)*x.D]); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the cache reader or the segment locations.
func (x *FeatureIndex) Close() error {
	var err error
	if x.reader != nil {
		err = x.reader.Close()
	}
	for _, l := range x.locs {
		l.Close()
	}
	x.locs = nil
	return err
}

// Bytes is the size of the full feature matrix, N*D*4 bytes.
func (x *FeatureIndex) Bytes() int64 { return int64(x.N) * int64(x.D) * 4 }

// Load gathers the features of rows (ascending, distinct) into a new
// matrix [len(rows)*D], in one pass over the blocks; its size is counted
// in Meter until Release.
func (x *FeatureIndex) Load(ctx context.Context, rows []int) ([]float32, error) {
	if !slices.IsSorted(rows) {
		return nil, fmt.Errorf("load rows: not in ascending order")
	}
	X := make([]float32, len(rows)*x.D)
	x.Meter.Add(int64(4 * len(X)))
	if len(rows) == 0 {
		return X, nil
	}
	got := 0
	for b := 0; b < x.NumBlocks(); b++ {
		in := func(row int) bool { _, ok := slices.BinarySearch(rows, row); return ok }
		err := x.ReadBlock(ctx, b, in, func(row int, feat []float32) error {
			i, _ := slices.BinarySearch(rows, row)
			copy(X[i*x.D:(i+1)*x.D], feat)
			got++
			return nil
		})
		if err != nil {
			x.Meter.Add(-int64(4 * len(X)))
			return nil, err
		}
	}
	if got != len(rows) {
		x.Meter.Add(-int64(4 * len(X)))
		return nil, fmt.Errorf("load rows: %d of %d rows found", got, len(rows))
	}
	return X, nil
}

// Release tells Meter that a matrix from Load is no longer used.
func (x *FeatureIndex) Release(X []float32) { x.Meter.Add(-int64(4 * len(X))) }

// Paths returns the dataset paths (keys) of rows (ascending), reading the
// view or the segment headers again: the index keeps no paths.
func (x *FeatureIndex) Paths(ctx context.Context, rows []int) ([]string, error) {
	out := make([]string, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	if !slices.IsSorted(rows) {
		return nil, fmt.Errorf("paths: rows not in ascending order")
	}
	if x.reader != nil {
		i := 0
		err := featcache.ReadViewEach(filepath.Dir(filepath.Dir(x.view)), strings.TrimSuffix(filepath.Base(x.view), ".csv"), func(e featcache.ViewEntry) error {
			if j, ok := slices.BinarySearch(rows, i); ok {
				out[j] = e.Path
			}
			i++
			return nil
		})
		return out, err
	}
	for ci, c := range x.chunks {
		h, err := segment.ReadHeader(ctx, c)
		if err != nil {
			return nil, err
		}
		if len(h.Entries) != x.chunkOff[ci+1]-x.chunkOff[ci] {
			return nil, fmt.Errorf("segments: %s changed since it was indexed", c.Loc.Describe(c.Rel))
		}
		for i, e := range h.Entries {
			if r := x.entryRow[x.chunkOff[ci]+i]; r >= 0 {
				if j, ok := slices.BinarySearch(rows, int(r)); ok {
					out[j] = e.Key
				}
			}
		}
	}
	return out, nil
}

// hashPrefix is the first 8 bytes of a content hash as a number.
func hashPrefix(k featcache.Key) uint64 { return binary.BigEndian.Uint64(k[:8]) }

// OpenViewIndex indexes the latest extraction under cacheRoot (or the view
// file view) as LoadFeatures would load it, without loading features.
// blockRows is the number of rows ReadBlock reads at a time, in cache
// order (at least 1).
func OpenViewIndex(cacheRoot, view string, blockRows int) (*FeatureIndex, error) {
	var run *LastRun
	if view == "" {
		var err error
		if run, err = ReadLastRun(cacheRoot); err != nil {
			return nil, err
		}
		view = run.View
	} else {
		if _, err := os.Stat(view); err != nil {
			if v, ok := viewUnder(cacheRoot, view); ok {
				view = v
			}
		}
		view = absPath(view)
		run = viewRun(cacheRoot, view)
	}
	dir := filepath.Dir(filepath.Dir(view))
	name := strings.TrimSuffix(filepath.Base(view), ".csv")
	r, err := featcache.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	x := &FeatureIndex{Run: run, D: r.Dim(), Ident: r.Identity(), reader: r, view: view, blockRows: max(1, blockRows),
		Source: "cache view " + view}
	fp := sha256.New()
	classIdx := map[string]int32{}
	err = featcache.ReadViewEach(dir, name, func(e featcache.ViewEntry) error {
		row, ok := r.Lookup(e.Key)
		if !ok {
			return fmt.Errorf("load features of %s: hash %s not in cache %s (run extract again)", e.Path, e.Key.String()[:16], r.Dir())
		}
		if row > 1<<32-1 {
			return fmt.Errorf("cache %s: row %d beyond 2^32", r.Dir(), row)
		}
		sc, err := splitCode(e.Split)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		c, ok := classIdx[e.Label]
		if !ok {
			c = int32(len(classIdx))
			classIdx[e.Label] = c
		}
		fmt.Fprintf(fp, "%q %q %q %x\n", e.Path, e.Label, e.Split, e.Key)
		x.Labels = append(x.Labels, c)
		x.Splits = append(x.Splits, sc)
		x.Hashes = append(x.Hashes, hashPrefix(e.Key))
		x.cacheRow = append(x.cacheRow, uint32(row))
		return nil
	})
	if err != nil {
		r.Close()
		return nil, err
	}
	x.N = len(x.Labels)
	if x.N == 0 {
		r.Close()
		return nil, fmt.Errorf("view %s lists no images with features", view)
	}
	x.Fingerprint = hex.EncodeToString(fp.Sum(nil))
	x.sortClasses(classIdx)
	x.order = make([]uint32, x.N)
	for i := range x.order {
		x.order[i] = uint32(i)
	}
	sort.SliceStable(x.order, func(a, b int) bool { return x.cacheRow[x.order[a]] < x.cacheRow[x.order[b]] })
	if len(run.Identity) == 0 {
		run.Identity, _ = json.Marshal(x.Ident)
	}
	return x, nil
}

// sortClasses renumbers Labels from first-seen order to sorted class names.
func (x *FeatureIndex) sortClasses(classIdx map[string]int32) {
	x.Classes = make([]string, 0, len(classIdx))
	for c := range classIdx {
		x.Classes = append(x.Classes, c)
	}
	sort.Strings(x.Classes)
	remap := make([]int32, len(classIdx))
	for i, c := range x.Classes {
		remap[classIdx[c]] = int32(i)
	}
	for i, l := range x.Labels {
		x.Labels[i] = remap[l]
	}
}

// OpenSegmentIndex indexes sealed segments (as LoadSegmentFeatures reads
// them) from their chunk headers alone: two small ranged reads per chunk,
// no features. Each dataset key is kept once: of several entries for one
// key, the one with the smallest content hash, as Merge and
// LoadSegmentFeatures keep it; rows are ordered by a SHA-256 of the key.
func OpenSegmentIndex(ctx context.Context, inputs []string) (_ *FeatureIndex, err error) {
	x := &FeatureIndex{}
	defer func() {
		if err != nil {
			x.Close()
		}
	}()
	for _, in := range inputs {
		l, err := objstore.Open(ctx, in)
		if err != nil {
			return nil, err
		}
		x.locs = append(x.locs, l)
	}
	shards, err := segment.Scan(ctx, x.locs)
	if err != nil {
		return nil, err
	}
	// ent is one chunk entry while the index is built (40 bytes).
	type ent struct {
		key   [16]byte // first 16 bytes of SHA-256 of the dataset key
		hash  uint64
		entry int32 // position in entryRow
		label int32
		split uint8
	}
	var ents []ent
	var first *segment.Header
	classIdx := map[string]int32{}
	for _, s := range shards {
		if len(s.Chunks) == 0 {
			continue
		}
		if s.Done == nil {
			return nil, fmt.Errorf("segments %s: the shard is not complete; finish it, or merge what is sealed with `cache merge --allow-incomplete`", s.Loc.Describe(s.Dir))
		}
		for _, c := range s.Chunks {
			h, err := segment.ReadHeader(ctx, c)
			if err != nil {
				return nil, err
			}
			if first == nil {
				first, x.D = h, h.Identity.Dim
			} else if h.Identity.ID() != first.Identity.ID() {
				return nil, fmt.Errorf("segments: %s holds features of backbone %s (model %s), others of backbone %s (model %s): use one backbone at a time",
					c.Loc.Describe(c.Rel), h.Identity.ID()[:16], h.Model, first.Identity.ID()[:16], first.Model)
			}
			x.chunkOff = append(x.chunkOff, len(ents))
			x.chunks = append(x.chunks, c)
			x.chunkRows = append(x.chunkRows, int32(h.Rows))
			for _, e := range h.Entries {
				sc, err := splitCode(e.Split)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", c.Loc.Describe(c.Rel), e.Key, err)
				}
				lab, ok := classIdx[e.Label]
				if !ok {
					lab = int32(len(classIdx))
					classIdx[e.Label] = lab
				}
				kh := sha256.Sum256([]byte(e.Key))
				var k16 [16]byte
				copy(k16[:], kh[:16])
				if len(ents) >= 1<<31-1 {
					return nil, fmt.Errorf("segments: more than 2^31 entries")
				}
				ents = append(ents, ent{key: k16, hash: hashPrefix(e.Hash), entry: int32(len(ents)), label: lab, split: sc})
			}
		}
	}
	if first == nil {
		return nil, fmt.Errorf("segments: no sealed chunks under %s", strings.Join(inputs, ", "))
	}
	x.chunkOff = append(x.chunkOff, len(ents))
	sort.Slice(ents, func(a, b int) bool {
		if c := bytes.Compare(ents[a].key[:], ents[b].key[:]); c != 0 {
			return c < 0
		}
		if ents[a].hash != ents[b].hash {
			return ents[a].hash < ents[b].hash
		}
		return ents[a].entry < ents[b].entry
	})
	x.entryRow = make([]int32, len(ents))
	for i := range x.entryRow {
		x.entryRow[i] = -1
	}
	fp := sha256.New()
	for i, e := range ents {
		if i > 0 && e.key == ents[i-1].key {
			continue
		}
		x.entryRow[e.entry] = int32(len(x.Labels))
		x.Labels = append(x.Labels, e.label)
		x.Splits = append(x.Splits, e.split)
		x.Hashes = append(x.Hashes, e.hash)
		fmt.Fprintf(fp, "%x %d %d %016x\n", e.key, e.label, e.split, e.hash)
	}
	ents = nil
	x.N = len(x.Labels)
	x.Fingerprint = hex.EncodeToString(fp.Sum(nil))
	x.sortClasses(classIdx)
	x.Ident = first.Identity
	var bopt BackboneOptions
	if len(first.Options) > 0 {
		if err := json.Unmarshal(first.Options, &bopt); err != nil {
			return nil, fmt.Errorf("segments: backbone options recorded in %s: %w", first.Dataset, err)
		}
	}
	idJSON, _ := json.Marshal(first.Identity)
	x.Run = &LastRun{Dataset: first.Dataset, Model: first.Model, View: SegmentsViewPrefix + strings.Join(inputs, ","),
		Identity: idJSON, Options: bopt, FeatureTensor: first.Identity.FeatureTensor}
	x.Source = fmt.Sprintf("%d segment chunks", len(x.chunks))
	return x, nil
}

// SubsampleByHash returns the k rows (ascending) among those for which in
// is true whose content hashes rank lowest (bottom-k by Hashes, ties by
// label, then row): the same cache or segments give the same rows on any
// machine and in any row order, since the hash is of the image's bytes.
func (x *FeatureIndex) SubsampleByHash(k int, in func(row int) bool) []int {
	var rows []int
	for r := 0; r < x.N; r++ {
		if in(r) {
			rows = append(rows, r)
		}
	}
	if k >= len(rows) {
		return rows
	}
	sort.Slice(rows, func(a, b int) bool {
		ra, rb := rows[a], rows[b]
		if x.Hashes[ra] != x.Hashes[rb] {
			return x.Hashes[ra] < x.Hashes[rb]
		}
		if x.Labels[ra] != x.Labels[rb] {
			return x.Labels[ra] < x.Labels[rb]
		}
		return ra < rb
	})
	rows = rows[:k]
	slices.Sort(rows)
	return rows
}
