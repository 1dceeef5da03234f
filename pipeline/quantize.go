package pipeline

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/backbone/quantize"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models"
)

// QuantizeOptions configure Quantize.
type QuantizeOptions struct {
	// Store holds the source model and receives the int8 one.
	Store *models.Store
	// Model is the installed model to quantize.
	Model string
	// Name is the new model's name; default Model + "-int8".
	Name string
	// Dataset is the calibration images: a folder (walked recursively, any
	// layout) or a dataset CSV.
	Dataset string
	// Samples is how many images calibrate the ranges (default 500), drawn
	// at random with Seed; CheckImages more (default 32), when the dataset
	// has them, compare int8 with float32 features afterwards.
	Samples     int
	CheckImages int
	Seed        uint64
	// Method is quantize.MinMax or quantize.Percentile (the default, which
	// kept more accuracy in scripts/bench_int8.sh); Percentile is its
	// percentile (quantize.DefaultPercentile when 0).
	Method     string
	Percentile float64
	// Float names layers (nodes or their output tensors) to keep float32.
	Float []string
	// MinCosine, when positive, is the mean feature cosine similarity
	// (int8 against float32, on the check images) to reach: below it, the
	// layers whose float32 version raises it most (Sensitivity) are tried
	// float one at a time, best first, at most MaxFloat (default 8) tries;
	// each stays float only if the similarity rises.
	MinCosine float64
	MaxFloat  int
	// QuantizeDense also quantizes the dense layers before the features
	// (they then can no longer be fine-tuned with --tune-layers).
	QuantizeDense bool
	// NoRewrite turns off the exact graph rewrites made before quantizing
	// (quantize.Options.NoPoolSwap: average pools moved after the 1x1
	// Conv they feed), to compare the int8 model with and without them.
	NoRewrite bool
	// Replace overwrites an installed model named Name.
	Replace bool
	// Threads bounds the cores used (0: all).
	Threads int
	// Progress, when set, is called after each calibration or check image
	// (done of total), from one goroutine.
	Progress func(stage string, done, total int)
}

// QuantizeResult reports a finished quantization.
type QuantizeResult struct {
	Installed   models.Installed   `json:"installed"`
	Calibration models.Calibration `json:"calibration"`
	Report      *quantize.Report   `json:"report"`
	Skipped     []SkipRecord       `json:"skipped,omitempty"` // images that could not be decoded
	// Sensitivity ranks the quantized layers by how much keeping each one
	// alone float32 raises the feature cosine (only when MinCosine was
	// not reached at first).
	Sensitivity []LayerSensitivity        `json:"sensitivity,omitempty"`
	Seconds     float64                   `json:"seconds"`
	Ranges      map[string]quantize.Range `json:"-"`
}

// DefaultCalibrationSamples is QuantizeOptions.Samples' default.
const DefaultCalibrationSamples = 500

// SlowInt8Speedup is the measured int8 speed-up (models.SpeedCheck) below
// which `models quantize` tells the user that int8 buys little on their
// CPU: under 1.5x the features' small loss of precision is bought with
// little time (MobileNetV2 measured 1.75x, face-expression 1.3x; README
// "int8 backbones against float32").
const SlowInt8Speedup = 1.5

