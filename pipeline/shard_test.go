package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

// TestExtractShardClaims: claims of other attempts are honoured until
// they go stale (past the TTL, or unreadable), then taken over; every
// chunk ends sealed once, undecodable images are sealed as skips, and the
// completion marker is written.
func TestExtractShardClaims(t *testing.T) {
	bb := testBackbone(t, 1)
	ctx := context.Background()
	base := "mem://shard-claims"
	ds, err := objstore.Create(ctx, base+"/ds")
	if err != nil {
		t.Fatal(err)
	}
	for i, class := range []string{"a", "b"} {
		dir := t.TempDir()
		for _, p := range writeImages(t, dir, 6, 5*(i+1)) { // one garbage file in a/
			data, _ := os.ReadFile(p)
			if err := ds.WriteAll(ctx, class+"/"+filepath.Base(p), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := source.Open(ctx, base+"/ds")
	if err != nil {
		t.Fatal(err)
	}
	planLoc, _ := objstore.Create(ctx, base+"/plan")
	if _, err := shardplan.Write(ctx, list, planLoc, shardplan.Options{Shards: 1}); err != nil {
		t.Fatal(err)
	}
	out := planLoc.Sub("segments").Sub(segment.ShardDir(bb.Identity, 0, 1))
	claim := func(c int, host string, age time.Duration) {
		data, _ := json.Marshal(map[string]any{"attempt": "x", "host": host, "pid": 1, "time": time.Now().Add(-age)})
		if err := out.WriteAll(ctx, segment.ClaimName(c), data); err != nil {
			t.Fatal(err)
		}
	}
	claim(0, "elsewhere", time.Hour)                           // stale at once
	claim(1, "elsewhere", 0)                                   // fresh: waited for, then taken over
	out.WriteAll(ctx, segment.ClaimName(2), []byte("garbage")) // unreadable: taken over
	var logs []string
	start := time.Now()
	sum, err := ExtractShard(ctx, bb, ShardOptions{
		Plan: base + "/plan", Shard: "0/1", ChunkRows: 4, CacheRoot: t.TempDir(),
		ClaimTTL: 400 * time.Millisecond, Poll: 20 * time.Millisecond,
		Log: func(s string) { logs = append(logs, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(logs, "\n")
	if sum.Chunks != 3 || sum.Sealed != 3 || !sum.Completed || sum.Computed+sum.Reused != 11 || sum.Skipped != 1 {
		t.Errorf("summary %+v: want 3 chunks sealed by this run, 11 computed or reused (b/ repeats a/), 1 skipped, completed", sum)
	}
	if strings.Count(all, "past the") != 2 || !strings.Contains(all, "being computed by another attempt") {
		t.Errorf("log does not show both stale claims taken over after waiting:\n%s", all)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("finished in %s: the fresh claim was not waited for", time.Since(start))
	}
	var skips []segment.Skip
	for c := 0; c < 3; c++ {
		data, err := out.ReadAll(ctx, segment.ChunkName(c), 1<<24)
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := segment.Decode(data, "chunk")
		if err != nil {
			t.Fatal(err)
		}
		skips = append(skips, h.Skips...)
		if h.Provider != "cpu" || h.ORTVersion == "" || h.First != 4*c {
			t.Errorf("chunk %d header: provider %q, ORT %q, first %d", c, h.Provider, h.ORTVersion, h.First)
		}
		if ok, _ := out.Exists(ctx, segment.ClaimName(c)); ok {
			t.Errorf("claim of chunk %d left behind after sealing", c)
		}
	}
	if len(skips) != 1 || !strings.HasPrefix(skips[0].Key, "a/") {
		t.Errorf("skips %+v: want the garbage file of a/", skips)
	}
	again, err := ExtractShard(ctx, bb, ShardOptions{Plan: base + "/plan", Shard: "0/1", ChunkRows: 4, CacheRoot: t.TempDir()})
	if err != nil || !again.AlreadyDone || again.Computed != 0 {
		t.Errorf("second run: %+v, %v; want already done", again, err)
	}
}
