package job_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/median"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/pipeline"
)

// BenchmarkTrainStreamed: MLP training throughput (training rows × epochs
// per second of Report.Seconds) on 20,000 rows of 128 features (10 MiB)
// with every row in memory against streamed under a 1 MiB budget, both in
// each iteration; it reports the medians over iterations and the median,
// least and greatest of the per-iteration ratio. The streamed time includes its two
// standardisation passes; rows come from the OS page cache (a warm cache
// file), so this is the cost of the streaming machinery, not of a disk.
//
//	go test ./job -run '^$' -bench TrainStreamed -benchtime 11x
func BenchmarkTrainStreamed(b *testing.B) {
	const n, d = 20000, 128
	dir := b.TempDir()
	root := filepath.Join(dir, "cache")
	ident := featcache.Identity{ModelHash: "bench", FeatureTensor: "features", Preprocess: json.RawMessage(`{}`), Dim: d}
	w, err := featcache.OpenWriter(context.Background(), root, ident, featcache.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var entries []featcache.ViewEntry
	for i := 0; i < n; i++ {
		k := featcache.Key(sha256.Sum256([]byte(fmt.Sprint(i))))
		c := i % 10
		x := make([]float32, d)
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		x[c] += 3
		if err := w.Append([]featcache.Key{k}, x); err != nil {
			b.Fatal(err)
		}
		entries = append(entries, featcache.ViewEntry{Path: fmt.Sprintf("c%d/%d.png", c, i), Label: fmt.Sprint("c", c), Key: k})
	}
	cdir := w.Dir()
	w.Close()
	if err := featcache.WriteView(cdir, "bench", entries); err != nil {
		b.Fatal(err)
	}
	id, _ := json.Marshal(ident)
	rec, _ := json.Marshal(pipeline.LastRun{Model: "bench", CacheDir: cdir, View: featcache.ViewPath(cdir, "bench"), Identity: id})
	os.WriteFile(filepath.Join(root, "last-extract.json"), rec, 0o644)
	cfg := head.DefaultConfig(head.KindMLP)
	cfg.Hidden, cfg.Epochs, cfg.Patience = []int{128}, 2, 0
	env := job.Env{CacheDir: root}
	var mem, str, ratio []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var rate [2]float64
		for m, budget := range []job.Memory{{}, {Bytes: 1 << 20}} {
			res, err := job.Train(context.Background(), job.TrainOptions{Env: env, Head: filepath.Join(dir, "h.head"), Config: cfg, Split: job.DefaultSplit, Memory: budget})
			if err != nil {
				b.Fatal(err)
			}
			if want := []string{"in-memory", head.DataStreamed}[m]; res.Data.Mode != want {
				b.Fatalf("mode %s, want %s", res.Data.Mode, want)
			}
			rate[m] = float64(res.TrainRows*res.Report.Epochs) / res.Report.Seconds
		}
		mem, str, ratio = append(mem, rate[0]), append(str, rate[1]), append(ratio, rate[1]/rate[0])
	}
	b.ReportMetric(median.Of(mem), "inmem_rows/s")
	b.ReportMetric(median.Of(str), "streamed_rows/s")
	b.ReportMetric(median.Of(ratio), "streamed/inmem")
	b.ReportMetric(slices.Min(ratio), "ratio_min")
	b.ReportMetric(slices.Max(ratio), "ratio_max")
}
