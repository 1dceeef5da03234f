//go:build gcs || azure

package pipeline

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

// cloudRoundTrip is `plan`, `extract --plan` and `cache merge` against a
// fake cloud bucket: a dataset put there is planned into two shards, each
// shard extracted by its own worker (own local cache), and the sealed
// segments merged into a third cache. Every image's merged row equals,
// bit for bit, the row its worker computed: nothing was lost or changed
// on the way through the bucket.
func cloudRoundTrip(t *testing.T, put func(key string, data []byte) error, url func(prefix string) string) {
	bb := testBackbone(t, 1)
	ctx := context.Background()
	var keys []featcache.Key
	for _, class := range []string{"cat", "dog"} {
		for _, p := range writeImages(t, t.TempDir(), 5, 0) {
			data, _ := os.ReadFile(p)
			data = append(data, class...) // the two classes' images differ (bytes after IEND)
			if err := put("ds/"+class+"/"+filepath.Base(p), data); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, featcache.HashBytes(data))
		}
	}
	n := len(keys)
	ds, err := source.Open(ctx, url("ds"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Samples) != n {
		t.Fatalf("listed %d images in %s, put %d", len(ds.Samples), url("ds"), n)
	}
	planLoc, err := objstore.Create(ctx, url("plan"))
	if err != nil {
		t.Fatal(err)
	}
	defer planLoc.Close()
	if _, err := shardplan.Write(ctx, ds, planLoc, shardplan.Options{Shards: 2}); err != nil {
		t.Fatal(err)
	}
	var workers []string
	computed := 0
	for i := 0; i < 2; i++ {
		root := t.TempDir()
		sum, err := ExtractShard(ctx, bb, ShardOptions{Plan: url("plan"), Shard: fmt.Sprintf("%d/2", i), ChunkRows: 3, CacheRoot: root})
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		if !sum.Completed || sum.Skipped != 0 {
			t.Errorf("shard %d: %+v, want completed without skips", i, sum)
		}
		computed += sum.Computed
		workers = append(workers, root)
	}
	if computed != n {
		t.Errorf("the shards computed %d images, want %d", computed, n)
	}
	merged := t.TempDir()
	sum, err := MergeSegments(ctx, MergeOptions{Inputs: []string{url("plan/segments")}, CacheRoot: merged})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Shards != 2 || sum.Entries != n || sum.NewRows != n || len(sum.Incomplete) != 0 {
		t.Errorf("merge %+v: want 2 shards, %d entries and new rows", sum, n)
	}
	got, err := featcache.Open(merged, bb.Identity)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	var readers []*featcache.Reader
	for _, root := range workers {
		w, err := featcache.Open(root, bb.Identity)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		readers = append(readers, w)
	}
	for _, k := range keys {
		g, want := make([]float32, got.Dim()), make([]float32, got.Dim())
		if ok, err := got.Get(k, g); err != nil || !ok {
			t.Errorf("image %s not in the merged cache (%v)", k, err)
			continue
		}
		found := 0
		for _, w := range readers {
			if ok, _ := w.Get(k, want); ok {
				found++
				for j := range g {
					if math.Float32bits(g[j]) != math.Float32bits(want[j]) {
						t.Errorf("image %s: feature %d is %v merged, %v computed", k, j, g[j], want[j])
						break
					}
				}
			}
		}
		if found != 1 {
			t.Errorf("image %s computed by %d workers, want 1", k, found)
		}
	}
}

// cloudChanged: an object deleted and one rewritten with the same size
// between plan and extract are skipped, each with its reason: the plan's
// listing recorded a version (MD5 or modification time) that the cloud's
// reads can be checked against.
func cloudChanged(t *testing.T, put func(key string, data []byte) error, del func(key string) error, url func(prefix string) string) {
	bb := testBackbone(t, 1)
	ctx := context.Background()
	var keys []string
	files := map[string][]byte{}
	for _, p := range writeImages(t, t.TempDir(), 6, 0) {
		data, _ := os.ReadFile(p)
		k := "ds/a/" + filepath.Base(p)
		if err := put(k, data); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		files[k] = data
	}
	ds, err := source.Open(ctx, url("ds"))
	if err != nil {
		t.Fatal(err)
	}
	planLoc, err := objstore.Create(ctx, url("plan"))
	if err != nil {
		t.Fatal(err)
	}
	defer planLoc.Close()
	if _, err := shardplan.Write(ctx, ds, planLoc, shardplan.Options{Shards: 1}); err != nil {
		t.Fatal(err)
	}
	deleted, changed := keys[1], keys[4]
	if err := del(deleted); err != nil {
		t.Fatal(err)
	}
	same := append([]byte(nil), files[changed]...)
	same[len(same)-1] ^= 0xff // same size, other content
	if err := put(changed, same); err != nil {
		t.Fatal(err)
	}
	sum, err := ExtractShard(ctx, bb, ShardOptions{Plan: url("plan"), Shard: "0/1", ChunkRows: 4, CacheRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, s := range sum.Skips {
		reasons["ds/"+s.Path] = s.Reason
	}
	if sum.Skipped != 2 || sum.Computed != 4 || !strings.Contains(reasons[deleted], "deleted since the plan") || !strings.Contains(reasons[changed], "changed since the plan") {
		t.Errorf("extract: %d computed, %d skipped %v; want 4 computed, %s deleted and %s changed since the plan", sum.Computed, sum.Skipped, reasons, deleted, changed)
	}
}
