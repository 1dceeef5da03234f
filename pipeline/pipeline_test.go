package pipeline

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
)

// testBackbone writes a small ResNet-shaped model and opens it.
func testBackbone(t *testing.T, batch int) *Backbone {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime not available (%v): run `make setup`", err)
	}
	path := filepath.Join(t.TempDir(), "resnet.onnx")
	if err := backbone.WriteModelFile(path, testmodels.Model("resnet", 32)); err != nil {
		t.Fatal(err)
	}
	bb, err := OpenBackbone(path, BackboneOptions{Preset: "imagenet", Session: ort.SessionOptions{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	return bb
}

// writeImages writes n small PNGs whose colour depends on i, and returns
// their paths; every bad-th file (when bad > 0) is garbage.
func writeImages(t *testing.T, dir string, n, bad int) []string {
	t.Helper()
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "img"+string(rune('a'+i/26))+string(rune('a'+i%26))+".png")
		if bad > 0 && i%bad == bad-1 {
			if err := os.WriteFile(p, []byte("not an image"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			img := image.NewRGBA(image.Rect(0, 0, 40+i%7, 36))
			for y := 0; y < 36; y++ {
				for x := 0; x < img.Rect.Dx(); x++ {
					img.Set(x, y, color.RGBA{uint8(i * 37), uint8(x * 6), uint8(y * 7), 255})
				}
			}
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := png.Encode(f, img); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		paths = append(paths, p)
	}
	return paths
}

func TestRunnerMatchesDirectSession(t *testing.T) {
	bb := testBackbone(t, 0)
	paths := writeImages(t, t.TempDir(), 23, 5) // 4 bad files
	// workers 0 with inferers > 1 is the fused layout (each inference
	// goroutine decodes its own batch); batch 0 is the default.
	for _, tc := range []struct{ batch, workers, inferers int }{
		{1, 1, 1}, {4, 2, 1}, {16, 3, 2}, {64, 1, 1}, {0, 0, 1},
		{1, 0, 2}, {4, 0, 3}, {0, 0, 2}, {64, 0, 2},
	} {
		got := map[int][]float32{}
		var failed []int
		r := &Runner{Session: bb.Session, Spec: bb.Spec, BatchSize: tc.batch, Workers: tc.workers, Inferers: tc.inferers,
			OnFail: func(f Failure) { failed = append(failed, f.Index) }}
		if r.Fused() != (tc.workers == 0 && tc.inferers > 1) {
			t.Fatalf("%+v: Fused() = %v", tc, r.Fused())
		}
		last := -1
		err := r.Run(context.Background(), paths, func(b *Batch) error {
			for k, idx := range b.Index {
				if idx <= last {
					t.Fatalf("batch order: index %d after %d", idx, last)
				}
				last = idx
				got[idx] = append([]float32(nil), b.Outputs[0][k*bb.Dim:(k+1)*bb.Dim]...)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) != 4 || len(got) != 19 {
			t.Fatalf("%+v: %d failed, %d ran; want 4 and 19", tc, len(failed), len(got))
		}
		// Each image alone through the session gives the same features
		// (within float noise across batch sizes).
		in := make([]float32, bb.Spec.TensorLen())
		out := make([]float32, bb.Dim)
		worst := 0.0
		for idx, feat := range got {
			if err := bb.Spec.Load(paths[idx], in, nil); err != nil {
				t.Fatal(err)
			}
			if err := bb.Session.Run(context.Background(), in, 1, out); err != nil {
				t.Fatal(err)
			}
			for j := range out {
				worst = math.Max(worst, math.Abs(float64(out[j]-feat[j])))
			}
		}
		if worst > 1e-5 {
			t.Errorf("%+v: features differ from a direct run by %g", tc, worst)
		}
	}
}

func TestRunnerCancel(t *testing.T) {
	bb := testBackbone(t, 0)
	paths := writeImages(t, t.TempDir(), 40, 0)
	for _, inferers := range []int{1, 2} { // separate decode workers, fused
		ctx, cancel := context.WithCancel(context.Background())
		batches := 0
		err := (&Runner{Session: bb.Session, Spec: bb.Spec, BatchSize: 4, Inferers: inferers}).Run(ctx, paths, func(b *Batch) error {
			batches++
			if batches == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("inferers %d: err = %v, want context.Canceled", inferers, err)
		}
		if batches != 2 {
			t.Fatalf("inferers %d: %d batches handed over after cancel, want 2", inferers, batches)
		}
	}
}

func TestRunnerCallbackError(t *testing.T) {
	bb := testBackbone(t, 0)
	paths := writeImages(t, t.TempDir(), 40, 0)
	boom := errors.New("disk full")
	for _, inferers := range []int{1, 2} {
		err := (&Runner{Session: bb.Session, Spec: bb.Spec, BatchSize: 4, Inferers: inferers}).Run(context.Background(), paths, func(b *Batch) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("inferers %d: err = %v, want the callback's error", inferers, err)
		}
	}
}

func TestExtractReuseAndView(t *testing.T) {
	bb := testBackbone(t, 0)
	root := t.TempDir()
	for _, class := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(root, class), 0o755); err != nil {
			t.Fatal(err)
		}
		writeImages(t, filepath.Join(root, class), 6, 0)
	}
	os.WriteFile(filepath.Join(root, "b", "zz-broken.png"), []byte{0x89, 'P', 'N', 'G'}, 0o644)
	ds, err := imaging.OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	sum, err := Extract(context.Background(), bb, ds, ExtractOptions{CacheRoot: cache, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Class a and b hold the same 6 images: 6 distinct contents computed,
	// the 6 duplicates are deduplicated by the cache.
	if sum.Skipped != 1 || sum.Computed+sum.Reused != 12 {
		t.Fatalf("first run: %+v", sum)
	}
	sum2, err := Extract(context.Background(), bb, ds, ExtractOptions{CacheRoot: cache, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Computed != 0 || sum2.Reused != 12 {
		t.Fatalf("second run recomputed: %+v", sum2)
	}
	f, err := LoadFeatures(cache, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.N != 12 || f.D != bb.Dim || len(f.Classes) != 2 {
		t.Fatalf("loaded %d rows of %d, classes %v", f.N, f.D, f.Classes)
	}
	// Features in the cache equal a direct run of the same image.
	in := make([]float32, bb.Spec.TensorLen())
	out := make([]float32, bb.Dim)
	if err := bb.Spec.Load(filepath.Join(root, f.Paths[3]), in, nil); err != nil {
		t.Fatal(err)
	}
	if err := bb.Session.Run(context.Background(), in, 1, out); err != nil {
		t.Fatal(err)
	}
	for j := range out {
		if d := math.Abs(float64(out[j] - f.X[3*f.D+j])); d > 1e-5 {
			t.Fatalf("cached feature %d differs by %g", j, d)
		}
	}
	r, err := featcache.OpenDir(sum.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != 6 {
		t.Fatalf("cache holds %d rows, want 6 distinct images", r.Len())
	}
}

func TestPredictOrderWithFailures(t *testing.T) {
	bb := testBackbone(t, 0)
	paths := writeImages(t, t.TempDir(), 21, 4)
	for _, inferers := range []int{1, 2} { // separate decode workers, fused
		testPredictOrder(t, bb, paths, &Runner{Session: bb.Session, Spec: bb.Spec, BatchSize: 4, Inferers: inferers})
	}
}

func testPredictOrder(t *testing.T, bb *Backbone, paths []string, r *Runner) {
	var got []Prediction
	classes := 3
	err := Predict(context.Background(), r, paths, func(outs [][]float32, n int, probs []float32) error {
		if len(outs[0]) != n*bb.Dim {
			t.Fatalf("scorer got %d values for %d rows", len(outs[0]), n)
		}
		for i := range probs {
			probs[i] = float32(i%classes) / 3
		}
		return nil
	}, PredictOptions{Classes: classes, TopK: 2, Embeddings: true, FeatureOut: 0}, func(p Prediction) error {
		got = append(got, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(paths) {
		t.Fatalf("%d predictions for %d files", len(got), len(paths))
	}
	for i, p := range got {
		if p.Path != paths[i] {
			t.Fatalf("prediction %d is %s, want %s (input order)", i, p.Path, paths[i])
		}
		if (i%4 == 3) != (p.Err != nil) {
			t.Fatalf("file %d: err %v", i, p.Err)
		}
		if p.Err == nil && (len(p.Classes) != 2 || p.Classes[0] != 2 || len(p.Features) != bb.Dim) {
			t.Fatalf("file %d: classes %v, %d features", i, p.Classes, len(p.Features))
		}
	}
}

func TestViewName(t *testing.T) {
	a, b := ViewName("/data/set one"), ViewName("/other/set one")
	if a == b {
		t.Fatal("different folders share a view name")
	}
	if a != ViewName("/data/set one") {
		t.Fatal("view name not stable")
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			t.Fatalf("view name %q has %q", a, r)
		}
	}
}

func TestOpenBackboneErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	os.WriteFile(garbage, []byte("definitely not protobuf \xff\xff"), 0o644)
	if _, err := OpenBackbone(garbage, BackboneOptions{NoSession: true}); err == nil {
		t.Fatal("garbage accepted")
	} else if !strings.Contains(err.Error(), garbage) {
		t.Fatalf("error does not name the file: %v", err)
	}
	if _, err := OpenBackbone("no-such-model", BackboneOptions{NoSession: true}); err == nil {
		t.Fatal("unknown name accepted without a store")
	}
	path := filepath.Join(dir, "r.onnx")
	backbone.WriteModelFile(path, testmodels.Model("resnet", 32))
	if _, err := OpenBackbone(path, BackboneOptions{NoSession: true, Width: 64, Height: 64}); err == nil {
		t.Fatal("a size that contradicts the model was accepted")
	}
	bb, err := OpenBackbone(path, BackboneOptions{NoSession: true, TuneLayers: 3})
	if err == nil {
		t.Fatalf("tune-layers 3 on a one-layer head accepted: %d layers", len(bb.Tuned))
	}
}

func TestOpenBackboneTuneLayers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vgg.onnx")
	if err := backbone.WriteModelFile(path, testmodels.Model("vgg", 32)); err != nil {
		t.Fatal(err)
	}
	plain, err := OpenBackbone(path, BackboneOptions{NoSession: true})
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := OpenBackbone(path, BackboneOptions{NoSession: true, TuneLayers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(tuned.Tuned) != 2 {
		t.Fatalf("%d tuned layers, want 2", len(tuned.Tuned))
	}
	if tuned.Choice.Tensor != tuned.Tuned[0].Input || tuned.Dim != tuned.Tuned[0].In {
		t.Fatalf("cut at %s (%d-d), want the first tuned layer's input %s (%d-d)", tuned.Choice.Tensor, tuned.Dim, tuned.Tuned[0].Input, tuned.Tuned[0].In)
	}
	if last := tuned.Tuned[1]; last.Out != plain.Dim {
		t.Fatalf("last tuned layer gives %d values, the plain feature tensor has %d", last.Out, plain.Dim)
	}
	if tuned.Identity.ID() == plain.Identity.ID() {
		t.Fatal("tuned and plain cuts share a cache identity")
	}
}
