package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore/objstoretest"
)

// shardSummary is the part of `extract --plan --json` the tests read.
type shardSummary struct {
	Shard         int    `json:"shard"`
	Shards        int    `json:"shards"`
	IndexFrom     string `json:"index_from"`
	Images        int    `json:"images"`
	Chunks        int    `json:"chunks"`
	FoundSealed   int    `json:"found_sealed"`
	Sealed        int    `json:"sealed"`
	SealedByOther int    `json:"sealed_by_other"`
	Computed      int    `json:"computed"`
	Reused        int    `json:"reused"`
	Skipped       int    `json:"skipped"`
	AlreadyDone   bool   `json:"already_done"`
	Completed     bool   `json:"completed"`
	Skips         []struct {
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"skips"`
}

func parseShard(t testing.TB, r *result) shardSummary {
	t.Helper()
	var s shardSummary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("extract --plan --json output is not JSON (%v): %q\n%v", err, r.stdout, r)
	}
	return s
}

// uploadDataset copies a local dataset folder into the fake bucket under
// prefix.
func uploadDataset(t testing.TB, f *objstoretest.FakeS3, dir, prefix string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Put(prefix+filepath.ToSlash(rel), data); err != nil {
			t.Fatal(err)
		}
		n++
		return nil
	})
	return n
}

// worker is one task's private environment: its own local cache, like a
// pod's emptyDir.
func (c *cli) worker(name string, env ...string) *cli {
	w := *c
	w.cache = filepath.Join(c.dir, "cache-"+name)
	w.env = append(append(append([]string{}, c.env...), "HEADTUNE_CACHE="+w.cache), env...)
	return &w
}

// sameFeatures checks two path -> features maps are equal bit for bit.
func sameFeatures(t *testing.T, what string, got, want map[string][]float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d images, want %d", what, len(got), len(want))
	}
	var diff []string
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			diff = append(diff, p+" missing")
			continue
		}
		if d, same := maxAbsDiff(g, w); !same {
			diff = append(diff, fmt.Sprintf("%s differs by %g", p, d))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("%s: %d of %d images differ from the single-machine extract, first: %v", what, len(diff), len(want), diff[:min(3, len(diff))])
	}
}

// TestFakeIndexedJob runs a sharded extraction the way a Kubernetes
// Indexed Job would, against a fake S3 on 127.0.0.1: plan once, N
// `extract --plan` tasks told their index by JOB_COMPLETION_INDEX, one
// killed mid-shard and run again, one run twice at the same time, then a
// merge. The merged features equal a single-machine extract bit for bit,
// key by key, and no image is computed twice except the killed task's
// unsealed tail.
func TestFakeIndexedJob(t *testing.T) {
	c := newCLI(t)
	fake := objstoretest.Start(t, "bucket")
	c.env = append(c.env, objstoretest.Env()...)
	local := filepath.Join(c.dir, "ds")
	writeDataset(t, local, DatasetOptions{Classes: 3, PerClass: 22, Seed: 16})
	total := uploadDataset(t, fake, local, "ds/")
	model := writeModel(t, c.dir, "resnet", 32)
	dsURL, planURL := fake.URL("ds"), fake.URL("plan")

	base := c.worker("baseline")
	want, _ := cachedFeatures(t, parseExtract(t, base.ok("extract", "--json", "--model", model, local)).View)
	if len(want) != total {
		t.Fatalf("baseline extracted %d of %d images", len(want), total)
	}
	// The same dataset straight from the bucket, on one machine.
	urlRun := c.worker("url")
	fromURL, _ := cachedFeatures(t, parseExtract(t, urlRun.ok("extract", "--json", "--model", model, dsURL)).View)
	sameFeatures(t, "extract s3://", fromURL, want)

	const shards = 4
	r := c.ok("plan", "--shards", fmt.Sprint(shards), "--out", planURL, dsURL)
	if !strings.Contains(r.stderr, fmt.Sprintf("%d images", total)) {
		t.Errorf("plan output does not report %d images:\n%s", total, r.stderr)
	}
	args := []string{"extract", "--json", "--model", model, "--plan", planURL, "--chunk-rows", "4"}
	task := func(i int, name string) *cli { return c.worker(name, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)) }

	// Slow every image read a little so that tasks overlap and a kill
	// lands mid-shard.
	fake.SetDelay(func(r *http.Request) time.Duration {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/ds/") {
			return 25 * time.Millisecond
		}
		return 0
	})

	// Shard 1: killed once its first chunk is sealed, then run again.
	killed := task(1, "1a").start(args...)
	deadline := time.Now().Add(90 * time.Second)
	for {
		keys, _ := fake.Keys("plan/segments/")
		sealed := false
		for _, k := range keys {
			if strings.Contains(k, "shard-00001-of-00004/chunk-000000.seg") {
				sealed = true
			}
		}
		if sealed || !killed.running() || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !killed.running() {
		t.Fatalf("shard 1 finished before it could be killed:\n%v", killed.wait())
	}
	syscall.Kill(-killed.cmd.Process.Pid, syscall.SIGKILL)
	killed.wait()

	// Shards 0 and 3 once, shard 2 twice at once, shard 1 again.
	var mu sync.Mutex
	results := map[string]shardSummary{}
	var wg sync.WaitGroup
	for _, run := range []struct {
		shard int
		name  string
	}{{0, "0"}, {2, "2a"}, {2, "2b"}, {3, "3"}, {1, "1b"}} {
		wg.Add(1)
		b := task(run.shard, run.name).start(args...)
		go func() {
			defer wg.Done()
			res := b.wait()
			if res.code != 0 {
				t.Errorf("task %s: %v", run.name, res)
				return
			}
			s := parseShard(t, res)
			mu.Lock()
			results[run.name] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for name, s := range results {
		t.Logf("task %s: shard %d: %d images in %d chunks: computed %d, sealed %d, found sealed %d, sealed by the other %d, completed %v",
			name, s.Shard, s.Images, s.Chunks, s.Computed, s.Sealed, s.FoundSealed, s.SealedByOther, s.Completed)
		if s.Shards != shards || !strings.Contains(s.IndexFrom, "JOB_COMPLETION_INDEX") {
			t.Errorf("task %s: shard %d/%d from %q, want the index from JOB_COMPLETION_INDEX", name, s.Shard, s.Shards, s.IndexFrom)
		}
	}
	rerun := results["1b"]
	if rerun.FoundSealed < 1 || rerun.FoundSealed >= rerun.Chunks {
		t.Errorf("rerun of shard 1 found %d of %d chunks sealed, want the killed task's first chunks", rerun.FoundSealed, rerun.Chunks)
	}
	sealedBeforeKill := min(4*rerun.FoundSealed, rerun.Images)
	if rerun.Computed != rerun.Images-sealedBeforeKill {
		t.Errorf("rerun of shard 1 computed %d images, want %d (the shard's %d less the %d sealed before the kill)", rerun.Computed, rerun.Images-sealedBeforeKill, rerun.Images, sealedBeforeKill)
	}
	a, b := results["2a"], results["2b"]
	if a.Computed+b.Computed != a.Images {
		t.Errorf("shard 2 run twice at once: %d + %d images computed, want %d in all (chunks shared, none computed twice)", a.Computed, b.Computed, a.Images)
	}
	if wins := btoi(a.Completed) + btoi(b.Completed); wins != 1 {
		t.Errorf("shard 2 run twice at once: %d attempts wrote the completion marker, want exactly 1 (%+v / %+v)", wins, a, b)
	}
	computed := 0
	for _, s := range results {
		computed += s.Computed
	}
	if computed != total-sealedBeforeKill {
		t.Errorf("%d images computed by the finished tasks, want %d: every image once, except the %d the killed task sealed", computed, total-sealedBeforeKill, sealedBeforeKill)
	}
	// A finished shard run again does nothing.
	again := parseShard(t, task(0, "0c").ok(args...))
	if !again.AlreadyDone || again.Computed != 0 {
		t.Errorf("rerun of a finished shard: %+v, want already_done and nothing computed", again)
	}

	trainOnSegments(t, c, fake.URL("plan/segments"))

	// Merge, in two orders, into fresh caches: equal to the baseline.
	for _, inputs := range [][]string{
		{fake.URL("plan/segments")},
		{fake.URL("plan/segments/" + segDir(t, fake, 3)), fake.URL("plan/segments/" + segDir(t, fake, 0)), fake.URL("plan/segments/" + segDir(t, fake, 2)), fake.URL("plan/segments/" + segDir(t, fake, 1))},
	} {
		m := c.worker(fmt.Sprintf("merge-%d", len(inputs)))
		r := m.ok(append([]string{"cache", "merge", "--json"}, inputs...)...)
		var ms struct {
			View    string `json:"view"`
			Entries int    `json:"entries"`
			Chunks  int    `json:"chunks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
			t.Fatalf("merge --json: %v\n%s", err, r.stdout)
		}
		got, _ := cachedFeatures(t, ms.View)
		sameFeatures(t, fmt.Sprintf("merge of %d locations", len(inputs)), got, want)
		// Train reads the merged features with no arguments.
		tr := m.run("train", "--json")
		if tr.code != 0 {
			t.Errorf("train after merge: %v", tr)
		}
		// Predict reads images from the bucket and writes its rows there.
		if len(inputs) == 1 {
			trainStreamed(t, m)
			m.ok("predict", "--out", fake.URL("out/pred.csv"), fake.URL("ds/red"), fake.URL("ds/blue/img_0001.png"))
			got, err := fake.Get("out/pred.csv")
			if err != nil {
				t.Fatalf("predict --out s3://...: %v", err)
			}
			rows := strings.Split(strings.TrimSpace(string(got)), "\n")
			if len(rows) != 22+1+1 || !strings.Contains(string(got), "s3://bucket/ds/blue/img_0001.png") {
				t.Errorf("predictions object has %d lines, want a header and 23 rows naming s3:// keys:\n%s", len(rows), got)
			}
		}
	}
}

