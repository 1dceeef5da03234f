package e2e

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// TestInt8EndToEnd is issue 17's flow through the CLI: add a model,
// `models quantize` it on the training images, see it listed as derived,
// extract with it (its features are cached apart from the float model's),
// train, export, and check that the export carries the int8 backbone and
// agrees with `predict --head` to 1e-5.
func TestInt8EndToEnd(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 30, Splits: true, Seed: 5, LabelNoise: 0.15})
	model := writeModel(t, c.dir, "mobilenet", 32)
	c.ok("models", "add", model, "--name", "base", "--preset", "imagenet")
	r := c.ok("models", "quantize", "base", "--calibrate", filepath.Join(ds, "train"), "--samples", "40", "--json", "--quiet")
	var q struct {
		Installed struct {
			Meta struct {
				Name    string `json:"name"`
				Source  string `json:"source"`
				Derived struct {
					From        string `json:"from"`
					Calibration struct {
						Images        int     `json:"images"`
						FeatureCosine float64 `json:"feature_cosine"`
						Speed         *struct {
							Speedup float64 `json:"speedup"`
						} `json:"speed"`
					} `json:"calibration"`
				} `json:"derived"`
			} `json:"meta"`
		} `json:"installed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &q); err != nil {
		t.Fatalf("models quantize --json: %v\n%s", err, r.stdout)
	}
	m := q.Installed.Meta
	if m.Name != "base-int8" || m.Source != "derived" || m.Derived.From != "base" || m.Derived.Calibration.Images != 40 {
		t.Fatalf("quantize result %+v", m)
	}
	// The measured speed-up is the CPU's business; it must be reported.
	if sp := m.Derived.Calibration.Speed; sp == nil || sp.Speedup <= 0 {
		t.Errorf("models quantize --json: no measured speed-up in the calibration: %+v", sp)
	}
	list := c.ok("models", "list").stdout
	if !strings.Contains(list, "int8 of base") {
		t.Errorf("models list does not show base-int8 as derived:\n%s", list)
	}

	fl := parseExtract(t, c.ok("extract", ds, "--model", "base", "--json", "--quiet"))
	q8 := parseExtract(t, c.ok("extract", ds, "--model", "base-int8", "--json", "--quiet"))
	if q8.Computed != 90 || q8.Reused != 0 {
		t.Fatalf("int8 extract reused float features: %+v", q8)
	}
	ff, _ := cachedFeatures(t, fl.View)
	qf, _ := cachedFeatures(t, q8.View)
	cos, n, diff := 0.0, 0, 0.0
	for k, a := range ff {
		b, ok := qf[k]
		if !ok {
			t.Fatalf("%s: in the float view, not in the int8 one", k)
		}
		d, _ := maxAbsDiff(a, b)
		diff = max(diff, d)
		var ab, aa, bb float64
		for i := range a {
			ab += float64(a[i]) * float64(b[i])
			aa += float64(a[i]) * float64(a[i])
			bb += float64(b[i]) * float64(b[i])
		}
		cos += ab / math.Sqrt(aa*bb)
		n++
	}
	if cos /= float64(n); cos < 0.99 {
		t.Errorf("int8 features: mean cosine %.4f to float32 ones", cos)
	}
	if n != 90 || diff == 0 {
		t.Fatalf("%d images compared, largest feature difference %g: int8 features should differ a little", n, diff)
	}

	headFile := filepath.Join(c.dir, "h.head")
	c.ok("train", "--head", headFile, "--seed", "3", "--quiet")
	testDir := filepath.Join(ds, "test")
	outHead := filepath.Join(c.dir, "head.jsonl")
	c.ok("predict", "--head", headFile, testDir, "--out", outHead, "--top", "3", "--quiet")
	headRows := readPredictions(t, outHead)
	onnx := filepath.Join(c.dir, "int8.onnx")
	c.ok("export", "--head", headFile, "-o", onnx)
	insp := c.ok("inspect", onnx).stdout
	if !strings.Contains(insp, "QuantizeLinear") && !strings.Contains(insp, "DequantizeLinear") {
		t.Errorf("the export does not carry the int8 backbone; inspect says:\n%s", insp)
	}
	out := filepath.Join(c.dir, "export.jsonl")
	c.ok("predict", "--model", onnx, testDir, "--out", out, "--top", "3", "--quiet")
	rows := readPredictions(t, out)
	if len(rows) != len(headRows) || len(rows) == 0 {
		t.Fatalf("predict --model wrote %d rows, predict --head %d", len(rows), len(headRows))
	}
	worst := maxProbDiff(t, headRows, rows)
	t.Logf("int8 export vs predict --head: max |probability diff| %.3g; feature cosine to float32 %.6f, largest difference %.3g", worst, cos, diff)
	if worst > 1e-5 {
		t.Errorf("int8 export and predict --head disagree by %.3g > 1e-5", worst)
	}
}
