// Command benchcloud prices object storage and sharding against local
// extraction, in one process on the same images, rounds alternating so
// that drift on a shared machine hits every variant alike:
//
//	local   pipeline.Extract from a local folder into a fresh cache
//	s3      pipeline.ExtractLocation from a fake S3 on 127.0.0.1 (the same
//	        images uploaded), fresh cache
//	shard   plan (1 shard) + pipeline.ExtractShard from the fake S3,
//	        sealing a chunk every -chunk-rows images, fresh cache and output
//	merge   pipeline.MergeSegments of that output into a fresh cache
//
// It prints medians over -repeats rounds: seconds per image of each, the
// overhead per image of s3 and shard over local, and merge rows/s; then a
// synthetic merge of -merge-rows rows of -dim floats (chunks of
// -chunk-rows) for merge throughput at a realistic feature size.
//
// The fake S3 runs in this process and answers from memory, so the s3
// figures price the client side (HTTP, SDK, checksums, copies), not a
// network; a real store adds its latency per object, hidden by the
// pipeline's concurrent reads (one per core).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/e2e"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/featcache/segment"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/median"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
	"github.com/headtune/headtune/pipeline"
	"github.com/headtune/headtune/shardplan"
	"github.com/headtune/headtune/source"
)

func main() {
	model := flag.String("model", models.DefaultModel, "installed model name or .onnx file")
	preset := flag.String("preset", "", "preprocessing preset of a plain .onnx file")
	n := flag.Int("n", 200, "images (640x480 JPEGs, generated)")
	threads := flag.Int("threads", 1, "cores (concurrent 1-thread inference runs)")
	repeats := flag.Int("repeats", 5, "rounds (medians reported)")
	chunkRows := flag.Int("chunk-rows", 64, "images per sealed chunk")
	mergeRows := flag.Int("merge-rows", 50000, "rows of the synthetic merge")
	dim := flag.Int("dim", 1280, "feature size of the synthetic merge")
	flag.Parse()
	for _, kv := range objstoretest.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "benchcloud-")
	check(err)
	defer os.RemoveAll(tmp)
	ds := filepath.Join(tmp, "ds")
	_, err = e2e.WriteDataset(ds, e2e.DatasetOptions{Classes: 4, PerClass: *n / 4, Width: 640, Height: 480, Format: "jpeg", Seed: 7})
	check(err)
	fake, err := objstoretest.StartServer("bench")
	check(err)
	defer fake.Close()
	bytes := int64(0)
	check(filepath.Walk(ds, func(p string, st os.FileInfo, err error) error {
		if err != nil || st.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(ds, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		bytes += int64(len(data))
		return fake.Put("ds/"+filepath.ToSlash(rel), data)
	}))

	_, err = ort.Init("")
	check(err)
	dir, err := models.DefaultDir()
	check(err)
	store, err := models.OpenStore(dir)
	check(err)
	bb, err := pipeline.OpenBackbone(*model, pipeline.BackboneOptions{Store: store, Preset: *preset, Session: ort.SessionOptions{Threads: *threads}})
	check(err)
	defer bb.Close()
	im, err := imaging.OpenDataset(ds)
	check(err)
	images := len(im.Samples)
	fmt.Printf("benchcloud: %d JPEGs 640x480 (%.0f KB mean), model %s (%d-d), %d cores, %d rounds, GOMAXPROCS %d\n",
		images, float64(bytes)/float64(images)/1024, filepath.Base(*model), bb.Dim, *threads, *repeats, runtime.GOMAXPROCS(0))

	// Warm-up (session, page cache, connection pool), untimed.
	_, err = pipeline.ExtractLocation(ctx, bb, fake.URL("ds"), pipeline.ExtractOptions{CacheRoot: filepath.Join(tmp, "c-warm"), KeepLastRun: true})
	check(err)
	var tLocal, tS3, tShard, tMerge, mergeRate []float64
	var cLocal, cS3, cShard []float64 // process CPU seconds per image
	for r := 0; r < *repeats; r++ {
		opt := pipeline.ExtractOptions{CacheRoot: filepath.Join(tmp, fmt.Sprintf("c-local-%d", r)), KeepLastRun: true}
		start, cpu0 := time.Now(), cpuSeconds()
		sum, err := pipeline.Extract(ctx, bb, im, opt)
		check(err)
		tLocal = append(tLocal, time.Since(start).Seconds()/float64(sum.Computed))
		cLocal = append(cLocal, (cpuSeconds()-cpu0)/float64(sum.Computed))

		opt.CacheRoot = filepath.Join(tmp, fmt.Sprintf("c-s3-%d", r))
		start, cpu0 = time.Now(), cpuSeconds()
		sum, err = pipeline.ExtractLocation(ctx, bb, fake.URL("ds"), opt)
		check(err)
		tS3 = append(tS3, time.Since(start).Seconds()/float64(sum.Computed))
		cS3 = append(cS3, (cpuSeconds()-cpu0)/float64(sum.Computed))

		planURL := fake.URL(fmt.Sprintf("plan-%d", r))
		start, cpu0 = time.Now(), cpuSeconds()
		planDS, err := source.Open(ctx, fake.URL("ds"))
		check(err)
		out, err := objstore.Create(ctx, planURL)
		check(err)
		_, err = shardplan.Write(ctx, planDS, out, shardplan.Options{Shards: 1})
		check(err)
		planDS.Close()
		ssum, err := pipeline.ExtractShard(ctx, bb, pipeline.ShardOptions{Plan: planURL, Shard: "0/1", ChunkRows: *chunkRows,
			CacheRoot: filepath.Join(tmp, fmt.Sprintf("c-shard-%d", r))})
		check(err)
		tShard = append(tShard, time.Since(start).Seconds()/float64(ssum.Computed))
		cShard = append(cShard, (cpuSeconds()-cpu0)/float64(ssum.Computed))

		start = time.Now()
		msum, err := pipeline.MergeSegments(ctx, pipeline.MergeOptions{Inputs: []string{fake.URL(fmt.Sprintf("plan-%d/segments", r))},
			CacheRoot: filepath.Join(tmp, fmt.Sprintf("c-merge-%d", r)), KeepLastRun: true})
		check(err)
		tMerge = append(tMerge, time.Since(start).Seconds()/float64(msum.Entries))
		mergeRate = append(mergeRate, msum.RowsPerS)
		out.Close()
	}
	ms := func(v []float64) string { return fmt.Sprintf("%7.2f ms", 1000*median.Of(v)) }
	spread := func(v []float64) string {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return fmt.Sprintf("(%.2f..%.2f)", 1000*s[0], 1000*s[len(s)-1])
	}
	fmt.Printf("per image, wall time x %d cores, median (min..max) of %d rounds:\n", *threads, *repeats)
	core := float64(*threads)
	scale := func(v []float64) []float64 {
		o := make([]float64, len(v))
		for i := range v {
			o[i] = v[i] * core
		}
		return o
	}
	fmt.Printf("  local extract      %s %s core-ms\n", ms(scale(tLocal)), spread(scale(tLocal)))
	fmt.Printf("  s3 extract         %s %s core-ms  overhead %+.2f ms (%+.1f%%)\n", ms(scale(tS3)), spread(scale(tS3)), 1000*core*(median.Of(tS3)-median.Of(tLocal)), 100*(median.Of(tS3)/median.Of(tLocal)-1))
	fmt.Printf("  s3 shard + seal    %s %s core-ms  overhead %+.2f ms (%+.1f%%)\n", ms(scale(tShard)), spread(scale(tShard)), 1000*core*(median.Of(tShard)-median.Of(tLocal)), 100*(median.Of(tShard)/median.Of(tLocal)-1))
	fmt.Printf("process CPU per image (both sides of the fake S3 included), median (min..max):\n")
	fmt.Printf("  local extract      %s %s\n", ms(cLocal), spread(cLocal))
	fmt.Printf("  s3 extract         %s %s  overhead %+.2f ms\n", ms(cS3), spread(cS3), 1000*(median.Of(cS3)-median.Of(cLocal)))
	fmt.Printf("  s3 shard + seal    %s %s  overhead %+.2f ms\n", ms(cShard), spread(cShard), 1000*(median.Of(cShard)-median.Of(cLocal)))
	fmt.Printf("  merge              %s %s wall-ms  (%.0f rows/s)\n", ms(tMerge), spread(tMerge), median.Of(mergeRate))

	// Synthetic merge at a realistic feature size.
	id := featcache.Identity{ModelHash: "bench", FeatureTensor: "f", Preprocess: json.RawMessage(`{}`), Dim: *dim}
	loc, err := objstore.Create(ctx, fake.URL("synthetic"))
	check(err)
	rng := rand.New(rand.NewPCG(1, 1))
	chunks := (*mergeRows + *chunkRows*16 - 1) / (*chunkRows * 16)
	per := *chunkRows * 16
	for c := 0; c < chunks; c++ {
		h := &segment.Header{Identity: id, Model: "bench", Provider: "cpu", Dataset: "synthetic", Shards: 1, Chunk: c}
		rows := make([]float32, per**dim)
		for i := range rows {
			rows[i] = rng.Float32()
		}
		for i := 0; i < per; i++ {
			var k featcache.Key
			for j := range k {
				k[j] = byte(rng.Uint32())
			}
			h.Entries = append(h.Entries, segment.Entry{Key: fmt.Sprintf("c/%d-%d.jpg", c, i), Label: "c", Hash: k, Row: i})
		}
		data, err := segment.Encode(h, rows)
		check(err)
		check(loc.WriteAll(ctx, segment.ShardDir(id, 0, 1)+"/"+segment.ChunkName(c), data))
	}
	d, _ := json.Marshal(segment.Done{Shards: 1, Chunks: chunks})
	check(loc.WriteAll(ctx, segment.ShardDir(id, 0, 1)+"/"+segment.DoneName, d))
	var rates []float64
	for r := 0; r < 3; r++ {
		sum, err := pipeline.MergeSegments(ctx, pipeline.MergeOptions{Inputs: []string{fake.URL("synthetic")},
			CacheRoot: filepath.Join(tmp, fmt.Sprintf("c-syn-%d", r)), KeepLastRun: true})
		check(err)
		rates = append(rates, sum.RowsPerS)
		os.RemoveAll(filepath.Join(tmp, fmt.Sprintf("c-syn-%d", r)))
	}
	sort.Float64s(rates)
	fmt.Printf("synthetic merge: %d rows x %d floats in %d chunks from the fake S3: %.0f rows/s median of 3 (%.0f..%.0f), %.0f MB/s\n",
		chunks*per, *dim, chunks, rates[1], rates[0], rates[2], rates[1]*float64(*dim)*4/1e6)
}

// cpuSeconds is the process's user + system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcloud:", err)
		os.Exit(1)
	}
}
