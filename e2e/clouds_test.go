//go:build gcs || azure

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bucket is what cloudRoundTrip needs of a fake cloud: objects put and
// read past the client, and URLs of prefixes.
type bucket struct {
	env []string // for the headtune processes
	put func(key string, data []byte) error
	get func(key string) ([]byte, error)
	url func(prefix string) string
}

// cloudRoundTrip is TestFakeIndexedJob's happy path on another cloud's
// fake: plan, two `extract --plan` tasks told their index by
// JOB_COMPLETION_INDEX, `cache merge`, `train`, then `predict --out` to the bucket.
// The merged features equal a single-machine extract of the local copy bit
// for bit, key by key, and every image is computed once.
func cloudRoundTrip(t *testing.T, b bucket) {
	c := newCLI(t)
	c.env = append(c.env, b.env...)
	local := filepath.Join(c.dir, "ds")
	paths := writeDataset(t, local, DatasetOptions{Classes: 2, PerClass: 7, Seed: 23})
	for _, p := range paths {
		rel, _ := filepath.Rel(local, p)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.put("ds/"+filepath.ToSlash(rel), data); err != nil {
			t.Fatal(err)
		}
	}
	total := len(paths)
	model := writeModel(t, c.dir, "resnet", 32)
	want, _ := cachedFeatures(t, parseExtract(t, c.worker("baseline").ok("extract", "--json", "--model", model, local)).View)
	if len(want) != total {
		t.Fatalf("baseline extracted %d of %d images", len(want), total)
	}
	dsURL, planURL := b.url("ds"), b.url("plan")
	r := c.ok("plan", "--shards", "2", "--out", planURL, dsURL)
	if !strings.Contains(r.stderr, fmt.Sprintf("%d images", total)) {
		t.Errorf("plan output does not report %d images:\n%s", total, r.stderr)
	}
	computed := 0
	for i := 0; i < 2; i++ {
		s := parseShard(t, c.worker(fmt.Sprint(i), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)).ok(
			"extract", "--json", "--model", model, "--plan", planURL, "--chunk-rows", "4"))
		if s.Shard != i || !strings.Contains(s.IndexFrom, "JOB_COMPLETION_INDEX") || !s.Completed || s.Skipped != 0 {
			t.Errorf("task %d: %+v; want shard %d from JOB_COMPLETION_INDEX, completed, nothing skipped", i, s, i)
		}
		computed += s.Computed
	}
	if computed != total {
		t.Errorf("the tasks computed %d images, want each of the %d once", computed, total)
	}
	m := c.worker("merge")
	r = m.ok("cache", "merge", "--json", b.url("plan/segments"))
	var ms struct {
		View    string `json:"view"`
		Entries int    `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
		t.Fatalf("merge --json: %v\n%s", err, r.stdout)
	}
	got, _ := cachedFeatures(t, ms.View)
	sameFeatures(t, "merge", got, want)
	m.ok("train", "--json") // on the merged features, found with no arguments
	m.ok("predict", "--out", b.url("out/pred.csv"), dsURL)
	pred, err := b.get("out/pred.csv")
	if err != nil {
		t.Fatalf("predict --out %s: %v", b.url("out/pred.csv"), err)
	}
	if rows := strings.Split(strings.TrimSpace(string(pred)), "\n"); len(rows) != total+1 || !strings.Contains(string(pred), b.url("ds/")) {
		t.Errorf("predictions object has %d lines, want a header and %d rows naming %s keys:\n%s", len(rows), total, b.url(""), pred)
	}
}