// Quantize makes a static int8 copy of an installed backbone: it calibrates
// activation ranges on the dataset's images (with the model's own
// preprocessing), rewrites the graph with quantize.Plan, checks the int8
// features against the float32 ones on images not used for calibration,
// and installs the result as a new model derived from the source. The new
// model has its own content hash, so its features never share cache rows
// with the float model's.
func Quantize(ctx context.Context, opt QuantizeOptions) (*QuantizeResult, error) {
	start := time.Now()
	if opt.Store == nil {
		return nil, fmt.Errorf("quantize: no model store")
	}
	if opt.Name == "" {
		opt.Name = opt.Model + "-int8"
	}
	if err := models.ValidateName(opt.Name); err != nil {
		return nil, err
	}
	if opt.Name == opt.Model {
		return nil, fmt.Errorf("quantize %s: the int8 model needs a name of its own (--name)", opt.Model)
	}
	if !opt.Replace {
		if _, err := opt.Store.Get(opt.Name); err == nil {
			return nil, fmt.Errorf("quantize %s: a model named %s is already installed; remove it or choose another --name", opt.Model, opt.Name)
		}
	}
	if opt.Samples <= 0 {
		opt.Samples = DefaultCalibrationSamples
	}
	if opt.MaxFloat <= 0 {
		opt.MaxFloat = 8
	}
	if opt.CheckImages <= 0 {
		opt.CheckImages = 32
	}
	if opt.Method == "" {
		opt.Method = quantize.Percentile
	}
	if opt.Method == quantize.Percentile && opt.Percentile == 0 {
		opt.Percentile = quantize.DefaultPercentile
	}
	if opt.Method == quantize.MinMax {
		opt.Percentile = 0
	}
	if opt.Method != quantize.MinMax && opt.Method != quantize.Percentile {
		return nil, fmt.Errorf("quantize: unknown calibration method %q (want %s or %s)", opt.Method, quantize.MinMax, quantize.Percentile)
	}
	src, err := opt.Store.Get(opt.Model)
	if err != nil {
		return nil, err
	}
	if src.Meta.Derived != nil && src.Meta.Derived.Kind == "int8" {
		return nil, fmt.Errorf("quantize %s: it is already int8 (made from %s); quantize %s instead", opt.Model, src.Meta.Derived.From, src.Meta.Derived.From)
	}
	bb, err := OpenBackbone(opt.Model, BackboneOptions{Store: opt.Store, NoSession: true})
	if err != nil {
		return nil, err
	}
	plan, err := quantize.Prepare(bb.Full, bb.Choice.Tensor, quantize.Options{
		Float: opt.Float, QuantizeDense: opt.QuantizeDense, InputShape: bb.Spec.InputShape(), NoPoolSwap: opt.NoRewrite,
	})
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", opt.Model, err)
	}
	paths, err := calibrationImages(opt.Dataset)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("quantize: %s holds no images", opt.Dataset)
	}
	// A seeded shuffle picks the calibration images and, after them, the
	// check images, so the two never overlap when the dataset is large
	// enough; the order is part of the determinism (Stats samples values
	// image by image).
	r := rand.New(rand.NewPCG(opt.Seed, 0x5eed))
	r.Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
	nCal := min(opt.Samples, len(paths))
	calib := paths[:nCal]
	check := paths[nCal:min(len(paths), nCal+opt.CheckImages)]
	if len(check) == 0 {
		check = calib[:min(len(calib), opt.CheckImages)]
	}
	if _, err := ort.Init(""); err != nil {
		return nil, err
	}
	res := &QuantizeResult{}
	onFail := func(f Failure) {
		res.Skipped = append(res.Skipped, SkipRecord{Path: f.Path, Reason: f.Err.Error()})
	}
	fixed := 0
	if in, err := imageInput(bb.Full); err == nil && in.Batch > 0 {
		fixed = in.Batch
	}
	inferers, sessOpt := PipelineThreads(ort.SessionOptions{Threads: opt.Threads})

	// Calibration.
	calModel, err := backbone.MarshalModel(plan.CalibrationModel())
	if err != nil {
		return nil, err
	}
	sess, err := ort.NewSession(calModel, ort.SessionSpec{
		Input: plan.Input, InputShape: bb.Spec.InputShape(), Outputs: plan.CalibrationOutputs(), OutputSizes: plan.Sizes, FixedBatch: fixed,
	}, sessOpt)
	calModel = nil
	if err != nil {
		return nil, fmt.Errorf("quantize %s: calibration model: %w", opt.Model, err)
	}
	stats := quantize.NewStats(plan, nCal, opt.Seed, 0)
	runner := &Runner{Session: sess, Spec: bb.Spec, BatchSize: 1, Inferers: inferers, OnFail: onFail}
	done := 0
	err = runner.Run(ctx, calib, func(b *Batch) error {
		if err := stats.Add(b.Outputs, b.N); err != nil {
			return err
		}
		done += b.N
		if opt.Progress != nil {
			opt.Progress("calibrate", done+len(res.Skipped), len(calib))
		}
		return nil
	})
	sess.Close()
	if err != nil {
		return nil, fmt.Errorf("quantize %s: calibration: %w", opt.Model, err)
	}
	if stats.Images() == 0 {
		return nil, fmt.Errorf("quantize %s: none of the %d calibration images could be read", opt.Model, len(calib))
	}
	ranges, err := stats.Ranges(opt.Method, opt.Percentile)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", opt.Model, err)
	}
	res.Ranges = ranges

	// Check: int8 against float32 features on the check images, and, while
	// they are below MinCosine, keep the most sensitive layers float.
	chk := &checker{bb: bb, paths: check, inferers: inferers, sessOpt: sessOpt, fixed: fixed, progress: opt.Progress}
	if err := chk.reference(ctx); err != nil {
		return nil, fmt.Errorf("quantize %s: check: %w", opt.Model, err)
	}
	qopt := quantize.Options{Float: opt.Float, QuantizeDense: opt.QuantizeDense, InputShape: bb.Spec.InputShape(), NoPoolSwap: opt.NoRewrite}
	q, rep, mean, worst, err := chk.build(ctx, bb.Full, qopt, ranges)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", opt.Model, err)
	}
	if opt.MinCosine > 0 && mean < opt.MinCosine {
		sens, err := chk.sensitivity(ctx, qopt, plan.Nodes, ranges, mean)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: sensitivity: %w", opt.Model, err)
		}
		res.Sensitivity = sens
		// Greedy: a layer stays float only when the model with it float
		// beats the best so far (gains measured one layer at a time do
		// not simply add up).
		tried := 0
		for _, l := range sens {
			if mean >= opt.MinCosine || tried >= opt.MaxFloat || l.Gain <= 0 {
				break
			}
			tried++
			try := qopt
			try.Float = append(append([]string(nil), qopt.Float...), l.Node)
			q2, rep2, mean2, worst2, err := chk.build(ctx, bb.Full, try, ranges)
			if err != nil {
				return nil, fmt.Errorf("quantize %s: %w", opt.Model, err)
			}
			if mean2 > mean {
				qopt, q, rep, mean, worst = try, q2, rep2, mean2, worst2
			}
		}
		opt.Float = qopt.Float
	}
	res.Report = rep
	n := chk.n
	speed, err := chk.speed(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: speed check: %w", opt.Model, err)
	}

	data, err := backbone.MarshalModel(q)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opt.Dataset)
	if err != nil {
		abs = opt.Dataset
	}
	res.Calibration = models.Calibration{
		Dataset: abs, Images: stats.Images(), Seed: opt.Seed, Method: opt.Method, Percentile: opt.Percentile,
		Float: opt.Float, QuantizedNodes: rep.Nodes, LeftFloat: len(rep.Left),
		PoolConvSwaps: rep.PoolConvSwaps, NoRewrite: opt.NoRewrite,
		FeatureCosine: mean, MinFeatureCosine: worst, CheckImages: n, Speed: speed,
	}
	meta := src.Meta
	meta.Name = opt.Name
	meta.Provenance = fmt.Sprintf("int8 of %s (sha256 %s)", opt.Model, src.Meta.SHA256)
	meta.Description = strings.TrimSpace("int8 (static, calibrated on " + filepath.Base(abs) + ") of " + opt.Model + ". " + src.Meta.Description)
	meta.InstalledAt = time.Time{}
	meta.Derived = &models.Derivation{From: opt.Model, FromSHA256: src.Meta.SHA256, Kind: "int8", Calibration: &res.Calibration}
	inst, err := opt.Store.InstallDerived(ctx, meta, data, opt.Replace)
	if err != nil {
		return nil, err
	}
	res.Installed = inst
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// calibrationImages lists the images of a folder (recursively) or of a
// dataset CSV.
func calibrationImages(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("calibration images: %w", err)
	}
	if !st.IsDir() && strings.EqualFold(filepath.Ext(path), ".csv") {
		ds, err := imaging.OpenDataset(path)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(ds.Samples))
		for i, s := range ds.Samples {
			out[i] = s.Path
		}
		return out, nil
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("calibration images: %s is neither a folder nor a dataset CSV", path)
	}
	return ExpandInputs([]string{path})
}

