// Command benchint8 compares a float32 backbone with its int8 copy
// (`headtune models quantize`) in one process, on the same images:
//
//	infer1    ONNX Runtime on pre-decoded tensors, batch 1, 1 thread alone
//	inferPar  -threads concurrent 1-thread runs (the pipeline's layout)
//	e2e       `headtune extract` end to end into a fresh cache
//	cosine    cosine similarity of the two models' features per image
//	profile   (-profile N) ONNX Runtime's profiler on N images through both
//	          models, 1 thread, alternating: kernel µs per image by layer
//	          class (backbone/ortprof) and the bound on the speed-up if
//	          every class ran in its faster precision
//
// Inference runs each image through both models back to back, timing each
// call, so that load coming and going on a shared machine falls on both
// alike; the extractions alternate (first model changing every round).
// Speeds are medians over -repeats rounds, the speed-ups medians of the
// per-round ratios (with their range). It prints one JSON object on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/ortprof"
	"github.com/headtune/headtune/imaging"
	_ "github.com/headtune/headtune/imaging/turbojpeg"
	"github.com/headtune/headtune/internal/median"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/pipeline"
)

type result struct {
	Images           int     `json:"images"`
	Threads          int     `json:"threads"`
	Repeats          int     `json:"repeats"`
	ORT              string  `json:"ort"`
	Infer1Float      float64 `json:"infer1_float_img_s"`
	Infer1Int8       float64 `json:"infer1_int8_img_s"`
	Infer1Speedup    float64 `json:"infer1_speedup"`
	InferParFloat    float64 `json:"inferpar_float_img_s"`
	InferParInt8     float64 `json:"inferpar_int8_img_s"`
	InferParSpeedup  float64 `json:"inferpar_speedup"`
	E2EFloat         float64 `json:"e2e_float_img_s"`
	E2EInt8          float64 `json:"e2e_int8_img_s"`
	E2ESpeedup       float64 `json:"e2e_speedup"`
	CosineMean       float64 `json:"cosine_mean"`
	CosineMin        float64 `json:"cosine_min"`
	FloatName        string  `json:"float_model"`
	Int8Name         string  `json:"int8_model"`
	TuneLayers       int     `json:"tune_layers,omitempty"`
	Dim              int     `json:"dim"` // feature values per image
	FloatSizeBytes   int64   `json:"float_size_bytes"`
	Int8SizeBytes    int64   `json:"int8_size_bytes"`
	InferParSpread   string  `json:"inferpar_speedup_range"`
	E2ESpeedupSpread string  `json:"e2e_speedup_range"`
	// Profile is the per-class comparison (-profile), nil without it.
	Profile *ortprof.Comparison `json:"profile,omitempty"`
	// ProfileImages is the number of images profiled (runs averaged).
	ProfileImages int `json:"profile_images,omitempty"`
}

