package segment_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/objstore"
)

func ident(model string) featcache.Identity {
	return featcache.Identity{ModelHash: model, FeatureTensor: "features", Preprocess: json.RawMessage(`{"size":4}`), Dim: 3}
}

// feat is a deterministic feature vector for an image's content.
func feat(content string) []float32 {
	h := sha256.Sum256([]byte(content))
	return []float32{float32(h[0]) / 7, float32(h[1]) / 3, float32(h[2]) * 1.5}
}

// chunk builds a chunk of images named keys (content = key, except that
// "dup*" keys share one content).
func chunk(id featcache.Identity, shard, shards, c int, keys ...string) (*segment.Header, []float32) {
	h := &segment.Header{Identity: id, Model: "m", Provider: "cpu", ORTVersion: "1.24.1", Dataset: "mem://ds", Shard: shard, Shards: shards, Chunk: c}
	rowOf := map[featcache.Key]int{}
	var rows []float32
	for _, k := range keys {
		content := k
		if strings.HasPrefix(k, "dup") {
			content = "dup"
		}
		hash := featcache.HashBytes([]byte(content))
		r, ok := rowOf[hash]
		if !ok {
			r = len(rowOf)
			rowOf[hash] = r
			rows = append(rows, feat(content)...)
		}
		h.Entries = append(h.Entries, segment.Entry{Key: k, Label: k[:1], Hash: hash, Row: r})
	}
	return h, rows
}

