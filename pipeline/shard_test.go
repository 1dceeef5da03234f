package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache"
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

// shardFixture writes n distinct images under base/ds, plans them as one
// shard under base/plan, and returns the plan URL and the shard's segment
// folder for bb.
func shardFixture(t *testing.T, bb *Backbone, base string, n int) (string, *objstore.Location) {
	t.Helper()
	ctx := context.Background()
	ds, err := objstore.Create(ctx, base+"/ds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range writeImages(t, t.TempDir(), n, 0) {
		data, _ := os.ReadFile(p)
		if err := ds.WriteAll(ctx, "a/"+filepath.Base(p), data); err != nil {
			t.Fatal(err)
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
	return base + "/plan", planLoc.Sub("segments").Sub(segment.ShardDir(bb.Identity, 0, 1))
}

// TestExtractShardClaimRace forces the interleaving seen in CI: attempt B
// finds chunk 1 unsealed, attempt A then claims, computes and seals it
// and releases its claim, and only then does B claim chunk 1 (and gets
// the claim). B must see the sealed chunk and not run the backbone on
// chunk 1's images again.
func TestExtractShardClaimRace(t *testing.T) {
	bb := testBackbone(t, 1)
	ctx := context.Background()
	planURL, out := shardFixture(t, bb, "mem://shard-claim-race", 12)
	const m, race = 4, 1
	opts := func() ShardOptions {
		return ShardOptions{Plan: planURL, Shard: "0/1", ChunkRows: m, CacheRoot: t.TempDir(), Poll: 10 * time.Millisecond}
	}
	var a *ShardSummary
	fired := false
	beforeClaim = func(c int) {
		if c != race || fired {
			return // A's own calls, and B's other chunks
		}
		fired = true
		var err error
		if a, err = ExtractShard(ctx, bb, opts()); err != nil {
			t.Errorf("attempt A: %v", err)
			return
		}
		// The window is real only if B's claim can now succeed: the chunk
		// is sealed and nobody holds its claim.
		if ok, _ := out.Exists(ctx, segment.ChunkName(race)); !ok {
			t.Errorf("attempt A did not seal chunk %d", race)
		}
		if ok, _ := out.Exists(ctx, segment.ClaimName(race)); ok {
			t.Errorf("attempt A left its claim on chunk %d", race)
		}
	}
	t.Cleanup(func() { beforeClaim = nil })
	bOpt := opts()
	b, err := ExtractShard(ctx, bb, bOpt)
	if err != nil {
		t.Fatal(err)
	}
	if !fired || a == nil {
		t.Fatalf("attempt B never reached chunk %d unsealed (summary %+v)", race, b)
	}
	// B sealed chunk 0 before the window, A sealed chunks 1 and 2 in it.
	if a.FoundSealed != 1 || a.Sealed != 2 || a.Computed != 2*m || !a.Completed {
		t.Errorf("attempt A %+v: want chunk 0 found sealed, chunks 1 and 2 computed (%d images) and sealed, shard completed", a, 2*m)
	}
	if b.Computed != m || b.Sealed != 1 || b.SealedByOther != 2 || b.Completed {
		t.Errorf("attempt B %+v: want only chunk 0 computed (%d images) and sealed, chunks 1 and 2 sealed by the other attempt", b, m)
	}
	// Nothing of chunk 1 went through B's backbone: its local cache holds
	// none of the chunk's images.
	data, err := out.ReadAll(ctx, segment.ChunkName(race), 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := segment.Decode(data, "chunk")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := featcache.Open(bOpt.CacheRoot, bb.Identity)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	if cache.Len() != m {
		t.Errorf("B's local cache holds %d rows, want the %d of chunk 0", cache.Len(), m)
	}
	for _, e := range h.Entries {
		if _, ok := cache.Lookup(e.Hash); ok {
			t.Errorf("B computed %s of chunk %d, which A had sealed", e.Key, race)
		}
	}
	for c := 0; c < 3; c++ {
		if ok, _ := out.Exists(ctx, segment.ClaimName(c)); ok {
			t.Errorf("claim of chunk %d left behind", c)
		}
	}
}

// TestExtractShardDeadClaimant: a fresh claim of a process on this host
// that no longer exists is taken over at once, without waiting for the
// claim TTL; a fresh claim of a live process on this host is honoured
// until the TTL.
func TestExtractShardDeadClaimant(t *testing.T) {
	bb := testBackbone(t, 1)
	ctx := context.Background()
	planURL, out := shardFixture(t, bb, "mem://shard-dead-claimant", 8)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// A PID that is certainly not running: a child that has exited and
	// been waited for.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead, live := child.Process.Pid, os.Getppid()
	for c, pid := range []int{dead, live} {
		data, _ := json.Marshal(claim{Attempt: "x", Host: host, PID: pid, Time: time.Now()})
		if err := out.WriteAll(ctx, segment.ClaimName(c), data); err != nil {
			t.Fatal(err)
		}
	}
	var logs []string
	sum, err := ExtractShard(ctx, bb, ShardOptions{
		Plan: planURL, Shard: "0/1", ChunkRows: 4, CacheRoot: t.TempDir(),
		ClaimTTL: 300 * time.Millisecond, Poll: 10 * time.Millisecond,
		Log: func(s string) { logs = append(logs, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sealed != 2 || sum.Computed != 8 || !sum.Completed {
		t.Errorf("summary %+v: want both chunks computed and sealed by this run", sum)
	}
	line := func(sub string) int {
		for i, l := range logs {
			if strings.Contains(l, sub) {
				return i
			}
		}
		return -1
	}
	gone := line(fmt.Sprintf("chunk 0: claimed by process %d on this host, which is gone", dead))
	sealed0 := line(segment.ChunkName(0))
	wait := line("being computed by another attempt")
	ttl := line(fmt.Sprintf("chunk 1: claim of %s (pid %d)", host, live))
	all := strings.Join(logs, "\n")
	if gone < 0 || sealed0 < gone || wait < sealed0 || ttl < wait || strings.Count(all, "past the") != 1 {
		t.Errorf("log: want chunk 0's dead claimant (pid %d) taken over and the chunk sealed before waiting, "+
			"and only chunk 1's live claimant (pid %d) waited for until the TTL:\n%s", dead, live, all)
	}
}