func main() {
	images := flag.String("images", "", "folder of images (walked recursively)")
	floatName := flag.String("float", models.DefaultModel, "installed float32 model")
	int8Name := flag.String("int8", "", "installed int8 model (default FLOAT-int8)")
	threads := flag.Int("threads", runtime.NumCPU(), "cores: concurrent 1-thread inference runs and decode")
	repeats := flag.Int("repeats", 3, "rounds (medians reported)")
	limit := flag.Int("n", 400, "images used (the first n, sorted)")
	profileN := flag.Int("profile", 0, "also profile both models (ONNX Runtime's profiler, 1 thread) on this many of the images and compare them by layer class (0: no profile)")
	tuneLayers := flag.Int("tune-layers", 0, "open both models as `extract --tune-layers K` does (the cut before the last K dense layers or convolutions)")
	profileOnly := flag.Bool("profile-only", false, "with -profile: skip the timing rounds, print only the profile")
	flag.Parse()
	if *int8Name == "" {
		*int8Name = *floatName + "-int8"
	}
	paths, err := pipeline.ExpandInputs([]string{*images})
	check(err)
	sort.Strings(paths)
	if len(paths) > *limit {
		paths = paths[:*limit]
	}
	if len(paths) == 0 {
		check(fmt.Errorf("no images in %s", *images))
	}
	dir, err := models.DefaultDir()
	check(err)
	store, err := models.OpenStore(dir)
	check(err)
	open := func(name string) *pipeline.Backbone {
		bb, err := pipeline.OpenBackbone(name, pipeline.BackboneOptions{Store: store, TuneLayers: *tuneLayers, Session: ort.SessionOptions{Threads: *threads}})
		check(err)
		return bb
	}
	bbs := []*pipeline.Backbone{open(*floatName), open(*int8Name)}
	defer bbs[0].Close()
	defer bbs[1].Close()
	spec := bbs[0].Spec
	if string(spec.Canonical()) != string(bbs[1].Spec.Canonical()) {
		check(fmt.Errorf("%s and %s preprocess differently", *floatName, *int8Name))
	}
	n, inLen, dim := len(paths), spec.TensorLen(), bbs[0].Dim
	tensors := make([]float32, n*inLen)
	var sc imaging.Scratch
	for i, p := range paths {
		check(spec.Load(p, tensors[i*inLen:(i+1)*inLen], &sc))
	}
	// infer1: a 1-thread session alone.
	single := make([]*ort.Session, 2)
	for k, bb := range bbs {
		cut, err := backbone.MarshalModel(bb.Cut)
		check(err)
		single[k], err = ort.NewSession(cut, ort.SessionSpec{Input: bb.InputName, InputShape: spec.InputShape(), Outputs: []string{"features"}, OutputSizes: []int{dim}}, ort.SessionOptions{Threads: 1})
		check(err)
		defer single[k].Close()
	}
	feats := [2][]float32{make([]float32, n*dim), make([]float32, n*dim)}
	// infer1 runs every image through both models, one after the other
	// (the order alternating), and times each run: load that comes and
	// goes on a shared machine falls on both models alike.
	infer1 := func() (fl, q float64) {
		var spent [2]time.Duration
		for i := 0; i < n; i++ {
			for j := 0; j < 2; j++ {
				k := (i + j) % 2
				t := time.Now()
				check(single[k].Run(context.Background(), tensors[i*inLen:(i+1)*inLen], 1, feats[k][i*dim:(i+1)*dim]))
				spent[k] += time.Since(t)
			}
		}
		return float64(n) / spent[0].Seconds(), float64(n) / spent[1].Seconds()
	}
	// inferPar: -threads goroutines, each taking images from one queue and
	// running each through both models (alternating order) on the
	// pipeline's sessions; rates are images per second of each model's
	// share of the wall time.
	inferPar := func() (fl, q float64) {
		var mu sync.Mutex
		var spent [2]time.Duration
		var wg sync.WaitGroup
		next := make(chan int, n)
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		for w := 0; w < *threads; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := make([]float32, dim)
				var mine [2]time.Duration
				for i := range next {
					for j := 0; j < 2; j++ {
						k := (i + j) % 2
						t := time.Now()
						check(bbs[k].Session.Run(context.Background(), tensors[i*inLen:(i+1)*inLen], 1, o))
						mine[k] += time.Since(t)
					}
				}
				mu.Lock()
				spent[0] += mine[0]
				spent[1] += mine[1]
				mu.Unlock()
			}()
		}
		wg.Wait()
		// Each goroutine's time is one core's; the models' rates on all
		// cores are threads times the per-core rate.
		c := float64(*threads)
		return c * float64(n) / spent[0].Seconds(), c * float64(n) / spent[1].Seconds()
	}
	ds := &imaging.Dataset{Root: *images, Classes: []string{"x"}}
	for _, p := range paths {
		ds.Samples = append(ds.Samples, imaging.Sample{Path: p, Label: "x"})
	}
	e2e := func(k int) float64 {
		tmp, err := os.MkdirTemp("", "benchint8")
		check(err)
		defer os.RemoveAll(tmp)
		s, err := pipeline.Extract(context.Background(), bbs[k], ds, pipeline.ExtractOptions{CacheRoot: tmp})
		check(err)
		if s.Computed != n {
			check(fmt.Errorf("extract computed %d of %d images", s.Computed, n))
		}
		return float64(n) / s.Seconds
	}
	res := result{Images: n, Threads: *threads, Repeats: *repeats, ORT: ort.Version(), FloatName: *floatName, Int8Name: *int8Name, TuneLayers: *tuneLayers, Dim: dim}
	if *profileN > 0 {
		cmp, runs, err := profile(bbs, spec, tensors[:min(*profileN, n)*inLen], dim)
		check(err)
		res.Profile, res.ProfileImages = &cmp, runs
	}
	if *profileOnly {
		b, err := json.Marshal(res)
		check(err)
		fmt.Println(string(b))
		return
	}
	infer1() // warm-up
	var i1 [2][]float64
	var ip [2][]float64
	var ee [2][]float64
	var r1, rp, re []float64
	for r := 0; r < *repeats; r++ {
		f, q := infer1()
		i1[0], i1[1] = append(i1[0], f), append(i1[1], q)
		f, q = inferPar()
		ip[0], ip[1] = append(ip[0], f), append(ip[1], q)
		// End to end cannot interleave images: the two extractions
		// alternate, the first one changing every round.
		for j := 0; j < 2; j++ {
			k := (r + j) % 2
			ee[k] = append(ee[k], e2e(k))
		}
		r1 = append(r1, i1[1][r]/i1[0][r])
		rp = append(rp, ip[1][r]/ip[0][r])
		re = append(re, ee[1][r]/ee[0][r])
	}
	res.Infer1Float, res.Infer1Int8, res.Infer1Speedup = median.Of(i1[0]), median.Of(i1[1]), median.Of(r1)
	res.InferParFloat, res.InferParInt8, res.InferParSpeedup = median.Of(ip[0]), median.Of(ip[1]), median.Of(rp)
	res.E2EFloat, res.E2EInt8, res.E2ESpeedup = median.Of(ee[0]), median.Of(ee[1]), median.Of(re)
	res.InferParSpread, res.E2ESpeedupSpread = spread(rp), spread(re)
	res.CosineMin = 1
	for i := 0; i < n; i++ {
		c := pipeline.Cosine(feats[0][i*dim:(i+1)*dim], feats[1][i*dim:(i+1)*dim])
		res.CosineMean += c / float64(n)
		res.CosineMin = math.Min(res.CosineMin, c)
	}
	for k, bb := range bbs {
		st, err := os.Stat(bb.ModelPath)
		check(err)
		if k == 0 {
			res.FloatSizeBytes = st.Size()
		} else {
			res.Int8SizeBytes = st.Size()
		}
	}
	b, err := json.Marshal(res)
	check(err)
	fmt.Println(string(b))
}

