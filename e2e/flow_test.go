package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// predRow is one line of `predict --out F.jsonl`.
type predRow struct {
	Path  string `json:"path"`
	Class string `json:"class"`
	TopK  []struct {
		Class       string  `json:"class"`
		Probability float32 `json:"probability"`
	} `json:"top_k"`
	Error     string    `json:"error"`
	Embedding []float32 `json:"embedding"`
}

// readPredictions parses a JSON Lines predictions file, in order.
func readPredictions(t *testing.T, path string) []predRow {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []predRow
	for i, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var r predRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// probs maps class -> probability of a row with every class in its top k.
func (r predRow) probs() map[string]float32 {
	m := map[string]float32{}
	for _, k := range r.TopK {
		m[k.Class] = k.Probability
	}
	return m
}

// maxProbDiff returns the largest |probability difference| between the
// rows predict --head wrote and the export's, row by row (both in the same
// order, with every class in each top k), failing t at a row whose path
// differs. The caller checks that there are as many rows of each.
func maxProbDiff(t *testing.T, head, export []predRow) float64 {
	t.Helper()
	worst := 0.0
	for i, e := range export {
		h := head[i]
		if e.Path != h.Path {
			t.Fatalf("row %d: %s vs %s", i, e.Path, h.Path)
		}
		hp, ep := h.probs(), e.probs()
		for cl, p := range hp {
			worst = max(worst, math.Abs(float64(p)-float64(ep[cl])))
		}
	}
	return worst
}

// labelOf is the class folder of a dataset path.
func labelOf(p string) string { return filepath.Base(filepath.Dir(p)) }

// TestEndToEnd is issue 5's test: extract, train, predict, export, and
// predict with the export on a generated dataset, checking accuracy and that
// the export and `predict --head` agree to 1e-5.
func TestEndToEnd(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	// 3 classes x 40 images; 8 per class in test/ (24 images, three
	// batches of 8). 15% of the images show another class's pattern, so
	// probabilities stay inside (0, 1).
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 40, Splits: true, Seed: 11, LabelNoise: 0.15})
	model := writeModel(t, c.dir, "mobilenet", 32)
	sum := parseExtract(t, c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet"))
	if sum.Computed != 120 || len(sum.Skips) != 0 {
		t.Fatalf("extract: %+v", sum)
	}
	headFile := filepath.Join(c.dir, "h.head")
	var tr struct {
		Test struct {
			Accuracy float64 `json:"accuracy"`
		} `json:"test"`
		TestRows int `json:"test_rows"`
	}
	if err := json.Unmarshal([]byte(c.ok("train", "--head", headFile, "--json", "--seed", "3").stdout), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.TestRows != 24 {
		t.Errorf("train used %d test rows, want the 24 images of test/", tr.TestRows)
	}
	// 15% of the labels are noise: a head that learnt the patterns scores
	// about 0.85; chance is 0.33.
	if tr.Test.Accuracy < 0.6 {
		t.Errorf("test accuracy %.3f after training, want >= 0.6", tr.Test.Accuracy)
	}

	testDir := filepath.Join(ds, "test")
	outHead := filepath.Join(c.dir, "head.jsonl")
	c.ok("predict", "--head", headFile, testDir, "--out", outHead, "--top", "3", "--batch", "8", "--embeddings", "--quiet")
	headRows := readPredictions(t, outHead)
	if len(headRows) != 24 {
		t.Fatalf("predict --head wrote %d rows, want 24", len(headRows))
	}
	correct, unsure := 0, 0
	cached, _ := cachedFeatures(t, sum.View)
	for _, r := range headRows {
		if r.Error != "" || len(r.TopK) != 3 {
			t.Fatalf("predict --head row %+v", r)
		}
		if r.Class == labelOf(r.Path) {
			correct++
		}
		if r.TopK[0].Probability < 0.99 {
			unsure++
		}
		var sum float64
		for _, k := range r.TopK {
			sum += float64(k.Probability)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("%s: probabilities sum to %.7f", r.Path, sum)
		}
		rel, _ := filepath.Rel(ds, r.Path)
		if d, _ := maxAbsDiff(r.Embedding, cached[rel]); d > 1e-5 {
			t.Errorf("%s: --embeddings differs from the cached features by %.3g", r.Path, d)
		}
	}
	acc := float64(correct) / float64(len(headRows))
	t.Logf("predict --head accuracy on test/: %.3f (train reported %.3f); %d of 24 rows with top probability < 0.99", acc, tr.Test.Accuracy, unsure)
	if math.Abs(acc-tr.Test.Accuracy) > 1.5/24 {
		t.Errorf("predict accuracy %.3f differs from train's test accuracy %.3f on the same images", acc, tr.Test.Accuracy)
	}

	for _, variant := range []struct {
		name  string
		flags []string
		tol   float64
	}{
		{"plain", nil, 1e-5}, {"with-preprocessing", []string{"--with-preprocessing"}, 1e-5}, {"with-features", []string{"--with-features"}, 1e-5},
		// Half-precision weights move probabilities (README: --fp16).
		{"fp16", []string{"--fp16"}, 2e-2},
	} {
		t.Run("export-"+variant.name, func(t *testing.T) {
			onnx := filepath.Join(c.dir, variant.name+".onnx")
			r := c.ok(append([]string{"export", "--head", headFile, "-o", onnx}, variant.flags...)...)
			// An export says which consumer cannot run it: only --fp16
			// has one (OpenCV 4.6).
			if noted := strings.Contains(r.stderr, "note: OpenCV DNN 4.6 cannot read"); noted != (variant.name == "fp16") {
				t.Errorf("export %s: OpenCV note printed %v; stderr:\n%s", variant.name, noted, r.stderr)
			}
			out := filepath.Join(c.dir, variant.name+".jsonl")
			c.ok("predict", "--model", onnx, testDir, "--out", out, "--top", "3", "--batch", "8", "--quiet")
			rows := readPredictions(t, out)
			if len(rows) != len(headRows) {
				t.Fatalf("predict --model wrote %d rows, predict --head %d", len(rows), len(headRows))
			}
			worst := maxProbDiff(t, headRows, rows)
			t.Logf("export %s vs predict --head: max |probability diff| %.3g", variant.name, worst)
			if worst > variant.tol {
				t.Errorf("export %s and predict --head disagree by %.3g > %g", variant.name, worst, variant.tol)
			}
		})
	}
}

// TestPredictPartialBatch: predict --head on a number of images that is not
// a multiple of --batch.
func TestPredictPartialBatch(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 10, Seed: 2})
	model := writeModel(t, c.dir, "resnet", 32)
	c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--quiet")
	headFile := filepath.Join(c.dir, "h.head")
	c.ok("train", "--head", headFile, "--quiet")
	out := filepath.Join(c.dir, "p.jsonl")
	r := c.run("predict", "--head", headFile, ds, "--out", out, "--batch", "8", "--quiet")
	if r.code != 0 {
		t.Fatalf("predict --head on 20 images with --batch 8 (BUGS.md #1): %v", r)
	}
	if rows := readPredictions(t, out); len(rows) != 20 {
		t.Errorf("predict --head wrote %d rows for 20 images", len(rows))
	}
}

