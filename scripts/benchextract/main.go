// Command benchextract measures headtune's extraction pipeline against its
// own parts, in one process on the same files:
//
//	decode   decode + resize + normalise on one core (core-seconds per image)
//	infer1   ONNX Runtime on pre-decoded tensors, 1 thread (core-seconds per image)
//	infer    ONNX Runtime on pre-decoded tensors, -threads threads (images/s)
//	e2e      `headtune extract` end to end into a fresh cache (images/s)
//
// ideal = cores / (decode + infer1 core-seconds per image): what a perfect
// pipeline on this many cores could reach, with no overhead and no
// contention. The ratio e2e/ideal is the pipeline's efficiency. Medians of
// -repeats passes.
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
	"github.com/headtune/headtune/imaging"
	_ "github.com/headtune/headtune/imaging/turbojpeg"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

func main() {
	images := flag.String("images", ".deps/bench_decode", "folder of JPEGs")
	model := flag.String("model", models.DefaultModel, "installed model name or .onnx file")
	preset := flag.String("preset", "", "preset for a plain .onnx file")
	threads := flag.Int("threads", runtime.NumCPU(), "ONNX Runtime threads and decode workers for the end-to-end run")
	batch := flag.Int("batch", 16, "batch size")
	repeats := flag.Int("repeats", 3, "passes per measurement (median reported)")
	fast := flag.Bool("fast-jpeg", false, "DCT-domain JPEG downscaling")
	spin := flag.Bool("spin", false, "ONNX Runtime spin-waiting")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the end-to-end runs")
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
		Session: backbone.SessionOptions{Threads: *threads, Spinning: *spin}})
	check(err)
	defer bb.Close()
	spec := bb.Spec
	n := len(paths)
	inLen := spec.TensorLen()

	// Decode on one core.
	tensors := make([]float32, n*inLen)
	var sc imaging.Scratch
	decode := median(*repeats, func() float64 {
		t := time.Now()
		for i, p := range paths {
			check(spec.Load(p, tensors[i*inLen:(i+1)*inLen], &sc))
		}
		return time.Since(t).Seconds() / float64(n)
	})

	cut, err := backbone.MarshalModel(bb.Cut)
	check(err)
	sessSpec := backbone.SessionSpec{Input: bb.InputName, InputShape: shape(spec), Outputs: []string{"features"}, OutputSizes: []int{bb.Dim}}
	out := make([]float32, *batch*bb.Dim)
	infer := func(s *backbone.Session) float64 {
		return median(*repeats, func() float64 {
			t := time.Now()
			for i := 0; i < n; i += *batch {
				m := min(*batch, n-i)
				check(s.Run(context.Background(), tensors[i*inLen:(i+m)*inLen], m, out))
			}
			return time.Since(t).Seconds() / float64(n)
		})
	}
	// bb.Session has one intra-op thread (the pipeline's layout).
	infer(bb.Session) // warm-up
	infer1 := infer(bb.Session)
	sN, err := backbone.NewSession(cut, sessSpec, backbone.SessionOptions{Threads: *threads, Spinning: *spin})
	check(err)
	inferN := infer(sN)
	sN.Close()
	// The pipeline's layout on pre-decoded tensors: -threads batches at
	// once, each on one thread.
	inferPar := median(*repeats, func() float64 {
		t := time.Now()
		var wg sync.WaitGroup
		next := make(chan int, n)
		for i := 0; i < n; i += *batch {
			next <- i
		}
		close(next)
		for k := 0; k < *threads; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := make([]float32, *batch*bb.Dim)
				for i := range next {
					m := min(*batch, n-i)
					check(bb.Session.Run(context.Background(), tensors[i*inLen:(i+m)*inLen], m, o))
				}
			}()
		}
		wg.Wait()
		return time.Since(t).Seconds() / float64(n)
	})

	ds := &imaging.Dataset{Root: *images, Classes: []string{"x"}}
	for _, p := range paths {
		ds.Samples = append(ds.Samples, imaging.Sample{Path: p, Label: "x"})
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	e2e := median(*repeats, func() float64 {
		tmp, err := os.MkdirTemp("", "benchextract")
		check(err)
		defer os.RemoveAll(tmp)
		t := time.Now()
		_, err = pipeline.Extract(context.Background(), bb, ds, pipeline.ExtractOptions{CacheRoot: tmp, BatchSize: *batch, Workers: *threads})
		check(err)
		return time.Since(t).Seconds() / float64(n)
	})
	cores := float64(*threads)
	ideal := cores / (decode + infer1)
	fmt.Printf("model %s (%s %dx%d, %d-d), %d JPEGs from %s, %d threads, batch %d, fast-jpeg %v, ORT %s\n",
		bb.Name, spec.Layout, spec.Width, spec.Height, bb.Dim, n, *images, *threads, *batch, *fast, backbone.RuntimeVersion())
	fmt.Printf("| measurement | images/s | core-ms per image |\n|---|---|---|\n")
	fmt.Printf("| decode+resize+normalise, 1 core | %.1f | %.2f |\n", 1/decode, decode*1e3)
	fmt.Printf("| inference on pre-decoded tensors, 1 thread | %.1f | %.2f |\n", 1/infer1, infer1*1e3)
	fmt.Printf("| inference on pre-decoded tensors, one session with %d intra-op threads | %.1f | |\n", *threads, 1/inferN)
	fmt.Printf("| inference on pre-decoded tensors, %d concurrent 1-thread runs (pipeline layout) | %.1f | |\n", *threads, 1/inferPar)
	fmt.Printf("| ideal pipeline = %d / (decode + inference) | %.1f | |\n", *threads, ideal)
	fmt.Printf("| **headtune extract end to end** | **%.1f** | |\n", 1/e2e)
	fmt.Printf("\nend-to-end / ideal = %.3f\n", (1/e2e)/ideal)
}

func shape(s imaging.Spec) []int64 {
	if s.Layout == "NHWC" {
		return []int64{int64(s.Height), int64(s.Width), int64(s.Channels)}
	}
	return []int64{int64(s.Channels), int64(s.Height), int64(s.Width)}
}

func median(k int, f func() float64) float64 {
	v := make([]float64, k)
	for i := range v {
		v[i] = f()
	}
	sort.Float64s(v)
	return v[k/2]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchextract:", err)
		os.Exit(1)
	}
}