// LayerSensitivity is what keeping one layer float32 does to the int8
// model's features.
type LayerSensitivity struct {
	Node   string  `json:"node"`
	Op     string  `json:"op"`
	Cosine float64 `json:"cosine"` // mean feature cosine with this layer float
	Gain   float64 `json:"gain"`   // Cosine minus the all-int8 model's
}

// checker compares candidate int8 models with the float model's features
// on a fixed set of images.
type checker struct {
	bb       *Backbone
	paths    []string
	inferers int
	sessOpt  ort.SessionOptions
	fixed    int
	progress func(string, int, int)
	want     map[int][]float32 // float features by path index
	n        int               // images compared in the latest check
}

// features runs a cut model over the check images.
func (c *checker) features(ctx context.Context, cut *onnxpb.ModelProto) (map[int][]float32, error) {
	data, err := backbone.MarshalModel(cut)
	if err != nil {
		return nil, err
	}
	dim := c.bb.Dim
	sess, err := ort.NewSession(data, ort.SessionSpec{
		Input: c.bb.InputName, InputShape: c.bb.Spec.InputShape(), Outputs: []string{backbone.FeatureOutput}, OutputSizes: []int{dim}, FixedBatch: c.fixed,
	}, c.sessOpt)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	got := map[int][]float32{}
	r := &Runner{Session: sess, Spec: c.bb.Spec, BatchSize: 1, Inferers: c.inferers, OnFail: func(Failure) {}}
	err = r.Run(ctx, c.paths, func(b *Batch) error {
		for i, idx := range b.Index {
			got[idx] = append([]float32(nil), b.Outputs[0][i*dim:(i+1)*dim]...)
		}
		if c.progress != nil {
			c.progress("check", len(got), len(c.paths))
		}
		return nil
	})
	return got, err
}

