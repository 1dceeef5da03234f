package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
)

// MergeOptions configures MergeSegments.
type MergeOptions struct {
	// Inputs locate segment outputs: an output root, a backbone folder or
	// shard folders (objstore URLs or local folders).
	Inputs    []string
	CacheRoot string // local feature cache (featcache.DefaultDir when empty)
	// AllowIncomplete merges the sealed chunks of unfinished shards too.
	AllowIncomplete bool
	Downloads       int
	Progress        func(done, total int)
	// KeepLastRun leaves the cache's record of the latest extraction alone
	// (by default the merged dataset becomes what `train` reads).
	KeepLastRun bool
}

// MergeSegments merges sealed segments into the local feature cache (see
// segment.Merge) and records the merged dataset as the cache's latest
// extraction, so that `headtune train` with no arguments trains on it.
func MergeSegments(ctx context.Context, opt MergeOptions) (*segment.MergeSummary, error) {
	if len(opt.Inputs) == 0 {
		return nil, fmt.Errorf("merge: no segment locations given")
	}
	root, err := cacheRoot(opt.CacheRoot)
	if err != nil {
		return nil, err
	}
	var locs []*objstore.Location
	defer func() {
		for _, l := range locs {
			l.Close()
		}
	}()
	for _, in := range opt.Inputs {
		l, err := objstore.Open(ctx, in)
		if err != nil {
			return nil, err
		}
		locs = append(locs, l)
	}
	sum, err := segment.Merge(ctx, locs, segment.MergeOptions{
		CacheRoot: root, AllowIncomplete: opt.AllowIncomplete, Downloads: opt.Downloads, Progress: opt.Progress,
	})
	if err != nil || opt.KeepLastRun {
		return sum, err
	}
	var bopt BackboneOptions
	if len(sum.Options) > 0 {
		if err := json.Unmarshal(sum.Options, &bopt); err != nil {
			return sum, fmt.Errorf("merge: backbone options recorded in the segments: %w", err)
		}
	}
	idJSON, _ := json.Marshal(sum.Identity)
	last := LastRun{Dataset: sum.Dataset, Model: sum.Model, CacheDir: sum.CacheDir, View: sum.View,
		Identity: idJSON, Options: bopt, FeatureTensor: sum.Identity.FeatureTensor}
	data, _ := json.MarshalIndent(last, "", "  ")
	if err := backbone.WriteFileAtomic(filepath.Join(root, lastRunFile), append(data, '\n')); err != nil {
		return sum, fmt.Errorf("record last run: %w", err)
	}
	return sum, nil
}
