package e2e

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/head"
)

func convTuned(m *export.Meta) []string {
	if m == nil {
		return nil
	}
	return m.ConvTuned
}

// TestConvTailFlow: extract --tune-layers 1 on a backbone whose features
// are a pooled conv map caches that convolution's input map (a cache
// identity of its own, never the pooled one's rows), train tunes the
// convolution with the head and records it, predict --head runs the tuned
// convolution (its pooled output equals the head's own Go tail on the
// cached maps), eval works on the cached maps, and the export gives
// predict's probabilities to 1e-4.
func TestConvTailFlow(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 12, Seed: 8})
	// features4d: conv1 3->8 3x3 relu, conv2 8->16 3x3 stride 2 relu, the
	// 16x16 map pooled; at 32x32 conv2 reads an 8x32x32 map.
	model := writeModel(t, c.dir, "features4d", 32)
	pooled := parseExtract(t, c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet"))
	sum := parseExtract(t, c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--tune-layers", "1", "--json", "--quiet"))
	if pooled.Dim != 16 || sum.Dim != 8*32*32 {
		t.Fatalf("feature dims: pooled %d (want 16), --tune-layers 1 %d (want the 8x32x32 map, 8192)", pooled.Dim, sum.Dim)
	}
	if sum.Reused != 0 || sum.Computed != 36 || sum.CacheDir == pooled.CacheDir {
		t.Fatalf("the spatial extraction reused %d rows / computed %d in %s (pooled cache %s): the two must not share rows", sum.Reused, sum.Computed, sum.CacheDir, pooled.CacheDir)
	}

	headFile := filepath.Join(c.dir, "conv.head")
	var tr struct {
		Optimizer string   `json:"optimizer"`
		Notes     []string `json:"notes"`
		ValRows   int      `json:"val_rows"`
	}
	r := c.ok("train", "--head", headFile, "--json", "--quiet", "--val", "0.25", "--seed", "3")
	if err := json.Unmarshal([]byte(r.stdout), &tr); err != nil {
		t.Fatalf("train --json: %v\n%s", err, r.stdout)
	}
	if tr.Optimizer != "adam" || !strings.Contains(strings.Join(tr.Notes, "\n"), "conv tail: 1 convolution(s)") {
		t.Errorf("train on a conv tail: optimizer %q, notes %q", tr.Optimizer, tr.Notes)
	}
	m, err := head.Load(headFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ConvTail) != 1 || m.ConvTail[0].InC != 8 || m.ConvTail[0].OutC != 16 || m.ConvTail[0].Stride != 2 || m.Dim() != 16 {
		t.Fatalf("head records %d tuned convolutions (want conv2: 8->16, stride 2), dim %d", len(m.ConvTail), m.Dim())
	}
	if m.Calibration == nil || m.Calibration.Source != head.CalibValidation || m.Calibration.Rows != tr.ValRows || m.Conformal == nil {
		t.Errorf("conv-tail head calibration %+v (want fitted on the %d validation rows), prediction sets %v", m.Calibration, tr.ValRows, m.Conformal != nil)
	}

	out := filepath.Join(c.dir, "head.jsonl")
	c.ok("predict", "--head", headFile, ds, "--out", out, "--top", "3", "--embeddings", "--quiet")
	rows := readPredictions(t, out)
	if len(rows) != 36 {
		t.Fatalf("predict --head wrote %d rows, want 36", len(rows))
	}
	maps, _ := cachedFeatures(t, sum.View)
	worstF := 0.0
	for _, row := range rows {
		rel, _ := filepath.Rel(ds, row.Path)
		mp, ok := maps[rel]
		if !ok || row.Error != "" {
			t.Fatalf("%s: no cached map or error %q", row.Path, row.Error)
		}
		f, err := m.ConvFeatures(mp, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		scale := 0.0
		for _, v := range f {
			scale = max(scale, math.Abs(float64(v)))
		}
		d, _ := maxAbsDiff(row.Embedding, f)
		worstF = max(worstF, d/max(scale, 1e-6))
	}
	t.Logf("predict --head features (tuned weights written into the graph, ONNX Runtime) vs the head's tail in Go on the cached maps: max relative diff %.3g", worstF)
	if worstF > 1e-4 {
		t.Errorf("predict --head features differ from the tuned tail's by %.3g relative", worstF)
	}

	// eval on the cached maps (the tail runs in Go) and on the folder
	// (features through the written-back graph, cached under their own
	// identity) agree.
	var ev struct {
		Eval struct {
			N        int     `json:"n"`
			Accuracy float64 `json:"accuracy"`
		} `json:"eval"`
	}
	evAll := func(args ...string) (int, float64) {
		r := c.ok(append([]string{"eval", "--head", headFile, "--split", "all", "--json", "--quiet"}, args...)...)
		if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
			t.Fatalf("eval --json: %v\n%s", err, r.stdout)
		}
		return ev.Eval.N, ev.Eval.Accuracy
	}
	n1, a1 := evAll()
	n2, a2 := evAll(ds)
	if n1 != 36 || n2 != 36 || a1 != a2 {
		t.Errorf("eval on cached maps: %d images, accuracy %.4f; on the folder: %d, %.4f", n1, a1, n2, a2)
	}

	onnx := filepath.Join(c.dir, "conv.onnx")
	c.ok("export", "--head", headFile, "-o", onnx)
	meta, _, err := export.ReadMetadataFile(onnx)
	if err != nil || len(meta.ConvTuned) != 1 || meta.ConvTuned[0] != m.ConvTail[0].Conv {
		t.Errorf("export metadata names tuned convolutions %v, want [%s] (%v)", convTuned(meta), m.ConvTail[0].Conv, err)
	}
	outE := filepath.Join(c.dir, "export.jsonl")
	c.ok("predict", "--model", onnx, ds, "--out", outE, "--top", "3", "--quiet")
	erows := readPredictions(t, outE)
	if len(erows) != len(rows) {
		t.Fatalf("export predicted %d rows, predict --head %d", len(erows), len(rows))
	}
	worst := maxProbDiff(t, rows, erows)
	t.Logf("export vs predict --head: max |probability diff| %.3g", worst)
	if worst > 1e-4 {
		t.Errorf("export and predict --head disagree by %.3g > 1e-4", worst)
	}
}

// TestConvTailRefusals: --tune-layers larger than the straight conv run,
// or on a map that a residual Add (not a conv chain) produces, is refused
// in one line that says why.
func TestConvTailRefusals(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 2, Seed: 2})
	f4 := writeModel(t, c.dir, "features4d", 16)
	errorLine(t, c.run("extract", ds, "--model", f4, "--preset", "imagenet", "--tune-layers", "3", "--quiet"), "--tune-layers 3", "only 2 convolutions")
	res := writeModel(t, c.dir, "resnet", 16)
	errorLine(t, c.run("extract", ds, "--model", res, "--preset", "imagenet", "--tune-layers", "1", "--quiet"), "--tune-layers 1", "straight chain of convolutions")
}

// TestConvTailSaysAugmentUnused: a conv tail trains on the images' cached
// maps only; augmented views from extract --augment are not silently
// dropped but named in train's notes.
func TestConvTailSaysAugmentUnused(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 6, Seed: 4})
	f4 := writeModel(t, c.dir, "features4d", 16)
	c.ok("extract", ds, "--model", f4, "--preset", "imagenet", "--tune-layers", "1", "--augment", "1", "--quiet")
	r := c.ok("train", "--head", filepath.Join(c.dir, "aug.head"), "--json", "--quiet", "--seed", "3")
	if !strings.Contains(r.stdout, "augmented views per training image from extract --augment are not used") {
		t.Errorf("train after extract --tune-layers 1 --augment 1 does not say the views are unused:\n%s", r.stdout)
	}
}