// trainOnSegments: train reads sealed segments directly (no merge), and
// eval finds them again through the head.
func trainOnSegments(t *testing.T, c *cli, segs string) {
	t.Helper()
	w := c.worker("segments")
	r := w.ok("train", "--json", "--segments", segs)
	if !strings.Contains(r.stdout, "{") {
		t.Errorf("train --segments --json printed no JSON:\n%s", r.stdout)
	}
	w.ok("eval", "--json")
}

// trainStreamed: with a budget of three quarters of the feature matrix,
// train streams an MLP's minibatches from the cache (the e2e rows are
// 8-d, so a segment chunk's header outweighs its rows and segments are
// streamed in job's TestTrainSegmentsStreamed instead), says so, stays
// within the budget, and eval streams the head's test rows to the same
// figure.
func trainStreamed(t *testing.T, w *cli) {
	t.Helper()
	type trainJSON struct {
		Data struct {
			Mode        string `json:"mode"`
			MatrixBytes int64  `json:"matrix_bytes"`
			PeakBytes   int64  `json:"peak_feature_bytes"`
			Text        string `json:"text"`
		} `json:"data"`
		Test map[string]float64 `json:"test"`
	}
	var inMem, streamed trainJSON
	r := w.ok("train", "--json", "--head", "inmem.head")
	if err := json.Unmarshal([]byte(r.stdout), &inMem); err != nil || inMem.Data.Mode != "in-memory" || inMem.Data.MatrixBytes <= 0 {
		t.Fatalf("train --json: %v, data %+v; want the in-memory mode and the matrix size", err, inMem.Data)
	}
	budget := inMem.Data.MatrixBytes * 3 / 4
	r = w.ok("train", "--json", "--kind", "mlp", "--epochs", "3", "--batch-size", "4", "--memory", fmt.Sprint(budget), "--head", "streamed.head")
	if err := json.Unmarshal([]byte(r.stdout), &streamed); err != nil || streamed.Data.Mode != "streamed" || streamed.Data.PeakBytes > budget || streamed.Data.PeakBytes <= 0 {
		t.Fatalf("train --memory %d: %v, data %+v; want streamed within the budget\n%s", budget, err, streamed.Data, r.stderr)
	}
	if !strings.HasPrefix(streamed.Data.Text, "streaming minibatches from ") {
		t.Errorf("train --json's data.text %q does not say it streamed", streamed.Data.Text)
	}
	var ev struct {
		Eval struct {
			Accuracy float64 `json:"accuracy"`
		} `json:"eval"`
	}
	r = w.ok("eval", "--json", "--head", "streamed.head", "--memory", fmt.Sprint(budget))
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil || ev.Eval.Accuracy != streamed.Test["accuracy"] {
		t.Errorf("eval of the streamed head: %v, accuracy %v; train said %v", err, ev.Eval.Accuracy, streamed.Test["accuracy"])
	}
}

