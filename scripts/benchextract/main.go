// Command benchextract measures headtune's extraction pipeline against its
// own parts, in one process on the same files:
//
//	decode    decode + resize + normalise on one core (core-seconds per image)
//	infer1    ONNX Runtime on pre-decoded tensors, 1 thread, alone (core-seconds per image)
//	inferN    one session with -threads intra-op threads (images/s)
//	inferPar  -threads concurrent 1-thread runs, the pipeline's layout (images/s)
//	e2e       `headtune extract` end to end into a fresh cache (images/s)
//	e2e-sep   the same with separate decode workers and batches of 16, the
//	          layout before fused decoding (baseline)
//	bare      -threads goroutines that only load and run images (no hashing,
//	          cache or ordering): e2e/bare is the pipeline's own overhead
//
// Two ideals, both "no overhead, perfect overlap" on -threads cores:
//
//	ideal (parts alone)    = cores / (decode + infer1)
//	ideal (parts loaded)   = cores / (decode + cores*inferPar)
//
// The first prices inference as it runs alone on an idle machine; the second
// as it runs when every core is busy with it (shared caches and memory
// bandwidth make each core slower), which any pipeline that keeps all cores
// busy pays. Every measurement is taken once per round, rounds alternate,
// and the figures are medians over -repeats rounds, so that drift on a
// shared machine hits all of them alike; e2e/ideal is the median of the
// per-round ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	_ "github.com/headtune/headtune/imaging/turbojpeg"
	"github.com/headtune/headtune/internal/median"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

