package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
)

// SegmentsViewPrefix starts the View recorded for features loaded from
// segments: the locations follow, comma-separated.
const SegmentsViewPrefix = "segments:"

// LoadSegmentFeatures loads the features of sealed segments straight from
// their locations, without merging them into a cache first (a logical
// merge): every chunk is fetched and verified, each dataset key is kept
// once (as Merge keeps it), and the rows are gathered into one matrix in
// memory, sorted by key. Shards without their completion marker are
// refused, as are segments of more than one backbone.
func LoadSegmentFeatures(ctx context.Context, inputs []string) (*Features, error) {
	var locs []*objstore.Location
	defer func() {
		for _, l := range locs {
			l.Close()
		}
	}()
	for _, in := range inputs {
		l, err := objstore.Open(ctx, in)
		if err != nil {
			return nil, err
		}
		locs = append(locs, l)
	}
	shards, err := segment.Scan(ctx, locs)
	if err != nil {
		return nil, err
	}
	type entry struct {
		segment.Entry
		chunk int
	}
	var entries []entry
	var rows [][]float32
	var r []float32 // rows of the chunk being read
	first, err := eachChunk(shards, inputs, func(c segment.ChunkRef) (h *segment.Header, err error) {
		data, err := c.Loc.ReadAll(ctx, c.Rel, 16<<30)
		if err != nil {
			return nil, err
		}
		h, r, err = segment.Decode(data, c.Loc.Describe(c.Rel))
		return h, err
	}, func(_ segment.ChunkRef, h *segment.Header) error {
		for _, e := range h.Entries {
			entries = append(entries, entry{e, len(rows)})
		}
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	dim := first.Identity.Dim
	sort.Slice(entries, func(a, b int) bool {
		if entries[a].Key != entries[b].Key {
			return entries[a].Key < entries[b].Key
		}
		return entries[a].Hash.String() < entries[b].Hash.String()
	})
	uniq := entries[:0]
	for i, e := range entries {
		if i == 0 || e.Key != entries[i-1].Key {
			uniq = append(uniq, e)
		}
	}
	n := len(uniq)
	f := &Features{X: make([]float32, n*dim), N: n, D: dim, Ident: first.Identity}
	f.Entries = make([]featcache.ViewEntry, n)
	for i, e := range uniq {
		copy(f.X[i*dim:(i+1)*dim], rows[e.chunk][e.Row*dim:(e.Row+1)*dim])
		f.Entries[i] = featcache.ViewEntry{Path: e.Key, Label: e.Label, Split: e.Split, Key: e.Hash}
	}
	f.labelEntries()
	if f.Run, err = segmentsRun(first, inputs); err != nil {
		return nil, err
	}
	return f, nil
}

// segmentsRun is the extraction record of features read from the segments
// at inputs, first being the header of their first chunk.
func segmentsRun(first *segment.Header, inputs []string) (*LastRun, error) {
	var bopt BackboneOptions
	if len(first.Options) > 0 {
		if err := json.Unmarshal(first.Options, &bopt); err != nil {
			return nil, fmt.Errorf("segments: backbone options recorded in %s: %w", first.Dataset, err)
		}
	}
	idJSON, _ := json.Marshal(first.Identity)
	return &LastRun{Dataset: first.Dataset, Model: first.Model, View: SegmentsViewPrefix + strings.Join(inputs, ","),
		Identity: idJSON, Options: bopt, FeatureTensor: first.Identity.FeatureTensor}, nil
}

// eachChunk goes through the chunks of shards (read from inputs) in
// order: read gets a chunk's header, which must be of the first chunk's
// backbone, then use takes it. A shard with chunks but no completion
// marker is refused when it is reached. It returns the first chunk's
// header, or an error when there is no sealed chunk.
func eachChunk(shards []*segment.ShardState, inputs []string, read func(segment.ChunkRef) (*segment.Header, error),
	use func(segment.ChunkRef, *segment.Header) error) (*segment.Header, error) {
	var first *segment.Header
	for _, s := range shards {
		if len(s.Chunks) == 0 {
			continue
		}
		if s.Done == nil {
			return nil, fmt.Errorf("segments %s: the shard is not complete; finish it, or merge what is sealed with `cache merge --allow-incomplete`", s.Loc.Describe(s.Dir))
		}
		for _, c := range s.Chunks {
			h, err := read(c)
			if err != nil {
				return nil, err
			}
			if first == nil {
				first = h
			} else if err := sameBackbone(first, h, c.Loc.Describe(c.Rel)); err != nil {
				return nil, err
			}
			if err := use(c, h); err != nil {
				return nil, err
			}
		}
	}
	if first == nil {
		return nil, fmt.Errorf("segments: no sealed chunks under %s", strings.Join(inputs, ", "))
	}
	return first, nil
}

// sameBackbone refuses a chunk (header h, described by where) whose
// features come from another backbone than the first chunk's. It compares
// identities, not the recorded BackboneID, which only Decode verifies
// against the identity (OpenSegmentIndex reads headers alone).
func sameBackbone(first, h *segment.Header, where string) error {
	if h.Identity.ID() != first.Identity.ID() {
		return fmt.Errorf("segments: %s holds features of backbone %s (model %s), others of backbone %s (model %s): use one backbone at a time",
			where, h.Identity.ID()[:16], h.Model, first.Identity.ID()[:16], first.Model)
	}
	return nil
}