// reference computes the float model's features.
func (c *checker) reference(ctx context.Context) error {
	var err error
	c.want, err = c.features(ctx, c.bb.Cut)
	if err == nil && len(c.want) == 0 {
		err = fmt.Errorf("none of the %d check images could be read", len(c.paths))
	}
	return err
}

// build quantizes full with opt and ranges and returns the model, its
// report and the mean and worst feature cosine against the float model.
func (c *checker) build(ctx context.Context, full *onnxpb.ModelProto, opt quantize.Options, ranges map[string]quantize.Range) (*onnxpb.ModelProto, *quantize.Report, float64, float64, error) {
	plan, err := quantize.Prepare(full, c.bb.Choice.Tensor, opt)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	q, rep, err := plan.Quantize(ranges)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	cut, err := backbone.CutAtFeature(q, c.bb.Choice)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	got, err := c.features(ctx, cut)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	mean, worst := 0.0, 1.0
	c.n = 0
	for idx, a := range c.want {
		b, ok := got[idx]
		if !ok {
			continue
		}
		cs := Cosine(a, b)
		mean += cs
		worst = min(worst, cs)
		c.n++
	}
	if c.n == 0 {
		return nil, nil, 0, 0, fmt.Errorf("no check image ran through the int8 model")
	}
	return q, rep, mean / float64(c.n), worst, nil
}

// speedRounds is how many times speed runs each check image through each
// model; the first pass over a session's first images is not timed.
const speedRounds = 3

