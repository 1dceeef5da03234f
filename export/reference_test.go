package export

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/testasset"
)

// referenceModel is the shared MobileNetV2 (ImageNet blocks 0-10, 384
// features, NHWC 224x224, 0..1 input), a real mid-size backbone.
const referenceModel = "imagenet_mobilenet_v2_100_block10_224.onnx"

var (
	refOnce sync.Once
	refFix  *fixture
	refErr  error
)

// referenceFixture loads the shared reference backbone with 16 images, or
// skips when it is absent (it only exists on the development machine).
func referenceFixture(t testing.TB) *fixture {
	t.Helper()
	ortReady(t)
	path := filepath.Join("..", "..", "shared", "models", referenceModel)
	if _, err := os.Stat(path); err != nil {
		testasset.Skip(t, "reference model %s not found (only present on the development machine): %v", path, err)
	}
	refOnce.Do(func() {
		m, err := backbone.ReadModelFile(path)
		if err != nil {
			refErr = err
			return
		}
		refFix, refErr = newFixture(m, "mobilenet_v2_block10", "unit", 0, 16, 5)
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refFix
}

// TestReferenceModelParity exports heads on a real backbone and checks
// parity and the onnx interface, as TestExportParity does on test graphs.
func TestReferenceModelParity(t *testing.T) {
	f := referenceFixture(t)
	for _, tc := range []struct {
		name   string
		hidden []int
		opt    Options
	}{
		{"linear", nil, Options{}},
		{"mlp/pixels/features", []int{64}, Options{WithPreprocessing: true, WithFeatures: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := handHead(f, tc.hidden, 1.7)
			m, err := Build(f.cut, f.spec, h, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			checkNoDeadParts(t, m)
			outs, want := runExport(t, f, h, m, tc.opt)
			d := maxAbsDiff(outs[0], want)
			t.Logf("%s: max |probability difference| = %.3g (%d images, D=%d)", referenceModel, d, f.n, f.d)
			if d > parityTol {
				t.Errorf("probabilities differ by %.3g > %g", d, parityTol)
			}
			if tc.opt.WithFeatures {
				if fd := maxAbsDiff(outs[1], f.feats); fd > 1e-5 {
					t.Errorf("features differ by %.3g", fd)
				}
			}
		})
	}
}

// headParams counts the float32 values Build stores for h.
func headParams(h *head.Model) int {
	n := len(h.Mean) + len(h.Std)
	for _, l := range h.Layers {
		n += len(l.W) + len(l.B)
	}
	return n
}

// TestExportSize checks that an export is the cut backbone plus the head's
// weights and a little graph and metadata: no backbone weight is
// duplicated and nothing dead is kept.
func TestExportSize(t *testing.T) {
	for _, kind := range []string{"vgg", "reference"} {
		t.Run(kind, func(t *testing.T) {
			var f *fixture
			if kind == "reference" {
				f = referenceFixture(t)
			} else {
				f = getFixture(t, kind, 64, 0, 8, 10)
			}
			cutData, err := backbone.MarshalModel(f.cut)
			if err != nil {
				t.Fatal(err)
			}
			for _, hidden := range [][]int{nil, {256}} {
				h := handHead(f, hidden, 1.5)
				m, err := Build(f.cut, f.spec, h, Options{WithPreprocessing: true, WithFeatures: true})
				if err != nil {
					t.Fatal(err)
				}
				data, err := backbone.MarshalModel(m)
				if err != nil {
					t.Fatal(err)
				}
				weights := 4 * headParams(h)
				extra := len(data) - len(cutData) - weights
				t.Logf("%s, head %v: cut %d bytes, export %d bytes = cut + %d head weight bytes + %d bytes of nodes and metadata",
					f.kind, append([]int{f.d}, append(hidden, f.k)...), len(cutData), len(data), weights, extra)
				if extra < 0 || extra > 16<<10 {
					t.Errorf("export overhead %d bytes beyond the head's weights, want 0..16 KiB", extra)
				}
			}
		})
	}
}

// BenchmarkExportVsCut measures batch-8 inference of the cut backbone
// alone and of exports with a linear and an MLP (512 hidden) head, on the
// reference MobileNetV2 block10 (when present) and a 224x224 ResNet-shaped
// test graph. The three sessions run interleaved within every iteration, so
// load from other processes hits them alike; the metrics are the fastest
// iteration's ms per image for each (the least disturbed by other
// processes), the export's overhead over the cut in percent, and the file
// sizes.
func BenchmarkExportVsCut(b *testing.B) {
	const batch = 8
	ortReady(b)
	for _, kind := range []string{"reference", "resnet224"} {
		b.Run(kind, func(b *testing.B) {
			var f *fixture
			if kind == "reference" {
				f = referenceFixture(b)
			} else {
				f = getFixture(b, "resnet", 224, 0, batch, 10)
			}
			shape := f.spec.InputShape()
			models := []struct {
				name   string
				hidden []int
			}{{"cut", nil}, {"linear", nil}, {"mlp512", []int{512}}}
			sessions := make([]*ort.Session, len(models))
			sizesBytes := make([]int, len(models))
			outs := make([][]float32, len(models))
			for i, mc := range models {
				m := f.cut
				names, sizes := []string{OutputFeatures}, []int{f.d}
				if i > 0 {
					var err error
					if m, err = Build(f.cut, f.spec, handHead(f, mc.hidden, 1.5), Options{}); err != nil {
						b.Fatal(err)
					}
					names, sizes = []string{OutputProbabilities}, []int{f.k}
				}
				data, err := backbone.MarshalModel(m)
				if err != nil {
					b.Fatal(err)
				}
				sizesBytes[i] = len(data)
				s, err := ort.NewSession(data, ort.SessionSpec{Input: f.input, InputShape: shape, Outputs: names, OutputSizes: sizes}, ort.SessionOptions{Threads: 2})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				sessions[i], outs[i] = s, make([]float32, batch*sizes[0])
			}
			x := f.norm[:batch*f.spec.TensorLen()]
			ctx := context.Background()
			run := func(i int) time.Duration {
				t0 := time.Now()
				if err := sessions[i].Run(ctx, x, batch, outs[i]); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			for i := range sessions { // warm-up
				run(i)
			}
			best := make([]time.Duration, len(sessions))
			for i := range best {
				best[i] = time.Hour
			}
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for j := range sessions {
					i := (it + j) % len(sessions) // rotate the order too
					best[i] = min(best[i], run(i))
				}
			}
			b.StopTimer()
			// The fastest of the iterations: robust to other processes'
			// load, which only ever adds time.
			per := func(i int) float64 { return best[i].Seconds() * 1000 / batch }
			for i, mc := range models {
				b.ReportMetric(per(i), mc.name+"_min_ms/image")
				b.ReportMetric(float64(sizesBytes[i]), mc.name+"_file_bytes")
			}
			b.ReportMetric(100*(per(1)/per(0)-1), "linear_overhead_%")
			b.ReportMetric(100*(per(2)/per(0)-1), "mlp512_overhead_%")
		})
	}
}
