package job

import (
	"context"
	"fmt"
	"time"

	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/pipeline"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

// PlanOptions configure Plan.
type PlanOptions struct {
	// Dataset is a local folder or CSV manifest, or an object storage URL
	// of a prefix or a CSV manifest object.
	Dataset string
	// Shards is the number of shard manifests (one scheduler task each).
	Shards int
	// Out is the plan location (URL or folder); it must not hold a plan.
	Out string
}

// PlanResult reports a plan.
type PlanResult struct {
	shardplan.Plan
	// Location is where plan.json was written.
	Location string `json:"location"`
	// Ignored counts objects passed over (not images, outside class
	// folders); FirstIgnored is the first of them, with the reason.
	Ignored      int    `json:"ignored"`
	FirstIgnored string `json:"first_ignored,omitempty"`
}

// Plan lists a dataset once and writes opt.Shards shard manifests, balanced
// by count and bytes, for `extract --plan` tasks.
func Plan(ctx context.Context, opt PlanOptions) (*PlanResult, error) {
	ds, err := source.Open(ctx, opt.Dataset)
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	if err := checkClasses(opt.Dataset, ds.Classes); err != nil {
		return nil, err
	}
	out, err := objstore.Create(ctx, opt.Out)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p, err := shardplan.Write(ctx, ds, out, shardplan.Options{Shards: opt.Shards})
	if err != nil {
		return nil, err
	}
	res := &PlanResult{Plan: *p, Location: out.Describe(shardplan.PlanFile), Ignored: ds.IgnoredCount}
	if len(ds.Ignored) > 0 {
		res.FirstIgnored = ds.Ignored[0].Path + ": " + ds.Ignored[0].Reason
	}
	return res, nil
}

// ShardOptions configure ExtractShard.
type ShardOptions struct {
	Env
	Backbone BackboneOptions
	// Plan locates the plan; Out the segment output ("" = the plan's
	// segments/ folder).
	Plan, Out string
	// Shard is "i/N" or "i"; empty takes the index from the scheduler's
	// environment (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID, ...).
	Shard string
	// ChunkRows is the images per sealed chunk (default 1024); ClaimTTL how
	// long another attempt's claim is honoured (default 15 min).
	ChunkRows int
	ClaimTTL  time.Duration
	BatchSize int
	Workers   int
	// Version is recorded in each chunk.
	Version  string
	Progress func(pipeline.ShardProgress)
	OnSkip   func(pipeline.Failure)
	Log      func(string)
}

// ExtractShard runs one task of a shard plan (see pipeline.ExtractShard).
func ExtractShard(ctx context.Context, opt ShardOptions) (*pipeline.ShardSummary, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	bb, err := opt.openBackbone(opt.Backbone, false)
	if err != nil {
		return nil, err
	}
	defer bb.Close()
	return pipeline.ExtractShard(ctx, bb, pipeline.ShardOptions{
		Plan: opt.Plan, Out: opt.Out, Shard: opt.Shard, ChunkRows: opt.ChunkRows, ClaimTTL: opt.ClaimTTL,
		CacheRoot: root, BatchSize: opt.BatchSize, Workers: opt.Workers, Version: opt.Version,
		Progress: opt.Progress, OnSkip: opt.OnSkip, Log: opt.Log,
	})
}

// MergeOptions configure Merge.
type MergeOptions struct {
	Env
	// Inputs locate segment outputs (roots, backbone folders or shard
	// folders).
	Inputs          []string
	AllowIncomplete bool
	Downloads       int
	Progress        func(done, total int)
}

// Merge merges sealed segments into the local feature cache and makes the
// merged dataset the one Train reads by default.
func Merge(ctx context.Context, opt MergeOptions) (*segment.MergeSummary, error) {
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	return pipeline.MergeSegments(ctx, pipeline.MergeOptions{
		Inputs: opt.Inputs, CacheRoot: root, AllowIncomplete: opt.AllowIncomplete,
		Downloads: opt.Downloads, Progress: opt.Progress,
	})
}

// extractLocation is Extract for a dataset named by a URL: listed by
// package source, streamed from the store by the decode workers.
func extractLocation(ctx context.Context, opt ExtractOptions) (*ExtractResult, error) {
	if opt.Augment > 0 {
		// Augmentation is not wired to object storage reads yet; refuse
		// rather than quietly extract without the views.
		return nil, fmt.Errorf("%s: augmented views (--augment) work on local datasets only, not on object storage URLs yet", opt.Dataset)
	}
	ds, err := source.Open(ctx, opt.Dataset)
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	if err := checkClasses(opt.Dataset, ds.Classes); err != nil {
		return nil, err
	}
	opt.reportIgnored(ds.Ignored)
	root, err := opt.CacheRoot()
	if err != nil {
		return nil, err
	}
	bb, err := opt.openBackbone(opt.Backbone, false)
	if err != nil {
		return nil, err
	}
	defer bb.Close()
	sum, err := pipeline.ExtractSource(ctx, bb, ds, pipeline.ExtractOptions{
		CacheRoot: root, BatchSize: opt.BatchSize, Workers: opt.Workers, WaitLock: opt.WaitLock,
		Progress: opt.Progress, OnSkip: opt.OnSkip,
	})
	if sum == nil {
		return nil, err
	}
	res := &ExtractResult{ExtractSummary: *sum, Backbone: bb.Name, FeatureTensor: bb.Choice.Tensor}
	if err != nil {
		return res, err
	}
	if sum.Computed+sum.Reused == 0 {
		return res, fmt.Errorf("%s: none of the %d images could be used (see the skipped files)", opt.Dataset, sum.Images)
	}
	return res, nil
}
