package ort_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testmodels"
)

// cutTestModel returns a small ResNet-shaped model cut at its features,
// serialised, with its per-sample input shape and feature width.
func cutTestModel(t *testing.T) ([]byte, string, []int64, int) {
	t.Helper()
	if _, err := ort.Init(""); err != nil {
		testasset.Skip(t, "ONNX Runtime not available (%v): run `make setup`", err)
	}
	m := testmodels.Model("resnet", 32)
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	cut, err := backbone.CutAtFeature(m, choice)
	if err != nil {
		t.Fatal(err)
	}
	data, err := backbone.MarshalModel(cut)
	if err != nil {
		t.Fatal(err)
	}
	img, err := backbone.ImageInput(cut)
	if err != nil {
		t.Fatal(err)
	}
	name, c, h, w := img.Name, img.Channels, img.Height, img.Width
	return data, name, []int64{int64(c), int64(h), int64(w)}, int(choice.Dim)
}

func TestSessionBatchesAgree(t *testing.T) {
	data, input, shape, dim := cutTestModel(t)
	spec := ort.SessionSpec{Input: input, InputShape: shape, Outputs: []string{"features"}, OutputSizes: []int{dim}}
	s, err := ort.NewSession(data, spec, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The same samples through a fixed-batch-1 session (run one by one).
	spec.FixedBatch = 1
	s1, err := ort.NewSession(data, spec, ort.SessionOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	const n = 5
	in := make([]float32, n*s.InputLen())
	for i := range in {
		in[i] = float32(math.Sin(float64(i) * 0.37))
	}
	a, b := make([]float32, n*dim), make([]float32, n*dim)
	if err := s.Run(context.Background(), in, n, a); err != nil {
		t.Fatal(err)
	}
	if err := s1.Run(context.Background(), in, n, b); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	if worst > 1e-5 {
		t.Fatalf("batch of %d vs one by one: max diff %g", n, worst)
	}
	if err := s.Run(context.Background(), in[:3], n, a); err == nil {
		t.Fatal("short input accepted")
	}
	if err := s.Run(context.Background(), in, n, a[:dim]); err == nil {
		t.Fatal("short output accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx, in, n, a); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	if err := s.Close(); err != nil || s.Close() != nil {
		t.Fatalf("close twice: %v", err)
	}
}

func TestSessionCUDAUnavailable(t *testing.T) {
	data, input, shape, dim := cutTestModel(t)
	_, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape, Outputs: []string{"features"}, OutputSizes: []int{dim}}, ort.SessionOptions{Device: "cuda"})
	if err == nil {
		t.Skip("this ONNX Runtime library has CUDA support and a GPU: nothing to refuse")
	}
	if !strings.Contains(err.Error(), "CUDA") || !strings.Contains(err.Error(), "--ort-lib") {
		t.Fatalf("error does not say how to get CUDA: %v", err)
	}
	_, err = ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape, Outputs: []string{"features"}, OutputSizes: []int{dim}}, ort.SessionOptions{Device: "tpu"})
	if err == nil || !strings.Contains(err.Error(), "cpu or cuda") {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestFindRuntimeLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if _, err := ort.FindLibrary(missing); !errors.Is(err, ort.ErrLibraryMissing) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "make setup") {
		t.Fatalf("explicit missing path: %v", err)
	}
	t.Setenv(ort.LibraryEnv, missing)
	if _, err := ort.FindLibrary(""); err == nil || !strings.Contains(err.Error(), ort.LibraryEnv) {
		t.Fatalf("missing env path: %v", err)
	}
	present := filepath.Join(t.TempDir(), "lib.so")
	os.WriteFile(present, []byte("x"), 0o644)
	if got, err := ort.FindLibrary(present); err != nil || got != present {
		t.Fatalf("explicit path: %q, %v", got, err)
	}
	t.Setenv(ort.LibraryEnv, "")
	t.Setenv("ONNXRUNTIME_SHARED_LIBRARY_PATH", present)
	if got, err := ort.FindLibrary(""); err != nil || got != present {
		t.Fatalf("ONNXRUNTIME_SHARED_LIBRARY_PATH: %q, %v", got, err)
	}
}

// TestSessionCancelIsPerCall: cancelling one Run stops that run only. Runs
// going on at the same time on the same session, and every later run,
// succeed (ONNX Runtime's terminate flag belongs to a run's options; a
// flag shared by the session would abort its neighbours and stay set).
func TestSessionCancelIsPerCall(t *testing.T) {
	data, input, shape, dim := cutTestModel(t)
	s, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape, Outputs: []string{"features"}, OutputSizes: []int{dim}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 8
	in := make([]float32, n*s.InputLen())
	for i := range in {
		in[i] = float32(i%17) / 17
	}
	cancelled := 0
	for round := 0; round < 300; round++ {
		// One run whose context is cancelled at some point while it
		// runs, beside one that must not notice.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 2)
		go func() { errc <- s.Run(ctx, in, n, make([]float32, n*dim)) }()
		go func() { errc <- s.Run(context.Background(), in, n, make([]float32, n*dim)) }()
		cancel()
		var bystander error
		for k := 0; k < 2; k++ {
			err := <-errc
			switch {
			case errors.Is(err, context.Canceled):
				cancelled++
			case err != nil:
				bystander = err
			}
		}
		if bystander != nil {
			t.Fatalf("round %d: a run with its own live context failed: %v", round, bystander)
		}
		if err := s.Run(context.Background(), in, n, make([]float32, n*dim)); err != nil {
			t.Fatalf("round %d: a run after a cancelled one failed: %v", round, err)
		}
	}
	t.Logf("%d of 300 runs were cancelled", cancelled)
}

func TestSessionProfileAndOptimizedModel(t *testing.T) {
	data, input, shape, dim := cutTestModel(t)
	dir := t.TempDir()
	opt := ort.SessionOptions{Threads: 1, ProfilePrefix: filepath.Join(dir, "p"), OptimizedModelPath: filepath.Join(dir, "opt.onnx")}
	s, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape, Outputs: []string{"features"}, OutputSizes: []int{dim}}, opt)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, s.InputLen())
	out := make([]float32, dim)
	if err := s.Run(context.Background(), in, 1, out); err != nil {
		t.Fatal(err)
	}
	if s.ProfileFile() != "" {
		t.Fatalf("ProfileFile before Close: %q", s.ProfileFile())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.ProfileFile())
	if err != nil {
		t.Fatalf("profile after Close: %v", err)
	}
	if !strings.HasPrefix(filepath.Base(s.ProfileFile()), "p_") || !strings.Contains(string(b), `"cat" : "Node"`) {
		t.Errorf("profile %s holds no node events: %.200s", s.ProfileFile(), b)
	}
	m, err := backbone.ReadModelFile(opt.OptimizedModelPath)
	if err != nil {
		t.Fatalf("optimized model: %v", err)
	}
	if len(m.Graph.Node) == 0 {
		t.Error("optimized model has no nodes")
	}
}