func TestEncodeDecode(t *testing.T) {
	h, rows := chunk(ident("a"), 0, 1, 0, "a1", "b2", "dup1", "dup2")
	data, err := segment.Encode(h, rows)
	if err != nil {
		t.Fatal(err)
	}
	got, grows, err := segment.Decode(data, "x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != 3 || len(got.Entries) != 4 || got.BackboneID != ident("a").ID() || got.Provider != "cpu" {
		t.Errorf("header = %+v", got)
	}
	for i := range rows {
		if math.Float32bits(rows[i]) != math.Float32bits(grows[i]) {
			t.Fatalf("row value %d: %v, want %v", i, grows[i], rows[i])
		}
	}
	if err := segment.CheckTrailer(data[len(data)-segment.TrailerSize:], int64(len(data)), "x"); err != nil {
		t.Errorf("CheckTrailer on a whole chunk: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)-7], "truncated"},
		{"half", data[:len(data)/2], "truncated"},
		{"flipped", func() []byte { d := append([]byte(nil), data...); d[len(d)-30] ^= 1; return d }(), "checksum"},
		{"empty", nil, "shorter than any chunk"},
		{"other file", []byte("PK\x03\x04 a zip file, not a chunk at all......"), "not a segment chunk"},
	} {
		_, _, err := segment.Decode(tc.data, "x")
		if !errors.Is(err, segment.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrCorrupt mentioning %q", tc.name, err, tc.want)
		}
	}
	if err := segment.CheckTrailer(data[len(data)/2-segment.TrailerSize:len(data)/2], int64(len(data)/2), "x"); err == nil {
		t.Error("CheckTrailer accepted a truncated chunk")
	}
}

func FuzzDecode(f *testing.F) {
	h, rows := chunk(ident("a"), 0, 1, 0, "a1", "b2")
	data, _ := segment.Encode(h, rows)
	f.Add(data)
	f.Add(data[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, rows, err := segment.Decode(b, "fuzz")
		if err == nil && len(rows) != h.Rows*h.Identity.Dim {
			t.Fatalf("decoded %d floats for %d rows of %d", len(rows), h.Rows, h.Identity.Dim)
		}
	})
}

// seal writes shards of chunks under loc, each shard with its DONE.json.
func seal(t *testing.T, loc *objstore.Location, id featcache.Identity, shards [][][]string, done bool) {
	t.Helper()
	ctx := context.Background()
	for s, chunks := range shards {
		dir := segment.ShardDir(id, s, len(shards))
		for c, keys := range chunks {
			h, rows := chunk(id, s, len(shards), c, keys...)
			data, err := segment.Encode(h, rows)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := loc.CreateIfAbsent(ctx, dir+"/"+segment.ChunkName(c), data); err != nil {
				t.Fatal(err)
			}
		}
		if done {
			d, _ := json.Marshal(segment.Done{BackboneID: id.ID(), Shard: s, Shards: len(shards), Chunks: len(chunks)})
			loc.CreateIfAbsent(ctx, dir+"/"+segment.DoneName, d)
		}
	}
}

// cacheContents maps view path -> hash and features, read back from the
// merged cache.
func cacheContents(t *testing.T, sum *segment.MergeSummary) map[string]string {
	t.Helper()
	name := strings.TrimSuffix(filepath.Base(sum.View), ".csv")
	entries, err := featcache.ReadView(sum.CacheDir, name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := featcache.OpenDir(sum.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]string{}
	v := make([]float32, r.Dim())
	for _, e := range entries {
		if ok, err := r.Get(e.Key, v); !ok || err != nil {
			t.Fatalf("%s: no row (%v)", e.Path, err)
		}
		out[e.Path] = fmt.Sprintf("%s %s %v", e.Label, e.Key.String()[:8], v)
	}
	return out
}

func TestMergeIdempotentOrderIndependent(t *testing.T) {
	ctx := context.Background()
	id := ident("a")
	a, _ := objstore.Create(ctx, "mem://merge-a/out")
	b, _ := objstore.Create(ctx, "mem://merge-b/out")
	seal(t, a, id, [][][]string{{{"a1", "a2"}, {"dup1"}}, {{"b1", "dup2"}}}, true)
	seal(t, b, id, [][][]string{{{"c1", "a1"}}}, true) // a1 again: same content, same hash
	want := map[string]string{}
	for _, k := range []string{"a1", "a2", "dup1", "b1", "dup2", "c1"} {
		content := k
		if strings.HasPrefix(k, "dup") {
			content = "dup"
		}
		want[k] = fmt.Sprintf("%s %s %v", k[:1], featcache.HashBytes([]byte(content)).String()[:8], feat(content))
	}
	for i, order := range [][]*objstore.Location{{a, b}, {b, a}, {a, b}} {
		root := t.TempDir()
		if i == 2 {
			root = t.TempDir()
			if _, err := segment.Merge(ctx, order, segment.MergeOptions{CacheRoot: root}); err != nil {
				t.Fatal(err)
			}
		}
		sum, err := segment.Merge(ctx, order, segment.MergeOptions{CacheRoot: root})
		if err != nil {
			t.Fatal(err)
		}
		got := cacheContents(t, sum)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("order %d: merged\n%v\nwant\n%v", i, got, want)
		}
		if i == 2 && sum.NewRows != 0 {
			t.Errorf("second merge into the same cache added %d rows, want 0", sum.NewRows)
		}
		if i == 0 {
			if sum.NewRows != 5 || sum.Entries != 6 || sum.Chunks != 4 || fmt.Sprint(sum.Providers) != "[cpu onnxruntime 1.24.1]" {
				t.Errorf("summary %+v: want 5 new rows (dup1/dup2 share one), 6 entries, 4 chunks", sum)
			}
		}
	}
}

func TestMergeRefuses(t *testing.T) {
	ctx := context.Background()
	good, _ := objstore.Create(ctx, "mem://refuse-good/out")
	seal(t, good, ident("a"), [][][]string{{{"a1"}}}, true)

	other, _ := objstore.Create(ctx, "mem://refuse-other/out")
	seal(t, other, ident("b"), [][][]string{{{"b1"}}}, true)

	partial, _ := objstore.Create(ctx, "mem://refuse-partial/out")
	seal(t, partial, ident("a"), [][][]string{{{"p1"}}}, false)

	trunc, _ := objstore.Create(ctx, "mem://refuse-trunc/out")
	seal(t, trunc, ident("a"), [][][]string{{{"t1"}, {"t2"}}}, true)
	rel := segment.ShardDir(ident("a"), 0, 1) + "/" + segment.ChunkName(1)
	data, _ := trunc.ReadAll(ctx, rel, 1<<20)
	trunc.WriteAll(ctx, rel, data[:len(data)-9])

	for _, tc := range []struct {
		name string
		locs []*objstore.Location
		want string
	}{
		{"another backbone", []*objstore.Location{good, other}, "merge one backbone at a time"},
		{"incomplete shard", []*objstore.Location{good, partial}, "not complete"},
		{"truncated chunk", []*objstore.Location{trunc}, "truncated"},
	} {
		root := t.TempDir()
		_, err := segment.Merge(ctx, tc.locs, segment.MergeOptions{CacheRoot: root})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
		if infos, _ := featcache.List(root); len(infos) > 0 && len(infos[0].Views) > 0 {
			t.Errorf("%s: a view was written despite the error", tc.name)
		}
	}
	// The partial shard merges when asked to.
	sum, err := segment.Merge(ctx, []*objstore.Location{good, partial}, segment.MergeOptions{CacheRoot: t.TempDir(), AllowIncomplete: true})
	if err != nil || sum.Entries != 2 || len(sum.Incomplete) != 1 {
		t.Errorf("AllowIncomplete: %+v, %v; want 2 entries and 1 incomplete shard", sum, err)
	}
}
