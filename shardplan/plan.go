// Package shardplan splits a listed dataset into N shard manifests once,
// so that the tasks of a batch scheduler (Kubernetes Indexed Jobs, Slurm
// job arrays, AWS Batch and Google Cloud Batch array jobs, Cloud Run
// jobs) each read one manifest instead of listing the dataset again, and
// tells a task which shard is its own from the index its scheduler
// hands it.
//
// A plan folder (any objstore location) holds:
//
//	plan.json                       what was planned (dataset root, shard count, totals)
//	shards/00000-of-00016.csv       key,size,version,label,split — one row per image
//
// Shards are balanced by count (they differ by at most one image) and by
// bytes (largest images dealt first, in a snake order over the shards).
// plan.json is written last and only if absent: a plan folder is never
// overwritten, and a plan.json that exists names complete manifests.
package shardplan

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/source"
)

// Plan is plan.json.
type Plan struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Dataset is what the user named; Root is where keys are relative to
	// (a URL or an absolute local path).
	Dataset string      `json:"dataset"`
	Root    string      `json:"root"`
	Shards  int         `json:"shards"`
	Classes []string    `json:"classes"`
	Samples int         `json:"samples"`
	Bytes   int64       `json:"bytes"`
	Created time.Time   `json:"created"`
	Counts  []ShardInfo `json:"shard_info"`
}

// ShardInfo sizes one shard.
type ShardInfo struct {
	File    string `json:"file"`
	Samples int    `json:"samples"`
	Bytes   int64  `json:"bytes"`
}

const (
	planFormat  = "headtune-shard-plan"
	planVersion = 1
	// PlanFile is the name of the plan's description in its folder.
	PlanFile = "plan.json"
)

// ShardFile returns the manifest name of shard i of n.
func ShardFile(i, n int) string { return fmt.Sprintf("shards/%05d-of-%05d.csv", i, n) }

// Balance deals samples into n shards: the largest first, in the order
// 0..n-1, n-1..0, 0..n-1 ... (counts differ by at most one; bytes stay
// close), each shard then sorted by key. samples is not modified.
func Balance(samples []source.Sample, n int) [][]source.Sample {
	order := make([]int, len(samples))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		sa, sb := samples[order[a]], samples[order[b]]
		if sa.Size != sb.Size {
			return sa.Size > sb.Size
		}
		return sa.Key < sb.Key
	})
	out := make([][]source.Sample, n)
	for k, i := range order {
		round, pos := k/n, k%n
		if round%2 == 1 {
			pos = n - 1 - pos
		}
		out[pos] = append(out[pos], samples[i])
	}
	for _, sh := range out {
		sort.Slice(sh, func(a, b int) bool { return sh[a].Key < sh[b].Key })
	}
	return out
}

// Options configures Write.
type Options struct {
	Shards int
	// Now stamps plan.json (time.Now when zero).
	Now time.Time
}

// ErrPlanExists is matched by Write's error when the folder already holds
// a plan.
var ErrPlanExists = errors.New("a shard plan already exists there")

// Write plans ds into opt.Shards shards under out.
func Write(ctx context.Context, ds *source.Dataset, out *objstore.Location, opt Options) (*Plan, error) {
	n := opt.Shards
	if n < 1 {
		return nil, fmt.Errorf("plan: %d shards; need at least 1", n)
	}
	if n > len(ds.Samples) {
		return nil, fmt.Errorf("plan: %d shards for %d images; use at most one shard per image", n, len(ds.Samples))
	}
	if ok, err := out.Exists(ctx, PlanFile); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("plan %s: %w; choose another --out or delete it", out.Describe(PlanFile), ErrPlanExists)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := &Plan{Format: planFormat, Version: planVersion, Dataset: ds.URL, Root: ds.Root, Shards: n,
		Classes: ds.Classes, Samples: len(ds.Samples), Bytes: ds.Bytes(), Created: now.UTC()}
	var buf bytes.Buffer
	for i, sh := range Balance(ds.Samples, n) {
		buf.Reset()
		if err := encodeShard(&buf, sh); err != nil {
			return nil, err
		}
		info := ShardInfo{File: ShardFile(i, n), Samples: len(sh)}
		for _, s := range sh {
			info.Bytes += s.Size
		}
		if err := out.WriteAll(ctx, info.File, buf.Bytes()); err != nil {
			return nil, err
		}
		p.Counts = append(p.Counts, info)
	}
	data, _ := json.MarshalIndent(p, "", "  ")
	created, err := out.CreateIfAbsent(ctx, PlanFile, append(data, '\n'))
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, fmt.Errorf("plan %s: %w (another plan command won the race); choose another --out", out.Describe(PlanFile), ErrPlanExists)
	}
	return p, nil
}

var shardHeader = []string{"key", "size", "version", "label", "split"}

func encodeShard(w io.Writer, samples []source.Sample) error {
	cw := csv.NewWriter(w)
	cw.Write(shardHeader)
	rec := make([]string, 5)
	for _, s := range samples {
		rec[0], rec[1], rec[2], rec[3], rec[4] = s.Key, strconv.FormatInt(s.Size, 10), s.Version, s.Label, s.Split
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// Read reads plan.json from the plan folder.
func Read(ctx context.Context, loc *objstore.Location) (*Plan, error) {
	data, err := loc.ReadAll(ctx, PlanFile, 64<<20)
	if err != nil {
		if objstore.IsNotExist(err) {
			return nil, fmt.Errorf("no shard plan at %s: run `headtune plan DATASET --shards N --out %s` first", loc.Describe(PlanFile), loc)
		}
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", loc.Describe(PlanFile), err)
	}
	if p.Format != planFormat || p.Version != planVersion {
		return nil, fmt.Errorf("read %s: format %q version %d, want %q version %d", loc.Describe(PlanFile), p.Format, p.Version, planFormat, planVersion)
	}
	if p.Shards < 1 || len(p.Counts) != p.Shards {
		return nil, fmt.Errorf("read %s: %d shards but %d shard entries", loc.Describe(PlanFile), p.Shards, len(p.Counts))
	}
	return &p, nil
}

// ReadShard reads the manifest of shard i.
func ReadShard(ctx context.Context, loc *objstore.Location, p *Plan, i int) ([]source.Sample, error) {
	if i < 0 || i >= p.Shards {
		return nil, fmt.Errorf("shard %d: the plan has shards 0..%d", i, p.Shards-1)
	}
	name := ShardFile(i, p.Shards)
	where := loc.Describe(name)
	data, err := loc.ReadAll(ctx, name, 8<<30)
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = len(shardHeader)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	for k, h := range shardHeader {
		if head[k] != h {
			return nil, fmt.Errorf("read %s: header column %d is %q, want %q", where, k+1, head[k], h)
		}
	}
	var out []source.Sample
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", where, err)
		}
		line, _ := cr.FieldPos(0)
		size, err := strconv.ParseInt(rec[1], 10, 64)
		if err != nil || rec[0] == "" || rec[3] == "" {
			return nil, fmt.Errorf("read %s:%d: malformed row", where, line)
		}
		out = append(out, source.Sample{Key: rec[0], Size: size, Version: rec[2], Label: rec[3], Split: rec[4]})
	}
	if len(out) != p.Counts[i].Samples {
		return nil, fmt.Errorf("read %s: %d rows, plan.json says %d", where, len(out), p.Counts[i].Samples)
	}
	return out, nil
}
