package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

// ShardOptions configures ExtractShard.
type ShardOptions struct {
	// Plan locates the shard plan (objstore URL or local folder).
	Plan string
	// Out locates the segment output; "" means the plan's segments/ folder.
	Out string
	// Shard is the --shard flag ("i/N" or "i"); "" takes the index from the
	// scheduler's environment (shardplan.ResolveIndex).
	Shard  string
	Getenv func(string) string // os.Getenv when nil
	// ChunkRows is M: a sealed chunk covers M rows of the shard manifest
	// (default 1024), so a restarted task loses at most M images of work.
	// Every attempt at a shard must use the same M.
	ChunkRows int
	CacheRoot string // local feature cache (featcache.DefaultDir when empty)
	BatchSize int
	Workers   int
	// ClaimTTL is how long another attempt's claim on a chunk is honoured
	// (default 15 minutes); a claim of a dead process on this host is
	// taken over at once.
	ClaimTTL time.Duration
	// Poll is how often a task that has nothing left to claim checks the
	// chunks other attempts hold (default 2 s).
	Poll time.Duration
	// Version is recorded in each chunk (the headtune version).
	Version  string
	Progress func(ShardProgress)
	OnSkip   func(Failure)
	// Log, when set, receives one-line notes (which index source was used,
	// chunks sealed, claims taken over).
	Log func(string)
}

// ShardProgress is a snapshot of a running shard.
type ShardProgress struct {
	Chunk, Chunks int
	Done, Total   int // images finished in this run / in the shard
	Computed      int
	Elapsed       time.Duration
}

// ShardSummary reports one shard task.
type ShardSummary struct {
	Shard      int    `json:"shard"`
	Shards     int    `json:"shards"`
	IndexFrom  string `json:"index_from"`
	Out        string `json:"out"`
	BackboneID string `json:"backbone_id"`
	Images     int    `json:"images"`
	Chunks     int    `json:"chunks"`
	// FoundSealed chunks were sealed before this run started; Sealed by
	// this run; SealedByOther by another attempt while this one ran.
	FoundSealed   int          `json:"found_sealed"`
	Sealed        int          `json:"sealed"`
	SealedByOther int          `json:"sealed_by_other"`
	Computed      int          `json:"computed"`
	Reused        int          `json:"reused"`
	Skipped       int          `json:"skipped"`
	Skips         []SkipRecord `json:"skips,omitempty"`
	// AlreadyDone: the shard was complete before this run (it did nothing);
	// Completed: this run wrote the completion marker; otherwise another
	// attempt wrote it first.
	AlreadyDone bool    `json:"already_done,omitempty"`
	Completed   bool    `json:"completed"`
	Retries     int64   `json:"read_retries"`
	Seconds     float64 `json:"seconds"`
	ImagesPerS  float64 `json:"computed_images_per_second"`
}