// TestRelativeModelPath: a head trained on a backbone named by a relative
// path works from any folder.
func TestRelativeModelPath(t *testing.T) {
	c := newCLI(t)
	writeDataset(t, filepath.Join(c.dir, "ds"), DatasetOptions{Classes: 2, PerClass: 8, Seed: 4})
	writeModel(t, c.dir, "resnet", 32)
	c.ok("extract", "ds", "--model", "resnet.onnx", "--preset", "imagenet", "--quiet")
	c.ok("train", "--head", "h.head", "--quiet")
	other := *c
	other.dir = filepath.Join(c.dir, "elsewhere")
	os.MkdirAll(other.dir, 0o755)
	r := other.run("predict", "--head", "../h.head", "../ds/red", "--batch", "1", "--quiet")
	if r.code != 0 {
		t.Fatalf("BUGS.md #2 (a head must name its backbone by absolute path): %v", r)
	}
}

// TestTrainJSONQuiet: --json and --quiet together print the summary.
func TestTrainJSONQuiet(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 20, Splits: true, Seed: 11, LabelNoise: 0.15})
	model := writeModel(t, c.dir, "mobilenet", 32)
	c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--quiet")
	r := c.run("train", "--head", filepath.Join(c.dir, "h.head"), "--json", "--quiet")
	if r.code != 0 {
		t.Fatalf("BUGS.md #3 (train --json --quiet must print its summary): %v", r)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("train --json --quiet output is not JSON: %v: %q", err, r.stdout)
	}
}

// evalAccuracy runs eval --json and returns its accuracy and image count.
func evalAccuracy(t *testing.T, c *cli, args ...string) (float64, int) {
	t.Helper()
	var ev struct {
		Eval struct {
			N        int     `json:"n"`
			Accuracy float64 `json:"accuracy"`
		} `json:"eval"`
	}
	r := c.ok(append([]string{"eval", "--json", "--quiet"}, args...)...)
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil {
		t.Fatalf("eval --json: %v: %q", err, r.stdout)
	}
	return ev.Eval.Accuracy, ev.Eval.N
}

