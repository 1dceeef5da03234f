package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache"
)

// TestCacheDamageRepair: flipped bits in cached features are found by
// `cache verify` (exit 1, the folder named), train refuses them, `cache
// repair` drops exactly those rows, and the next extract
// recomputes only them, bit for bit as before.
func TestCacheDamageRepair(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	n := len(writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 20, Seed: 8}))
	model := writeModel(t, c.dir, "resnet", 32)
	args := []string{"extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet"}
	sum := parseExtract(t, c.ok(args...))
	want, _ := cachedFeatures(t, sum.View)

	// Damage rows 3 and 17: one bit each in features.f32 (rows are D
	// float32s, in order, no header).
	data := filepath.Join(sum.CacheDir, "features.f32")
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	rowBytes := int64(sum.Dim) * 4
	for _, row := range []int64{3, 17} {
		b := make([]byte, 1)
		f.ReadAt(b, row*rowBytes+2)
		b[0] ^= 0x10
		f.WriteAt(b, row*rowBytes+2)
	}
	f.Close()

	r := c.run("cache", "verify")
	t.Logf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stdout, "DAMAGED") || !strings.Contains(r.stdout, sum.CacheDir) {
		t.Errorf("cache verify on damaged rows: exit %d, want 1 and a DAMAGED line naming %s:\n%s", r.code, sum.CacheDir, r.stdout)
	}
	errorLine(t, r, "cache repair")
	// Training must not use the damaged rows silently.
	tr := c.run("train", "--head", filepath.Join(c.dir, "h.head"), "--quiet")
	t.Logf("train on the damaged cache: exit %d: %s", tr.code, strings.TrimSpace(tr.stderr))
	errorLine(t, tr, "features.f32")
	if _, err := os.Stat(filepath.Join(c.dir, "h.head")); err == nil {
		t.Errorf("train on a damaged cache wrote a head")
	}

	rep := c.ok("cache", "repair", "--json")
	var reps []featcache.RepairReport
	if err := json.Unmarshal([]byte(rep.stdout), &reps); err != nil || len(reps) != 1 {
		t.Fatalf("cache repair --json: %v: %q", err, rep.stdout)
	}
	if reps[0].DroppedBadRow != 2 || reps[0].Kept != n-2 {
		t.Errorf("repair dropped %d bad rows and kept %d; want 2 and %d: %+v", reps[0].DroppedBadRow, reps[0].Kept, n-2, reps[0])
	}
	c.ok("cache", "verify")

	again := parseExtract(t, c.ok(args...))
	if again.Computed != 2 || again.Reused != n-2 {
		t.Errorf("extract after repair computed %d and reused %d; want 2 and %d", again.Computed, again.Reused, n-2)
	}
	got, _ := cachedFeatures(t, again.View)
	for p, v := range want {
		if _, same := maxAbsDiff(v, got[p]); !same {
			t.Errorf("%s: features after repair and recompute differ from the original", p)
		}
	}
	c.ok("cache", "verify")
}

// TestInterruptAndWaiter: SIGINT stops extract with exit 130 and the
// resume message, keeping finished batches; an extract waiting on the lock
// (--wait-lock) takes over when the holder is SIGKILLed and computes only
// what was not committed.
func TestInterruptAndWaiter(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	n := len(writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 500, Seed: 6}))
	// 224 px keeps one extract running for seconds, so the signals below
	// land mid-run on a fast machine too (at 32 px a clean-clone CI run
	// finished before the kill).
	model := writeModel(t, c.dir, "resnet", 224)
	args := []string{"extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet", "--batch", "8", "--workers", "1"}

	t.Run("sigint", func(t *testing.T) {
		cache := filepath.Join(c.dir, "cache-int")
		a := c.start(append(args, "--cache", cache)...)
		waitForLock(t, cache, a)
		time.Sleep(200 * time.Millisecond)
		a.cmd.Process.Signal(syscall.SIGINT)
		r := a.wait()
		if r.code == 0 {
			t.Fatalf("extract finished before the interrupt arrived: the test did not interrupt anything (make the run longer)")
		}
		if r.code != 130 || !strings.Contains(r.stderr, "interrupted") {
			t.Errorf("SIGINT: exit %d, want 130 and the resume message:\n%s", r.code, r.stderr)
		}
		committed := c.verifiedRows(t, cache)
		s := parseExtract(t, c.ok(append(args, "--cache", cache)...))
		t.Logf("SIGINT after ~200 ms: %d of %d rows kept; resume computed %d", committed, n, s.Computed)
		if s.Computed != n-committed {
			t.Errorf("resume after SIGINT computed %d, want %d", s.Computed, n-committed)
		}
	})

	t.Run("waiter-takes-over", func(t *testing.T) {
		cache := filepath.Join(c.dir, "cache-wait")
		a := c.start(append(args, "--cache", cache)...)
		waitForLock(t, cache, a)
		w := c.start(append(args, "--cache", cache, "--wait-lock")...)
		time.Sleep(300 * time.Millisecond)
		if !a.running() {
			t.Fatalf("the first extract finished before it could be killed: the waiter took over nothing (make the run longer)")
		}
		// Rows committed before the kill (a lock-free snapshot): the holder
		// only adds to them until it dies.
		before := 0
		if rd, err := featcache.OpenDir(filepath.Dir(firstLock(t, cache))); err == nil {
			before = rd.Len()
			rd.Close()
		}
		a.kill()
		r := w.wait()
		if r.code != 0 {
			t.Fatalf("waiting extract after the holder was killed: %v", r)
		}
		s := parseExtract(t, r)
		t.Logf("holder killed with at least %d rows committed; the waiter reused %d and computed %d", before, s.Reused, s.Computed)
		if s.Reused < before || s.Computed+s.Reused != n {
			t.Errorf("waiter computed %d and reused %d; at least %d rows were committed before the kill (n=%d)", s.Computed, s.Reused, before, n)
		}
		if rows := c.verifiedRows(t, cache); rows != n {
			t.Errorf("cache holds %d rows for %d images", rows, n)
		}
	})
}

// firstLock returns the lock file of the (only) identity folder in cache.
func firstLock(t *testing.T, cache string) string {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(cache, "*", "lock"))
	if len(locks) != 1 {
		t.Fatalf("%s: %d identity folders with a lock, want 1", cache, len(locks))
	}
	return locks[0]
}