// profileWarmup is how many runs of each profiled session are left out of
// the averages: the first runs allocate and warm caches.
const profileWarmup = 3

// profile runs every image of tensors through 1-thread profiling sessions
// of both models (alternating, as infer1 does), and compares their kernel
// times by layer class on the graphs ONNX Runtime optimised. It returns the
// comparison and the number of runs averaged per model.
func profile(bbs []*pipeline.Backbone, spec imaging.Spec, tensors []float32, dim int) (ortprof.Comparison, int, error) {
	tmp, err := os.MkdirTemp("", "benchint8-profile")
	if err != nil {
		return ortprof.Comparison{}, 0, err
	}
	defer os.RemoveAll(tmp)
	inLen := spec.TensorLen()
	n := len(tensors) / inLen
	sess := make([]*ort.Session, 2)
	optimized := make([]string, 2)
	for k, bb := range bbs {
		cut, err := backbone.MarshalModel(bb.Cut)
		if err != nil {
			return ortprof.Comparison{}, 0, err
		}
		optimized[k] = filepath.Join(tmp, fmt.Sprintf("optimized-%d.onnx", k))
		sess[k], err = ort.NewSession(cut, ort.SessionSpec{Input: bb.InputName, InputShape: spec.InputShape(), Outputs: []string{"features"}, OutputSizes: []int{dim}},
			ort.SessionOptions{Threads: 1, ProfilePrefix: filepath.Join(tmp, fmt.Sprintf("profile-%d", k)), OptimizedModelPath: optimized[k]})
		if err != nil {
			return ortprof.Comparison{}, 0, err
		}
		defer sess[k].Close()
	}
	out := make([]float32, dim)
	for i := 0; i < n+profileWarmup; i++ {
		for j := 0; j < 2; j++ {
			k := (i + j) % 2
			x := tensors[(i%n)*inLen : (i%n+1)*inLen]
			if err := sess[k].Run(context.Background(), x, 1, out); err != nil {
				return ortprof.Comparison{}, 0, err
			}
		}
	}
	var times [2]map[string]ortprof.NodeTime
	var classes [2]map[string]ortprof.Class
	runs := 0
	for k := range sess {
		if err := sess[k].Close(); err != nil {
			return ortprof.Comparison{}, 0, fmt.Errorf("profile of %s: %w", bbs[k].Name, err)
		}
		f, err := os.Open(sess[k].ProfileFile())
		if err != nil {
			return ortprof.Comparison{}, 0, err
		}
		p, err := ortprof.Parse(f)
		f.Close()
		if err != nil {
			return ortprof.Comparison{}, 0, fmt.Errorf("%s: %w", sess[k].ProfileFile(), err)
		}
		if times[k], runs, err = p.PerRun(profileWarmup); err != nil {
			return ortprof.Comparison{}, 0, fmt.Errorf("%s: %w", sess[k].ProfileFile(), err)
		}
		m, err := backbone.ReadModelFile(optimized[k])
		if err != nil {
			return ortprof.Comparison{}, 0, fmt.Errorf("optimised graph of %s: %w", bbs[k].Name, err)
		}
		classes[k] = ortprof.ClassifyGraph(m.Graph)
	}
	return ortprof.Compare(times[0], times[1], classes[0], classes[1]), runs, nil
}

func spread(v []float64) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%.2f-%.2f", s[0], s[len(s)-1])
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchint8:", err)
		os.Exit(1)
	}
}