// segDir returns the backbone/shard folder of shard i under plan/segments.
func segDir(t *testing.T, f *objstoretest.FakeS3, i int) string {
	keys, err := f.Keys("plan/segments/")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if j := strings.Index(k, fmt.Sprintf("shard-%05d-of-", i)); j >= 0 {
			return k[len("plan/segments/") : j+len("shard-00000-of-00004")]
		}
	}
	t.Fatalf("no folder of shard %d under plan/segments", i)
	return ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestShardHostile: objects deleted or rewritten between plan and
// extract are skipped, named and counted; throttling and server errors
// are retried; a truncated chunk upload is detected and replaced by the
// next attempt, and refused by merge; segments of another backbone are
// refused by merge.
func TestShardHostile(t *testing.T) {
	c := newCLI(t)
	fake := objstoretest.Start(t, "bucket")
	c.env = append(c.env, objstoretest.Env()...)
	local := filepath.Join(c.dir, "ds")
	paths := writeDataset(t, local, DatasetOptions{Classes: 2, PerClass: 8, Seed: 61})
	total := uploadDataset(t, fake, local, "ds/")
	model := writeModel(t, c.dir, "resnet", 32)
	os.MkdirAll(filepath.Join(c.dir, "other"), 0o755)
	other := writeModel(t, filepath.Join(c.dir, "other"), "resnet", 40)
	dsURL, planURL := fake.URL("ds"), fake.URL("plan")
	c.ok("plan", "--shards", "1", "--out", planURL, dsURL)

	rel := func(p string) string { r, _ := filepath.Rel(local, p); return filepath.ToSlash(r) }
	deleted, changed := rel(paths[1]), rel(paths[9])
	if err := fake.Delete("ds/" + deleted); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(paths[9])
	if err := fake.Put("ds/"+changed, append(orig[:len(orig):len(orig)], 0)); err != nil {
		t.Fatal(err)
	}
	// Every image read fails once with 503 SlowDown before it is served;
	// the first three fail three times more (more than the SDK's own
	// retries) with 503 and 500.
	var mu sync.Mutex
	fails := map[string]int{}
	fake.SetFault(func(r *http.Request) int {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/ds/") {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		fails[r.URL.Path]++
		n, limit := fails[r.URL.Path], 1
		if len(fails) <= 3 {
			limit = 4
		}
		switch {
		case n > limit:
			return 0
		case n == 4:
			return http.StatusInternalServerError
		}
		return http.StatusServiceUnavailable
	})
	// A truncated upload of chunk 1 left by an earlier attempt.
	segs := "plan/segments/"
	args := []string{"extract", "--json", "--model", model, "--plan", planURL, "--chunk-rows", "4", "--shard", "0/1"}
	first := parseShard(t, c.worker("w1").ok(args...))
	fake.SetFault(nil)
	if first.Skipped != 2 || first.Computed != total-2 {
		t.Errorf("extract: %d skipped, %d computed; want the deleted and the changed image skipped and %d computed", first.Skipped, first.Computed, total-2)
	}
	reasons := map[string]string{}
	for _, s := range first.Skips {
		reasons[s.Path] = s.Reason
	}
	if !strings.Contains(reasons[deleted], "deleted since the plan") || !strings.Contains(reasons[changed], "changed since the plan") {
		t.Errorf("skip reasons %v: want %s deleted and %s changed since the plan", reasons, deleted, changed)
	}
	mu.Lock()
	retried := len(fails)
	mu.Unlock()
	if retried < total-1 {
		t.Errorf("only %d images saw injected failures, want all %d", retried, total-1)
	}

	// Truncate chunk 1 as a broken upload would, drop the completion
	// marker, and run again: the chunk is found broken and sealed anew.
	var chunk1, done string
	keys, _ := fake.Keys(segs)
	for _, k := range keys {
		switch {
		case strings.HasSuffix(k, "chunk-000001.seg"):
			chunk1 = k
		case strings.HasSuffix(k, "DONE.json"):
			done = k
		}
	}
	whole, err := fake.Get(chunk1)
	if err != nil {
		t.Fatal(err)
	}
	fake.Put(chunk1, whole[:len(whole)/2])
	fake.Delete(done)
	// Merge refuses the broken chunk (with the marker back in place).
	fake.Put(done, []byte(`{"chunks":4}`))
	r := c.worker("m0").run("cache", "merge", fake.URL(segs))
	errorLine(t, r, "chunk-000001.seg", "truncated")
	fake.Delete(done)
	second := parseShard(t, c.worker("w2").ok(args...))
	if second.FoundSealed != second.Chunks-1 || second.Sealed != 1 || second.Computed != 4 {
		t.Errorf("rerun after a truncated chunk: %+v; want the other chunks kept and chunk 1 (4 images) computed and sealed again", second)
	}
	got, _ := fake.Get(chunk1)
	h1, rows1, err1 := segment.Decode(whole, "original")
	h2, rows2, err2 := segment.Decode(got, "resealed")
	if err1 != nil || err2 != nil {
		t.Fatalf("decode chunk 1: %v / %v", err1, err2)
	}
	if e1, e2 := fmt.Sprint(h1.Entries), fmt.Sprint(h2.Entries); e1 != e2 || fmt.Sprint(rows1) != fmt.Sprint(rows2) || h2.Attempt == h1.Attempt {
		t.Errorf("resealed chunk 1 (attempt %s): entries %s\nwant the original's (attempt %s) %s, same rows", h2.Attempt, e2, h1.Attempt, e1)
	}
	m := c.worker("m1")
	r = m.ok("cache", "merge", "--json", fake.URL(segs))
	var ms struct {
		Entries int `json:"entries"`
		Skipped int `json:"skipped"`
	}
	json.Unmarshal([]byte(r.stdout), &ms)
	if ms.Entries != total-2 || ms.Skipped != 2 {
		t.Errorf("merge: %d entries, %d skipped; want %d and 2", ms.Entries, ms.Skipped, total-2)
	}

	// Another backbone's segments in the same output: merge refuses the mix.
	c.worker("w3").ok("extract", "--json", "--model", other, "--plan", planURL, "--chunk-rows", "4", "--shard", "0/1")
	r = c.worker("m2").run("cache", "merge", fake.URL(segs))
	errorLine(t, r, "merge one backbone at a time")
}
