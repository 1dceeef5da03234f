package job_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/e2e"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/predictions"
)

// smallWorkspace writes a dataset of classes × perClass generated images
// and a tiny backbone, and extracts it.
func smallWorkspace(t *testing.T, classes, perClass int) *workspace {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime is not available (%v); run `make setup`", err)
	}
	dir := t.TempDir()
	w := &workspace{dir: dir, dataset: filepath.Join(dir, "images"), backbone: filepath.Join(dir, "backbone.onnx")}
	if _, err := e2e.WriteDataset(w.dataset, e2e.DatasetOptions{Classes: classes, PerClass: perClass, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if err := e2e.WriteBackbone(w.backbone, "resnet", 32); err != nil {
		t.Fatal(err)
	}
	w.env = job.Env{CacheDir: filepath.Join(dir, "cache"), ModelsDir: filepath.Join(dir, "models")}
	w.env.Session.Threads = 1
	if _, err := job.Extract(context.Background(), job.ExtractOptions{Env: w.env, Dataset: w.dataset,
		Backbone: job.BackboneOptions{Model: w.backbone, Preset: "imagenet"}}); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestTrainEightImagesExplains is the 8-image case: no split can be
// held out, so train must say why, cross-validate instead, calibrate on the
// out-of-fold predictions, and report no validation or test figure (no NaN,
// no 0 for an empty split).
func TestTrainEightImagesExplains(t *testing.T) {
	w := smallWorkspace(t, 2, 4)
	res, err := job.Train(context.Background(), job.TrainOptions{Env: w.env, Head: filepath.Join(w.dir, "h.head"), Split: job.DefaultSplit})
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{"no test split", "no validation split", "needs at least 5 per class", "out-of-fold"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if res.TrainRows != 8 || res.Val != nil || res.Test != nil || res.CV == nil || res.CV.Folds != 4 {
		t.Fatalf("rows %d, val %v, test %v, cv %+v", res.TrainRows, res.Val, res.Test, res.CV)
	}
	m := res.Model
	if m.Calibration.Source != head.CalibCV || m.Calibration.Rows != 8 || m.Conformal == nil || m.Domain == nil {
		t.Errorf("calibration %+v, conformal %v, domain %v", m.Calibration, m.Conformal, m.Domain)
	}
	for k := range m.Metrics {
		if strings.HasPrefix(k, "val_") || strings.HasPrefix(k, "test_") {
			t.Errorf("metric %s for an empty split", k)
		}
	}
	b, err := json.Marshal(res.Summary())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "NaN") || !strings.Contains(string(b), `"val_loss":null`) {
		t.Errorf("summary %s", b)
	}
}

// TestPredictCoverageAndEval: prediction sets come from the head's
// conformal scores; a coverage the scores cannot support is refused with
// the number of images it needs; eval reports coverage and set size.
func TestPredictCoverageAndEval(t *testing.T) {
	w := smallWorkspace(t, 3, 10)
	ctx := context.Background()
	hp := filepath.Join(w.dir, "h.head")
	res, err := job.Train(ctx, job.TrainOptions{Env: w.env, Head: hp, CV: 5, Split: job.SplitOptions{Test: 0.2, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ValRows != 0 || res.CV == nil || res.CV.Folds != 5 || len(res.Model.Conformal.Scores) != res.TrainRows {
		t.Fatalf("--cv 5: %d val rows, cv %+v, conformal %d of %d rows", res.ValRows, res.CV, len(res.Model.Conformal.Scores), res.TrainRows)
	}
	var rows []predictions.Row
	out := rowsWriter{&rows}
	if _, err := job.Predict(ctx, job.PredictOptions{Env: w.env, Head: hp, Inputs: []string{w.dataset}, Coverage: 0.8, TopK: 2, Out: out}); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 30 {
		t.Fatalf("%d rows", len(rows))
	}
	hit := 0
	for _, r := range rows {
		if len(r.Set) > 0 && r.Set[0] != r.TopK[0].Class || r.Outside != 0 {
			t.Fatalf("row %+v", r)
		}
		truth := filepath.Base(filepath.Dir(r.Path))
		for _, c := range r.Set {
			if c == truth {
				hit++
			}
		}
	}
	if hit < 24 {
		t.Errorf("sets hold the true class in %d of 30 rows at coverage 0.8", hit)
	}
	_, err = job.Predict(ctx, job.PredictOptions{Env: w.env, Head: hp, Inputs: []string{w.dataset}, Coverage: 0.99, Out: out})
	if err == nil || !strings.Contains(err.Error(), "needs at least 99 held-out scores") {
		t.Errorf("coverage 0.99 with %d scores: %v", res.TrainRows, err)
	}
	ev, err := job.Eval(ctx, job.EvalOptions{Env: w.env, Head: hp, Coverage: []float64{0.8, 0.9}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Sets) != 2 || ev.Sets[0].Coverage != 0.8 || ev.Sets[0].MeanSize < 1 || ev.Sets[0].Empirical <= 0 {
		t.Errorf("sets %+v", ev.Sets)
	}
}

type rowsWriter struct{ rows *[]predictions.Row }

func (w rowsWriter) Write(r predictions.Row) error { *w.rows = append(*w.rows, r); return nil }
func (w rowsWriter) Close() error                  { return nil }

// TestDoctorFindsCopies: a training image copied into another class's
// folder is reported as a cross-class duplicate; one copied into test/ as
// a train/test leak; the HTML page embeds their thumbnails.
func TestDoctorFindsCopies(t *testing.T) {
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime is not available (%v); run `make setup`", err)
	}
	dir := t.TempDir()
	ds := filepath.Join(dir, "images")
	if _, err := e2e.WriteDataset(ds, e2e.DatasetOptions{Classes: 3, PerClass: 10, Seed: 5, Splits: true}); err != nil {
		t.Fatal(err)
	}
	var trainFiles []string
	filepath.Walk(filepath.Join(ds, "train"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			trainFiles = append(trainFiles, p)
		}
		return nil
	})
	if len(trainFiles) < 2 {
		t.Fatalf("generated dataset has %d training files", len(trainFiles))
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cls := filepath.Base(filepath.Dir(trainFiles[0]))
	copyFile(trainFiles[0], filepath.Join(ds, "test", cls, "leaked.png"))
	other := "red"
	if cls == other {
		other = "green"
	}
	copyFile(trainFiles[1], filepath.Join(ds, "train", other, "mislabelled-copy.png"))
	bb := filepath.Join(dir, "backbone.onnx")
	if err := e2e.WriteBackbone(bb, "resnet", 32); err != nil {
		t.Fatal(err)
	}
	env := job.Env{CacheDir: filepath.Join(dir, "cache"), ModelsDir: filepath.Join(dir, "models")}
	env.Session.Threads = 1
	ctx := context.Background()
	if _, err := job.Extract(ctx, job.ExtractOptions{Env: env, Dataset: ds, Backbone: job.BackboneOptions{Model: bb, Preset: "imagenet"}}); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "doctor.html")
	res, err := job.Doctor(ctx, job.DoctorOptions{Env: env, Dataset: ds, HTML: page})
	if err != nil {
		t.Fatal(err)
	}
	var leak, cross bool
	for _, p := range res.Report.Duplicates {
		a, b := res.Path(p.A), res.Path(p.B)
		leak = leak || p.Kind == "leak" && (strings.HasSuffix(a, "leaked.png") || strings.HasSuffix(b, "leaked.png"))
		cross = cross || p.Kind == "cross-class" && (strings.HasSuffix(a, "mislabelled-copy.png") || strings.HasSuffix(b, "mislabelled-copy.png"))
	}
	if !leak || !cross {
		t.Errorf("leak found %v, cross-class copy found %v: %+v", leak, cross, res.Report.Duplicates)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `<img src="data:image/png;base64,`) || !strings.Contains(string(html), "leaked.png") {
		t.Error("the page has no thumbnails or misses the leaked image")
	}
	if _, err := job.Doctor(ctx, job.DoctorOptions{Env: env, Dataset: filepath.Join(dir, "never-extracted")}); err == nil ||
		!strings.Contains(err.Error(), "run `headtune extract") {
		t.Errorf("a dataset without cached features: %v", err)
	}
}

// TestExtractAugment: views are made for training images only, cached
// (a second extract computes nothing), trained on for training rows only,
// and forgotten by an extract without --augment.
func TestExtractAugment(t *testing.T) {
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime is not available (%v); run `make setup`", err)
	}
	dir := t.TempDir()
	ds := filepath.Join(dir, "images")
	if _, err := e2e.WriteDataset(ds, e2e.DatasetOptions{Classes: 3, PerClass: 10, Seed: 7, Splits: true}); err != nil {
		t.Fatal(err)
	}
	bb := filepath.Join(dir, "backbone.onnx")
	if err := e2e.WriteBackbone(bb, "resnet", 32); err != nil {
		t.Fatal(err)
	}
	env := job.Env{CacheDir: filepath.Join(dir, "cache"), ModelsDir: filepath.Join(dir, "models")}
	env.Session.Threads = 1
	ctx := context.Background()
	ext := func(n int) *job.ExtractResult {
		t.Helper()
		res, err := job.Extract(ctx, job.ExtractOptions{Env: env, Dataset: ds, Backbone: job.BackboneOptions{Model: bb, Preset: "imagenet"}, Augment: n, AugmentSeed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := ext(2)
	trainImages := 0
	for _, s := range []string{"train"} {
		matches, _ := filepath.Glob(filepath.Join(ds, s, "*", "*"))
		trainImages += len(matches)
	}
	if res.Augmented == nil || res.Augmented.Images != 2*trainImages || res.Augmented.Computed != 2*trainImages {
		t.Fatalf("augmented %+v for %d training images", res.Augmented, trainImages)
	}
	if again := ext(2); again.Augmented.Computed != 0 || again.Augmented.Reused != 2*trainImages {
		t.Errorf("second extract: %+v, want every view from the cache", again.Augmented)
	}
	tr, err := job.Train(ctx, job.TrainOptions{Env: env, Head: filepath.Join(dir, "h.head"), CV: 3, Split: job.SplitOptions{Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if tr.AugmentedRows != 2*tr.TrainRows || !strings.Contains(tr.Model.Train.Augment, "2 augmented views") {
		t.Errorf("%d augmented rows for %d training rows; %q", tr.AugmentedRows, tr.TrainRows, tr.Model.Train.Augment)
	}
	for _, f := range tr.CV.PerFold {
		if f.TrainRows != 3*(tr.TrainRows-f.TestRows) {
			t.Errorf("fold %d trains on %d rows, want %d originals and their views", f.Fold, f.TrainRows, 3*(tr.TrainRows-f.TestRows))
		}
	}
	ext(0)
	tr2, err := job.Train(ctx, job.TrainOptions{Env: env, Head: filepath.Join(dir, "h2.head"), Split: job.SplitOptions{Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if tr2.AugmentedRows != 0 || tr2.Model.Train.Augment != "" {
		t.Errorf("after an extract without --augment: %d augmented rows", tr2.AugmentedRows)
	}
}