// speed times the float32 cut and the int8 model q on the check images:
// batch 1, one thread each (ONNX Runtime's int8 and float kernels compared
// core for core, as the pipeline runs them), the two models alternating
// image by image and which one goes first alternating too, so load that
// comes and goes on the machine falls on both alike.
func (c *checker) speed(ctx context.Context, q *onnxpb.ModelProto) (*models.SpeedCheck, error) {
	cut, err := backbone.CutAtFeature(q, c.bb.Choice)
	if err != nil {
		return nil, err
	}
	spec := c.bb.Spec
	inLen := spec.TensorLen()
	var tensors [][]float32
	var sc imaging.Scratch
	for _, p := range c.paths {
		x := make([]float32, inLen)
		if err := spec.Load(p, x, &sc); err != nil {
			continue // unreadable: the check above already skipped it
		}
		tensors = append(tensors, x)
	}
	if len(tensors) == 0 {
		return nil, fmt.Errorf("none of the %d check images could be read", len(c.paths))
	}
	var sess [2]*ort.Session
	for k, m := range []*onnxpb.ModelProto{c.bb.Cut, cut} {
		data, err := backbone.MarshalModel(m)
		if err != nil {
			return nil, err
		}
		sess[k], err = ort.NewSession(data, ort.SessionSpec{
			Input: c.bb.InputName, InputShape: spec.InputShape(), Outputs: []string{backbone.FeatureOutput}, OutputSizes: []int{c.bb.Dim}, FixedBatch: c.fixed,
		}, ort.SessionOptions{Threads: 1})
		if err != nil {
			return nil, err
		}
		defer sess[k].Close()
	}
	out := make([]float32, c.bb.Dim)
	var ratios []float64
	var ms [2][]float64
	for round := 0; round <= speedRounds; round++ {
		for i, x := range tensors {
			var d [2]time.Duration
			for j := 0; j < 2; j++ {
				k := (i + j + round) % 2
				t := time.Now()
				if err := sess[k].Run(ctx, x, 1, out); err != nil {
					return nil, err
				}
				d[k] = time.Since(t)
			}
			if round == 0 {
				continue // warm-up: first runs allocate and fill caches
			}
			ratios = append(ratios, d[0].Seconds()/d[1].Seconds())
			ms[0] = append(ms[0], d[0].Seconds()*1e3)
			ms[1] = append(ms[1], d[1].Seconds()*1e3)
		}
		if c.progress != nil {
			c.progress("speed", round, speedRounds)
		}
	}
	return &models.SpeedCheck{Speedup: median(ratios), FloatMillis: median(ms[0]), Int8Millis: median(ms[1]),
		Runs: len(ratios), Threads: 1, ORT: ort.Version()}, nil
}

// median of v (reordered); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// sensitivity keeps each quantized Conv/Gemm/MatMul/Add/Concat float in
// turn (with the same ranges) and ranks them by the feature cosine gained.
func (c *checker) sensitivity(ctx context.Context, base quantize.Options, nodes []string, ranges map[string]quantize.Range, baseCos float64) ([]LayerSensitivity, error) {
	ops := map[string]string{}
	for _, n := range c.bb.Full.Graph.Node {
		name := n.GetName()
		if name == "" && len(n.Output) > 0 {
			name = n.Output[0]
		}
		ops[name] = n.GetOpType()
	}
	var out []LayerSensitivity
	for _, node := range nodes {
		switch ops[node] {
		case "Conv", "Gemm", "MatMul", "Add", "Concat", "AveragePool", "GlobalAveragePool":
		default:
			continue // same-scale ops add no rounding of their own
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opt := base
		opt.Float = append(append([]string(nil), base.Float...), node)
		_, _, mean, _, err := c.build(ctx, c.bb.Full, opt, ranges)
		if err != nil {
			continue // this split needs a range calibration did not take
		}
		out = append(out, LayerSensitivity{Node: node, Op: ops[node], Cosine: mean, Gain: mean - baseCos})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Gain > out[j].Gain })
	return out, nil
}

// Cosine is the cosine similarity of two feature vectors (1 when both are
// zero).
func Cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 && bb == 0 {
		return 1
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}