func main() {
	images := flag.String("images", ".deps/bench_decode", "folder of JPEGs")
	model := flag.String("model", models.DefaultModel, "installed model name or .onnx file")
	preset := flag.String("preset", "", "preset for a plain .onnx file")
	threads := flag.Int("threads", runtime.NumCPU(), "ONNX Runtime threads and decode workers for the end-to-end run")
	batch := flag.Int("batch", 0, "batch size (0: the pipeline's default)")
	workers := flag.Int("workers", 0, "separate decode workers for the end-to-end run (0: the pipeline's default, each core decodes its own batches)")
	repeats := flag.Int("repeats", 3, "passes per measurement (median reported)")
	fast := flag.Bool("fast-jpeg", false, "DCT-domain JPEG downscaling")
	spin := flag.Bool("spin", false, "ONNX Runtime spin-waiting")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of three extra end-to-end runs")
	flag.Parse()

	paths, err := filepath.Glob(filepath.Join(*images, "*.jpg"))
	check(err)
	if len(paths) == 0 {
		check(fmt.Errorf("no .jpg files in %s (scripts/bench_decode.sh makes them)", *images))
	}
	sort.Strings(paths)
	dir, err := models.DefaultDir()
	check(err)
	store, err := models.OpenStore(dir)
	check(err)
	bb, err := pipeline.OpenBackbone(*model, pipeline.BackboneOptions{Store: store, Preset: *preset, FastJPEG: *fast,
		Session: ort.SessionOptions{Threads: *threads, Spinning: *spin}})
	check(err)
	defer bb.Close()
	spec := bb.Spec
	n := len(paths)
	inLen := spec.TensorLen()

	tensors := make([]float32, n*inLen)
	var sc imaging.Scratch
	decodeOnce := func() float64 {
		t := time.Now()
		for i, p := range paths {
			check(spec.Load(p, tensors[i*inLen:(i+1)*inLen], &sc))
		}
		return time.Since(t).Seconds() / float64(n)
	}

	cut, err := backbone.MarshalModel(bb.Cut)
	check(err)
	sessSpec := ort.SessionSpec{Input: bb.InputName, InputShape: spec.InputShape(), Outputs: []string{"features"}, OutputSizes: []int{bb.Dim}}
	// The parts run at the batch size the pipeline will use.
	bs := *batch
	if bs <= 0 {
		bs = pipeline.DefaultBatch(*workers <= 0 && bb.Inferers > 1)
	}
	out := make([]float32, bs*bb.Dim)
	inferOnce := func(s *ort.Session) float64 {
		t := time.Now()
		for i := 0; i < n; i += bs {
			m := min(bs, n-i)
			check(s.Run(context.Background(), tensors[i*inLen:(i+m)*inLen], m, out))
		}
		return time.Since(t).Seconds() / float64(n)
	}
	sN, err := ort.NewSession(cut, sessSpec, ort.SessionOptions{Threads: *threads, Spinning: *spin})
	check(err)
	defer sN.Close()
	// parallel times -threads goroutines that take batches from one
	// queue; work returns a goroutine's per-batch function (with buffers of
	// its own), called with the batch's first image and its size.
	parallel := func(work func() func(i, m int)) float64 {
		t := time.Now()
		var wg sync.WaitGroup
		next := make(chan int, n)
		for i := 0; i < n; i += bs {
			next <- i
		}
		close(next)
		for k := 0; k < *threads; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				do := work()
				for i := range next {
					do(i, min(bs, n-i))
				}
			}()
		}
		wg.Wait()
		return time.Since(t).Seconds() / float64(n)
	}
	// The pipeline's layout on pre-decoded tensors: -threads batches at
	// once, each on one thread (bb.Session has one intra-op thread).
	inferParOnce := func() float64 {
		return parallel(func() func(i, m int) {
			o := make([]float32, bs*bb.Dim)
			return func(i, m int) {
				check(bb.Session.Run(context.Background(), tensors[i*inLen:(i+m)*inLen], m, o))
			}
		})
	}
	// bare: the pipeline's work with nothing else: -threads goroutines, each
	// loading (read, decode, resize, normalise) a batch and running it, no
	// hashing, no cache, no ordering. e2e/bare is the pipeline's own
	// overhead; bare/ideal is what running the parts side by side costs.
	bareOnce := func() float64 {
		return parallel(func() func(i, m int) {
			var sc imaging.Scratch
			in := make([]float32, bs*inLen)
			o := make([]float32, bs*bb.Dim)
			return func(i, m int) {
				for j := 0; j < m; j++ {
					check(spec.Load(paths[i+j], in[j*inLen:(j+1)*inLen], &sc))
				}
				check(bb.Session.Run(context.Background(), in[:m*inLen], m, o))
			}
		})
	}
	ds := &imaging.Dataset{Root: *images, Classes: []string{"x"}}
	for _, p := range paths {
		ds.Samples = append(ds.Samples, imaging.Sample{Path: p, Label: "x"})
	}
	extractOnce := func(opt pipeline.ExtractOptions) float64 {
		tmp, err := os.MkdirTemp("", "benchextract")
		check(err)
		defer os.RemoveAll(tmp)
		opt.CacheRoot = tmp
		t := time.Now()
		_, err = pipeline.Extract(context.Background(), bb, ds, opt)
		check(err)
		return time.Since(t).Seconds() / float64(n)
	}
	// e2eOnce returns the whole run's time per image and its steady state:
	// the time per image between the 10th percentile image and the last,
	// without the fixed start and finish costs (opening the cache, writing
	// the view, fsync) that a real data set of thousands of images
	// amortises.
	e2eOnce := func() (whole, steady float64) {
		var t0, t1 time.Time
		d0 := 0
		whole = extractOnce(pipeline.ExtractOptions{BatchSize: *batch, Workers: *workers, Progress: func(p pipeline.ExtractProgress) {
			if d0 == 0 && p.Done >= n/10 {
				t0, d0 = time.Now(), p.Done
			}
			if p.Done == n {
				t1 = time.Now()
			}
		}})
		return whole, t1.Sub(t0).Seconds() / float64(n-d0)
	}
	// Baseline layout: separate decode workers handing batches of 16 to
	// the inference goroutines.
	e2eSepOnce := func() float64 { return extractOnce(pipeline.ExtractOptions{BatchSize: 16, Workers: *threads}) }

	cores := float64(*threads)
	decodeOnce()          // warm-up: tensors filled, page cache hot
	inferOnce(bb.Session) // warm-up
	var ds1, is1, isN, isPar, es, rAlone, rLoaded, seps, rSep, sts, rSteady, bares, rBare, rBareIdeal []float64
	for r := 0; r < *repeats; r++ {
		d, i1, iN, iP := decodeOnce(), inferOnce(bb.Session), inferOnce(sN), inferParOnce()
		e, st := e2eOnce()
		bare := bareOnce()
		bares, rBare, rBareIdeal = append(bares, bare), append(rBare, bare/e), append(rBareIdeal, (1/bare)/(cores/(d+i1)))
		sep := e2eSepOnce()
		seps, rSep = append(seps, sep), append(rSep, sep/e)
		sts, rSteady = append(sts, st), append(rSteady, (1/st)/(cores/(d+i1)))
		ds1, is1, isN, isPar, es = append(ds1, d), append(is1, i1), append(isN, iN), append(isPar, iP), append(es, e)
		rAlone = append(rAlone, (1/e)/(cores/(d+i1)))
		rLoaded = append(rLoaded, (1/e)/(cores/(d+cores*iP)))
	}
	decode, infer1, inferN, inferPar, e2e := median.Of(ds1), median.Of(is1), median.Of(isN), median.Of(isPar), median.Of(es)
	if *cpuprofile != "" {
		// Three more end-to-end passes, profiled alone.
		f, err := os.Create(*cpuprofile)
		check(err)
		check(pprof.StartCPUProfile(f))
		for r := 0; r < 3; r++ {
			e2eOnce()
		}
		pprof.StopCPUProfile()
		check(f.Close())
	}
	fmt.Printf("model %s (%s %dx%d, %d-d), %d JPEGs from %s, %d threads, batch %d, fast-jpeg %v, ORT %s, medians of %d rounds\n",
		bb.Name, spec.Layout, spec.Width, spec.Height, bb.Dim, n, *images, *threads, bs, *fast, ort.Version(), *repeats)
	layout := "fused: each core decodes and runs its own batches"
	if *workers > 0 || bb.Inferers <= 1 {
		layout = "separate decode workers"
	}
	fmt.Printf("pipeline layout: %s\n", layout)
	fmt.Printf("| measurement | images/s | core-ms per image |\n|---|---|---|\n")
	fmt.Printf("| decode+resize+normalise, 1 core | %.1f | %.2f |\n", 1/decode, decode*1e3)
	fmt.Printf("| inference on pre-decoded tensors, 1 thread alone | %.1f | %.2f |\n", 1/infer1, infer1*1e3)
	fmt.Printf("| inference on pre-decoded tensors, one session with %d intra-op threads | %.1f | |\n", *threads, 1/inferN)
	fmt.Printf("| inference on pre-decoded tensors, %d concurrent 1-thread runs (pipeline layout) | %.1f | %.2f |\n", *threads, 1/inferPar, cores*inferPar*1e3)
	fmt.Printf("| ideal pipeline, parts alone = %d / (decode + inference alone) | %.1f | |\n", *threads, cores/(decode+infer1))
	fmt.Printf("| ideal pipeline, parts loaded = %d / (decode + inference with all cores busy) | %.1f | |\n", *threads, cores/(decode+cores*inferPar))
	fmt.Printf("| bare loop: each core loads and runs its own images, no hashing, no cache | %.1f | |\n", 1/median.Of(bares))
	fmt.Printf("| extract end to end, separate decode workers, batch 16 (baseline layout) | %.1f | |\n", 1/median.Of(seps))
	fmt.Printf("| **headtune extract end to end** | **%.1f** | |\n", 1/e2e)
	fmt.Printf("| headtune extract, steady state (images %d..%d) | %.1f | |\n", n/10, n, 1/median.Of(sts))
	fmt.Printf("\nend-to-end / ideal (parts alone) = %.3f\nend-to-end / ideal (parts loaded) = %.3f\nsteady state / ideal (parts alone) = %.3f\nbare loop / ideal (parts alone) = %.3f\nend-to-end / bare loop = %.3f\nend-to-end / baseline layout = %.3f\n", median.Of(rAlone), median.Of(rLoaded), median.Of(rSteady), median.Of(rBareIdeal), median.Of(rBare), median.Of(rSep))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchextract:", err)
		os.Exit(1)
	}
}