// claim is a chunk's claim object: a hint that a task is computing it.
type claim struct {
	Attempt string    `json:"attempt"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Time    time.Time `json:"time"`
}

// beforeClaim, when set, runs after ExtractShard found chunk c unsealed
// and before it tries to claim it. It is a test seam: another attempt
// that seals c and releases its claim in exactly this window must not
// make this one compute c again (TestExtractShardClaimRace).
var beforeClaim func(c int)

// ExtractShard runs one shard of a plan: the shard's images are read from
// the dataset's location, their features computed into the local cache,
// and every ChunkRows images sealed as a chunk under the output; when all
// chunks are sealed the shard's completion marker is written (if no other
// attempt wrote it first). A shard already complete is left alone; a
// restarted task skips sealed chunks; two attempts on one shard share its
// chunks through claims instead of computing each twice. Images deleted
// or changed since the plan, or undecodable, are skipped and recorded in
// their chunk.
func ExtractShard(ctx context.Context, bb *Backbone, opt ShardOptions) (*ShardSummary, error) {
	start := time.Now()
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if bb.Session == nil {
		return nil, errors.New("extract: backbone has no session")
	}
	m := opt.ChunkRows
	if m <= 0 {
		m = 1024
	}
	ttl := opt.ClaimTTL
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	poll := opt.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			opt.Log(fmt.Sprintf(format, a...))
		}
	}
	root, err := cacheRoot(opt.CacheRoot)
	if err != nil {
		return nil, err
	}

	planLoc, err := objstore.Open(ctx, opt.Plan)
	if err != nil {
		return nil, err
	}
	defer planLoc.Close()
	plan, err := shardplan.Read(ctx, planLoc)
	if err != nil {
		return nil, err
	}
	ix, err := shardplan.ResolveIndex(opt.Shard, plan.Shards, getenv)
	if err != nil {
		return nil, err
	}
	logf("shard %d of %d (index from %s)", ix.Shard, ix.Shards, ix.From)
	outRoot := planLoc.Sub("segments")
	if opt.Out != "" {
		o, err := objstore.Create(ctx, opt.Out)
		if err != nil {
			return nil, err
		}
		defer o.Close()
		outRoot = o
	}
	out := outRoot.Sub(segment.ShardDir(bb.Identity, ix.Shard, ix.Shards))
	sum := &ShardSummary{Shard: ix.Shard, Shards: ix.Shards, IndexFrom: ix.From, Out: out.String(), BackboneID: bb.Identity.ID()}
	finish := func() {
		sum.Seconds = time.Since(start).Seconds()
		if sum.Seconds > 0 {
			sum.ImagesPerS = float64(sum.Computed) / sum.Seconds
		}
	}
	if done, err := out.Exists(ctx, segment.DoneName); err != nil {
		return nil, err
	} else if done {
		sum.AlreadyDone = true
		logf("shard %d is already complete (%s): nothing to do", ix.Shard, out.Describe(segment.DoneName))
		finish()
		return sum, nil
	}
	items, err := shardplan.ReadShard(ctx, planLoc, plan, ix.Shard)
	if err != nil {
		return nil, err
	}
	dsLoc, err := objstore.Open(ctx, plan.Root)
	if err != nil {
		return nil, fmt.Errorf("open the plan's dataset: %w", err)
	}
	defer dsLoc.Close()
	sum.Images = len(items)
	nchunks := (len(items) + m - 1) / m
	sum.Chunks = nchunks

	// Chunks sealed by earlier attempts: trust complete uploads (the
	// trailer checks out), replace truncated ones.
	sealed := make([]bool, nchunks)
	err = out.Walk(ctx, "", func(o objstore.Object) error {
		var c int
		if n, _ := fmt.Sscanf(o.Rel, "chunk-%06d.seg", &c); n != 1 || o.Rel != segment.ChunkName(c) || c < 0 || c >= nchunks {
			return nil
		}
		tr, _, err := out.ReadRange(ctx, o.Rel, max(o.Size-segment.TrailerSize, 0), segment.TrailerSize)
		if err != nil {
			return err
		}
		if err := segment.CheckTrailer(tr, o.Size, out.Describe(o.Rel)); err != nil {
			logf("%v: deleting it, the chunk is computed again", err)
			return out.Delete(ctx, o.Rel)
		}
		sealed[c] = true
		sum.FoundSealed++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sum.FoundSealed > 0 {
		logf("%d of %d chunks already sealed: resuming", sum.FoundSealed, nchunks)
	}

	host, _ := os.Hostname()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	me := claim{Attempt: hex.EncodeToString(rnd[:]), Host: host, PID: os.Getpid()}
	tryClaim := func(c int) (bool, error) {
		me.Time = time.Now().UTC()
		data, _ := json.Marshal(me)
		name := segment.ClaimName(c)
		ok, err := out.CreateIfAbsent(ctx, name, data)
		if err != nil || ok {
			return ok, err
		}
		raw, err := out.ReadAll(ctx, name, 1<<16)
		if objstore.IsNotExist(err) {
			return false, nil // released meanwhile: the next pass sees the chunk or claims it
		}
		if err != nil {
			return false, err
		}
		var other claim
		stale := json.Unmarshal(raw, &other) != nil
		switch {
		case stale:
		case other.Host == host && other.PID != me.PID && !alive(other.PID):
			stale = true
			logf("chunk %d: claimed by process %d on this host, which is gone: taking it over", c, other.PID)
		case time.Since(other.Time) > ttl:
			stale = true
			logf("chunk %d: claim of %s (pid %d) is %s old, past the %s claim TTL: taking it over", c, other.Host, other.PID, time.Since(other.Time).Round(time.Second), ttl)
		}
		if !stale {
			return false, nil
		}
		if err := out.Delete(ctx, name); err != nil {
			return false, err
		}
		return out.CreateIfAbsent(ctx, name, data)
	}

	prog := ShardProgress{Chunks: nchunks, Total: len(items)}
	for c := range sealed {
		if sealed[c] {
			prog.Total -= min(m, len(items)-c*m)
		}
	}
	remaining := nchunks - sum.FoundSealed
	waiting := false
	for remaining > 0 {
		progressed := false
		for c := 0; c < nchunks; c++ {
			if sealed[c] {
				continue
			}
			if err := ctx.Err(); err != nil {
				finish()
				return sum, err
			}
			if ok, err := out.Exists(ctx, segment.ChunkName(c)); err != nil {
				return sum, err
			} else if ok {
				sealed[c], remaining, progressed = true, remaining-1, true
				sum.SealedByOther++
				prog.Total -= min(m, len(items)-c*m)
				continue
			}
			if beforeClaim != nil {
				beforeClaim(c)
			}
			got, err := tryClaim(c)
			if err != nil {
				return sum, err
			}
			if !got {
				continue
			}
			// The other attempt may have sealed the chunk and released its
			// claim between the check above and our claim: a sealer writes
			// the chunk before it deletes the claim, so holding the claim
			// and then finding no chunk means nobody else is computing it.
			if ok, err := out.Exists(ctx, segment.ChunkName(c)); err != nil {
				_ = out.Delete(context.WithoutCancel(ctx), segment.ClaimName(c))
				return sum, err
			} else if ok {
				_ = out.Delete(ctx, segment.ClaimName(c))
				sealed[c], remaining, progressed = true, remaining-1, true
				sum.SealedByOther++
				prog.Total -= min(m, len(items)-c*m)
				continue
			}
			lo, hi := c*m, min((c+1)*m, len(items))
			prog.Chunk = c
			created, err := sealChunk(ctx, bb, opt, root, dsLoc, out, plan, ix, c, lo, items[lo:hi], me, sum, &prog, start)
			if err != nil {
				// Stopped (SIGTERM from the scheduler, a store outage): let
				// another attempt have the chunk now rather than after the
				// claim TTL. The rows computed so far stay in the local cache.
				_ = out.Delete(context.WithoutCancel(ctx), segment.ClaimName(c))
				finish()
				return sum, err
			}
			_ = out.Delete(ctx, segment.ClaimName(c))
			sealed[c], remaining, progressed = true, remaining-1, true
			if created {
				sum.Sealed++
				logf("sealed %s (%d images)", out.Describe(segment.ChunkName(c)), hi-lo)
			} else {
				sum.SealedByOther++
			}
		}
		if remaining > 0 && !progressed {
			if !waiting {
				logf("%d chunks are being computed by another attempt: waiting for them", remaining)
				waiting = true
			}
			select {
			case <-ctx.Done():
				finish()
				return sum, ctx.Err()
			case <-time.After(poll):
			}
		}
	}
	sum.Retries = dsLoc.Stats().Retries.Load()
	done := segment.Done{BackboneID: bb.Identity.ID(), Shard: ix.Shard, Shards: ix.Shards, Chunks: nchunks,
		Entries: len(items) - sum.Skipped, Skipped: sum.Skipped, Attempt: me.Attempt, Host: host, Completed: time.Now().UTC()}
	data, _ := json.MarshalIndent(done, "", "  ")
	created, err := out.CreateIfAbsent(ctx, segment.DoneName, append(data, '\n'))
	if err != nil {
		return sum, err
	}
	sum.Completed = created
	if created {
		logf("shard %d complete: %s", ix.Shard, out.Describe(segment.DoneName))
	} else {
		logf("shard %d was completed by another attempt", ix.Shard)
	}
	finish()
	return sum, nil
}

// sealChunk computes (or finds in the local cache) the features of one
// chunk's items and uploads the chunk; created is false when another
// attempt sealed it first.
func sealChunk(ctx context.Context, bb *Backbone, opt ShardOptions, root string, dsLoc, out *objstore.Location,
	plan *shardplan.Plan, ix shardplan.Index, c, first int, items []source.Sample, me claim,
	sum *ShardSummary, prog *ShardProgress, start time.Time) (bool, error) {
	w, known, err := openCache(ctx, root, bb.Identity, true)
	if err != nil {
		return false, err
	}
	defer w.Close()
	defer known.Close()
	keys := make([]string, len(items))
	for i, s := range items {
		keys[i] = s.Key
	}
	hashes := make([]featcache.Key, len(items))
	have := make([]bool, len(items))
	var skips []segment.Skip
	var readErr error // a read that failed for a reason other than the object itself
	report := func() {
		if opt.Progress != nil {
			prog.Elapsed = time.Since(start)
			opt.Progress(*prog)
		}
	}
	r := &Runner{
		Session: bb.Session, Spec: bb.Spec, BatchSize: opt.BatchSize, Workers: opt.Workers, Inferers: bb.Inferers,
		Read: func(ctx context.Context, i int, buf []byte) ([]byte, error) {
			b, err := source.Read(ctx, dsLoc, items[i], buf, MaxFileBytes)
			if err != nil && !objstore.IsNotExist(err) && !errors.Is(err, source.ErrChanged) && !errors.Is(err, objstore.ErrTooLarge) && ctx.Err() == nil {
				err = &storeError{err}
			}
			return b, err
		},
		Skip: func(h [32]byte) bool { _, ok := known.Lookup(featcache.Key(h)); return ok },
		OnCached: func(i int, h [32]byte) {
			hashes[i], have[i] = featcache.Key(h), true
			sum.Reused++
			prog.Done++
			report()
		},
		OnFail: func(f Failure) {
			var se *storeError
			if errors.As(f.Err, &se) {
				// The store failed, not the image: sealing a skip would lose
				// the image for good. Fail the chunk; a rerun resumes here.
				if readErr == nil {
					readErr = fmt.Errorf("read %s: %w; the chunk is not sealed, run the task again to resume", dsLoc.Describe(f.Path), se.err)
				}
				return
			}
			reason := f.Err.Error()
			switch {
			case objstore.IsNotExist(f.Err):
				reason = "deleted since the plan"
			case errors.Is(f.Err, source.ErrChanged):
				reason = "changed since the plan: " + strings.TrimPrefix(reason, source.ErrChanged.Error()+": ")
			}
			skips = append(skips, segment.Skip{Key: f.Path, Reason: reason})
			sum.Skipped++
			if len(sum.Skips) < 100 {
				sum.Skips = append(sum.Skips, SkipRecord{Path: f.Path, Reason: reason})
			}
			if opt.OnSkip != nil {
				opt.OnSkip(Failure{Index: f.Index, Path: dsLoc.Describe(f.Path), Err: errors.New(reason)})
			}
			prog.Done++
			report()
		},
	}
	gc := newGroupCommit(w)
	batchKeys := make([]featcache.Key, 0, 16)
	runErr := r.Run(ctx, keys, func(b *Batch) error {
		batchKeys = batchKeys[:0]
		for k := 0; k < b.N; k++ {
			batchKeys = append(batchKeys, featcache.Key(b.Hash[k]))
		}
		if err := gc.add(batchKeys, b.Outputs[0][:b.N*bb.Dim]); err != nil {
			return err
		}
		for k, idx := range b.Index {
			hashes[idx], have[idx] = batchKeys[k], true
		}
		sum.Computed += b.N
		prog.Done += b.N
		prog.Computed += b.N
		report()
		return nil
	})
	if err := gc.close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		runErr = readErr
	}
	if runErr != nil {
		return false, runErr
	}
	if err := w.Close(); err != nil {
		return false, err
	}
	snap, err := featcache.Open(root, bb.Identity)
	if err != nil {
		return false, err
	}
	defer snap.Close()
	bopt := bb.Options
	bopt.Spec = &bb.Spec
	optJSON, _ := json.Marshal(bopt)
	h := &segment.Header{
		Identity: bb.Identity, Model: bb.Ref, Options: optJSON, Provider: providerName(bb), ORTVersion: ort.Version(), Headtune: opt.Version,
		Dataset: plan.Root, Shard: ix.Shard, Shards: ix.Shards, Chunk: c, First: first, End: first + len(items),
		Host: me.Host, Attempt: me.Attempt, Created: time.Now().UTC(), Skips: skips,
	}
	rowOf := map[featcache.Key]int{}
	var rows []float32
	for i, s := range items {
		if !have[i] {
			continue
		}
		row, ok := rowOf[hashes[i]]
		if !ok {
			row = len(rowOf)
			rowOf[hashes[i]] = row
			rows = append(rows, make([]float32, bb.Dim)...)
			if ok, err := snap.Get(hashes[i], rows[row*bb.Dim:(row+1)*bb.Dim]); err != nil || !ok {
				return false, fmt.Errorf("seal chunk %d: features of %s not in the local cache after extraction (ok=%v): %v", c, s.Key, ok, err)
			}
		}
		h.Entries = append(h.Entries, segment.Entry{Key: s.Key, Label: s.Label, Split: s.Split, Hash: hashes[i], Row: row})
	}
	data, err := segment.Encode(h, rows)
	if err != nil {
		return false, err
	}
	return out.CreateIfAbsent(ctx, segment.ChunkName(c), data)
}

// storeError marks a read that failed in the store (after retries), as
// opposed to a missing or changed object.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func providerName(bb *Backbone) string {
	if d := bb.Options.Session.Device; d != "" {
		return d
	}
	return "cpu"
}

// alive reports whether process pid exists on this host.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