// TestEvalAgreesAndKeepsLastExtract: eval on the cached test split, eval on
// the test folder (features recomputed) and predict agree; and evaluating
// another dataset does not change what a later `train` trains on.
func TestEvalAgreesAndKeepsLastExtract(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 20, Splits: true, Seed: 21, LabelNoise: 0.2})
	model := writeModel(t, c.dir, "mobilenet", 32)
	c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--quiet")
	headFile := filepath.Join(c.dir, "h.head")
	var tr struct {
		TrainRows int `json:"train_rows"`
		Test      struct {
			Accuracy float64 `json:"accuracy"`
		} `json:"test"`
	}
	if err := json.Unmarshal([]byte(c.ok("train", "--head", headFile, "--json").stdout), &tr); err != nil {
		t.Fatal(err)
	}
	cachedAcc, cachedN := evalAccuracy(t, c, "--head", headFile, "--split", "test")
	folderAcc, folderN := evalAccuracy(t, c, filepath.Join(ds, "test"), "--head", headFile)
	t.Logf("test accuracy: train %.4f, eval (cache) %.4f on %d, eval (folder) %.4f on %d", tr.Test.Accuracy, cachedAcc, cachedN, folderAcc, folderN)
	if cachedN != 12 || folderN != 12 {
		t.Errorf("eval counted %d (cache) and %d (folder) test images, want 12", cachedN, folderN)
	}
	if cachedAcc != tr.Test.Accuracy || folderAcc != tr.Test.Accuracy {
		t.Errorf("test accuracy: train %.4f, eval on the cache %.4f, eval on the folder %.4f", tr.Test.Accuracy, cachedAcc, folderAcc)
	}
	// The eval of a folder above must not have made it the dataset train
	// uses next.
	var again struct {
		TrainRows int `json:"train_rows"`
	}
	if err := json.Unmarshal([]byte(c.ok("train", "--head", filepath.Join(c.dir, "h2.head"), "--json").stdout), &again); err != nil {
		t.Fatal(err)
	}
	if again.TrainRows != tr.TrainRows {
		t.Errorf("BUGS.md #8: after `eval DATASET`, train trains on that dataset (%d train rows instead of %d)", again.TrainRows, tr.TrainRows)
	}
}

// TestManifestAndOddRoot: a CSV manifest with a split column, in a folder
// whose name has spaces and non-ASCII letters, goes through extract, train
// (using the manifest's splits), predict with --threshold, and export.
func TestManifestAndOddRoot(t *testing.T) {
	c := newCLI(t)
	root := filepath.Join(c.dir, "my data ünï")
	paths := writeDataset(t, filepath.Join(root, "imgs"), DatasetOptions{Classes: 2, PerClass: 10, Seed: 13, LabelNoise: 0.2})
	var b strings.Builder
	b.WriteString("path,label,split\n")
	for i, p := range paths {
		rel, _ := filepath.Rel(root, p)
		split := []string{"train", "train", "train", "val", "test"}[i%5]
		b.WriteString(rel + "," + labelOf(p) + "," + split + "\n")
	}
	manifest := filepath.Join(root, "labels.csv")
	if err := os.WriteFile(manifest, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	model := writeModel(t, c.dir, "resnet", 32)
	sum := parseExtract(t, c.ok("extract", manifest, "--model", model, "--preset", "imagenet", "--json", "--quiet"))
	if sum.Computed != len(paths) {
		t.Fatalf("extract of the manifest: %+v", sum)
	}
	var tr struct {
		TrainRows int `json:"train_rows"`
		ValRows   int `json:"val_rows"`
		TestRows  int `json:"test_rows"`
	}
	headFile := filepath.Join(root, "h.head")
	if err := json.Unmarshal([]byte(c.ok("train", "--head", headFile, "--json", "--quiet").stdout), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.TrainRows != 12 || tr.ValRows != 4 || tr.TestRows != 4 {
		t.Errorf("train used %d/%d/%d rows, want the manifest's 12/4/4", tr.TrainRows, tr.ValRows, tr.TestRows)
	}
	// Threshold at the median top probability, so both answers occur.
	plain := filepath.Join(root, "plain.jsonl")
	c.ok("predict", "--head", headFile, filepath.Join(root, "imgs"), "--out", plain, "--top", "2", "--quiet")
	var tops []float64
	for _, r := range readPredictions(t, plain) {
		tops = append(tops, float64(r.TopK[0].Probability))
	}
	sort.Float64s(tops)
	thr := tops[len(tops)/2]
	out := filepath.Join(root, "p.jsonl")
	c.ok("predict", "--head", headFile, filepath.Join(root, "imgs"), "--out", out, "--threshold", strconv.FormatFloat(thr, 'g', -1, 64), "--top", "2", "--quiet")
	unknown := 0
	for _, r := range readPredictions(t, out) {
		if top := r.TopK[0].Probability; (top < float32(thr)) != (r.Class == "unknown") {
			t.Errorf("%s: class %q with top probability %v and --threshold %v", r.Path, r.Class, top, thr)
		}
		if r.Class == "unknown" {
			unknown++
		}
	}
	t.Logf("--threshold %.4f: %d of %d answered unknown", thr, unknown, len(paths))
	if unknown == 0 || unknown == len(paths) {
		t.Errorf("--threshold at the median top probability: %d of %d unknown", unknown, len(paths))
	}
	c.ok("export", "--head", headFile, "-o", filepath.Join(root, "m ü.onnx"))
}
