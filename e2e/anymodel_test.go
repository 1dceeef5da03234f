package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testmodels"
)

// TestAnyModel is issue 15's end-to-end test: models that users download
// and that are not plain float32 classifiers (half precision with a fixed
// batch of 1, int8 QDQ and QLinear, a 3x3-conv classifier on grey input,
// two outputs, a Keras reshaped tail) go through inspect, models add,
// inspect NAME, extract, train, export and predict, and the export agrees
// with predict --head to 1e-5. eval --original runs each model's own
// classifier with the class names from --classes or its metadata.
func TestAnyModel(t *testing.T) {
	for _, kind := range testmodels.UnusualKinds {
		t.Run(kind, func(t *testing.T) {
			c := newCLI(t)
			e := testmodels.ExpectFor(kind, 16)
			ds := filepath.Join(c.dir, "ds")
			writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 12, Splits: true, Seed: 5, LabelNoise: 0.1})
			file := writeModel(t, c.dir, kind, 16)

			inspect := func(ref string) {
				t.Helper()
				var insp struct {
					Feature *struct {
						Tensor string `json:"tensor"`
						Dim    int    `json:"dim"`
					} `json:"feature"`
					FeatureError string `json:"feature_error"`
				}
				if err := json.Unmarshal([]byte(c.ok("inspect", ref, "--json").stdout), &insp); err != nil {
					t.Fatal(err)
				}
				if f := insp.Feature; f == nil || f.Tensor != e.FeatureTensor || f.Dim != e.FeatureDim {
					t.Fatalf("inspect %s: feature %+v (%s), want %s %d-d", ref, f, insp.FeatureError, e.FeatureTensor, e.FeatureDim)
				}
			}
			inspect(file)

			// Class names: the model's metadata, else a file naming the
			// dataset's classes among the model's own.
			addArgs := []string{"models", "add", file, "--name", "mine", "--preset", "imagenet"}
			names := e.ClassNames
			if names == nil {
				names = make([]string, e.Classes)
				for i := range names {
					names[i] = "other" + string(rune('a'+i))
				}
				copy(names, ClassNames[:3])
				cf := filepath.Join(c.dir, "classes.txt")
				if err := os.WriteFile(cf, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				addArgs = append(addArgs, "--classes", cf)
			}
			added := c.ok(addArgs...).stderr
			if want := "feature tensor " + e.FeatureTensor + ", "; !strings.Contains(added, want) {
				t.Errorf("models add printed %q, want it to name %q", added, want)
			}
			inspect("mine")

			sum := parseExtract(t, c.ok("extract", ds, "--model", "mine", "--json", "--quiet"))
			if sum.Computed != 36 || len(sum.Skips) != 0 {
				t.Fatalf("extract: %+v", sum)
			}
			cached, _ := cachedFeatures(t, sum.View)
			spread := 0.0
			var first []float32
			for _, f := range cached {
				if len(f) != e.FeatureDim {
					t.Fatalf("cached features of width %d, want %d", len(f), e.FeatureDim)
				}
				if first == nil {
					first = f
				}
				d, _ := maxAbsDiff(f, first)
				spread = max(spread, d)
			}
			if spread == 0 {
				t.Fatal("every image has the same features")
			}
			head := filepath.Join(c.dir, "h.head")
			// A strongly regularised head keeps the probabilities away from 0
			// and 1, where a disagreement would not show.
			c.ok("train", "--head", head, "--seed", "3", "--C", "0.001", "--quiet")
			testDir := filepath.Join(ds, "test")
			byHead := filepath.Join(c.dir, "head.jsonl")
			c.ok("predict", "--head", head, testDir, "--out", byHead, "--top", "3", "--quiet")
			onnx := filepath.Join(c.dir, "x.onnx")
			c.ok("export", "--head", head, "-o", onnx)
			byExport := filepath.Join(c.dir, "export.jsonl")
			c.ok("predict", "--model", onnx, testDir, "--out", byExport, "--top", "3", "--quiet")
			hr, er := readPredictions(t, byHead), readPredictions(t, byExport)
			if len(hr) == 0 || len(hr) != len(er) {
				t.Fatalf("%d rows by the head, %d by the export", len(hr), len(er))
			}
			worst, unsure := 0.0, 0
			for i := range hr {
				if len(hr[i].TopK) > 0 && hr[i].TopK[0].Probability < 0.999 {
					unsure++
				}
				if hr[i].Path != er[i].Path || hr[i].Error != "" || er[i].Error != "" {
					t.Fatalf("row %d: %+v vs %+v", i, hr[i], er[i])
				}
				ep := er[i].probs()
				for cl, p := range hr[i].probs() {
					worst = max(worst, math.Abs(float64(p)-float64(ep[cl])))
				}
			}
			t.Logf("%s: export vs predict --head: max |probability diff| %.3g over %d images (%d with top probability < 0.999)", kind, worst, len(hr), unsure)
			if unsure == 0 {
				t.Errorf("every top probability is above 0.999: the parity check would not see a difference")
			}
			if worst > 1e-5 {
				t.Errorf("export and predict --head disagree by %.3g > 1e-5", worst)
			}

			// The model's own classifier, where the dataset shares classes
			// with it.
			shared := 0
			for _, n := range names {
				for _, d := range ClassNames[:3] {
					if n == d {
						shared++
					}
				}
			}
			if shared > 0 {
				r := c.ok("eval", testDir, "--original", "--model", "mine", "--json")
				if !strings.Contains(r.stdout, `"accuracy"`) {
					t.Errorf("eval --original printed no accuracy: %s", r.stdout)
				}
			}
		})
	}
}
