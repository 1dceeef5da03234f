package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
)

// The consumer matrix: every kind of export headtune writes, run by every
// runtime the README names, compared with head.PredictBatch on the
// features ONNX Runtime (Go) computes with the cut backbone, which is what
// `headtune predict` does.
//
// To cover a new kind of export, add a row to matrixCases (a fixture
// function, a head and Options, and where the export is meant to round or
// to be unreadable somewhere, its tolerance and the consumers it declares
// it cannot run); to cover a new consumer, add an entry to consumers.
// Every row runs in every consumer.

// consumerTol is the largest probability difference the issue allows a
// consumer; ONNX Runtime from Go is held to parityTol.
const consumerTol = 1e-4

// matrixCase is one kind of export.
type matrixCase struct {
	name    string
	fixture func(testing.TB) *fixture
	head    string // head.KindLinear, head.KindMLP (trained), or "hand"
	hidden  []int  // hand heads only
	opt     Options
	// tol, when set, replaces every consumer's own bar (against float32
	// head.PredictBatch): for exports that are meant to round (--fp16).
	tol float64
	// limited lists the consumers (Limits line prefixes) the export is
	// expected to declare it cannot run; the matrix checks both that the
	// export says so and that the consumer indeed fails.
	limited []string
}

// testModel returns a fixture function for a backbone.TestModel kind.
func testModel(kind string, tune int) func(testing.TB) *fixture {
	return func(t testing.TB) *fixture { return getFixture(t, kind, testSize, tune, testImages, testClasses) }
}

// registry returns a fixture function for a backbone built from its npm
// package (models/tfjs), as `headtune models pull` builds it.
func registry(arch string) func(testing.TB) *fixture {
	return func(t testing.TB) *fixture { return registryFixture(t, arch) }
}

var matrixCases = []matrixCase{
	// Registry-built backbones (npm tarballs).
	{name: "mobilenetv2-block10/linear", fixture: registry(tfjs.ArchMobileNetV2), head: "hand"},
	{name: "mobilenetv2-block10/mlp/pixels", fixture: registry(tfjs.ArchMobileNetV2), head: "hand", hidden: []int{32}, opt: Options{WithPreprocessing: true}},
	{name: "inceptionv3-mixed5/linear/pixels", fixture: registry(tfjs.ArchInceptionV3), head: "hand", opt: Options{WithPreprocessing: true}},
	{name: "inceptionv3-mixed5/mlp", fixture: registry(tfjs.ArchInceptionV3), head: "hand", hidden: []int{16}},
	{name: "face-expression/linear/pixels", fixture: registry(tfjs.ArchFaceExpression), head: "hand", opt: Options{WithPreprocessing: true}},
	{name: "face-expression/mlp/features", fixture: registry(tfjs.ArchFaceExpression), head: "hand", hidden: []int{16}, opt: Options{WithFeatures: true}},
	// Catalog-style ONNX backbones (the test-model builder's shapes).
	{name: "resnet/linear", fixture: testModel("resnet", 0), head: head.KindLinear},
	{name: "resnet/mlp/pixels", fixture: testModel("resnet", 0), head: head.KindMLP, opt: Options{WithPreprocessing: true}},
	{name: "vgg/linear", fixture: testModel("vgg", 0), head: head.KindLinear},
	{name: "vgg/tuned2/linear", fixture: testModel("vgg", 2), head: head.KindLinear},
	{name: "vgg/tuned1/mlp/pixels/features", fixture: testModel("vgg", 1), head: head.KindMLP, opt: Options{WithPreprocessing: true, WithFeatures: true}},
	{name: "mobilenet-relu6/hand-mlp-T2.5/pixels", fixture: testModel("mobilenet", 0), head: "hand", hidden: []int{20, 9}, opt: Options{WithPreprocessing: true}},
	{name: "mobilenet-relu6/linear", fixture: testModel("mobilenet", 0), head: head.KindLinear},
	{name: "squeezenet/hand-linear-T2.5", fixture: testModel("squeezenet", 0), head: "hand"},
	{name: "keras-nhwc/mlp/pixels/features", fixture: testModel("keras", 0), head: head.KindMLP, opt: Options{WithPreprocessing: true, WithFeatures: true}},
	{name: "features4d-nhwc/linear/pixels", fixture: testModel("features4d-nhwc", 0), head: head.KindLinear, opt: Options{WithPreprocessing: true}},
	// A real exporter's graph: torchvision's MobileNetV2 (random weights)
	// as torch.onnx.export writes it at opset 13 (Clip bounds as Constant
	// nodes, Identity, Flatten), what a catalog download looks like.
	{name: "torchvision-mobilenet_v2/linear/pixels", fixture: torchvision("mobilenet_v2"), head: "hand", opt: Options{WithPreprocessing: true}},
	{name: "torchvision-resnet18/mlp", fixture: torchvision("resnet18"), head: "hand", hidden: []int{16}},
	// export --fp16 (every consumer held to fp16Tol against float32).
	{name: "mobilenetv2-block10/linear/fp16", fixture: registry(tfjs.ArchMobileNetV2), head: "hand", opt: Options{FP16: true}, tol: fp16Tol, limited: []string{LimitOpenCV}},
	{name: "inceptionv3-mixed5/mlp/pixels/fp16", fixture: registry(tfjs.ArchInceptionV3), head: "hand", hidden: []int{16}, opt: Options{WithPreprocessing: true, FP16: true}, tol: fp16Tol, limited: []string{LimitOpenCV}},
	{name: "face-expression/linear/pixels/features/fp16", fixture: registry(tfjs.ArchFaceExpression), head: "hand", opt: Options{WithPreprocessing: true, WithFeatures: true, FP16: true}, tol: fp16Tol, limited: []string{LimitOpenCV}},
	{name: "vgg/tuned1/mlp/fp16", fixture: testModel("vgg", 1), head: head.KindMLP, opt: Options{FP16: true}, tol: fp16Tol, limited: []string{LimitOpenCV}},
	{name: "keras-nhwc/linear/pixels/fp16", fixture: testModel("keras", 0), head: head.KindLinear, opt: Options{WithPreprocessing: true, FP16: true}, tol: fp16Tol, limited: []string{LimitOpenCV}},
}

// fp16Tol bounds the probability difference of an --fp16 export from the
// float32 head.PredictBatch, in every consumer.
const fp16Tol = 2e-2

// export is one built matrix case written to disk.
type exportFile struct {
	f    *fixture
	h    *head.Model
	meta *Meta
	data []byte
	path string
	dir  string
	feed []float32 // what the model's input takes: raw pixels or the normalised tensor
	want []float32 // head.PredictBatch on the cut backbone's features [n*k]
	// limits is what Limits says about the export: the consumers that
	// cannot run it.
	limits []string
}

func (c matrixCase) build(t *testing.T) *exportFile {
	t.Helper()
	f := c.fixture(t)
	var h *head.Model
	if c.head == "hand" {
		h = handHead(f, c.hidden, 2.5)
	} else {
		h = headFor(t, f, c.head)
	}
	opt := c.opt
	opt.Version = "test-1.0"
	m, err := Build(f.cut, f.spec, h, opt)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	e := &exportFile{f: f, h: h, dir: t.TempDir(), limits: Limits(m)}
	for _, prefix := range c.limited {
		if !slices.ContainsFunc(e.limits, func(l string) bool { return strings.HasPrefix(l, prefix) }) {
			t.Errorf("the export does not say %q (its limits: %q)", prefix, e.limits)
		}
	}
	for _, l := range e.limits {
		if !slices.ContainsFunc(c.limited, func(prefix string) bool { return strings.HasPrefix(l, prefix) }) {
			t.Errorf("unexpected consumer limit: %q", l)
		}
	}
	if e.data, err = backbone.MarshalModel(m); err != nil {
		t.Fatal(err)
	}
	e.path = filepath.Join(e.dir, "model.onnx")
	if err := os.WriteFile(e.path, e.data, 0o644); err != nil {
		t.Fatal(err)
	}
	if e.meta, err = ReadMetadata(m); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("HEADTUNE_KEEP_EXPORTS"); keep != "" {
		// For looking at a failing cell with other tools.
		p := filepath.Join(keep, strings.ReplaceAll(c.name, "/", "_")+".onnx")
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.feed = f.norm
	if opt.WithPreprocessing {
		e.feed = f.raw
	}
	e.want = make([]float32, f.n*f.k)
	if err := h.PredictBatch(f.feats, f.n, e.want); err != nil {
		t.Fatal(err)
	}
	if spread := maxAbsDiff(e.want[:f.k], e.want[f.k:2*f.k]); spread < 1e-3 {
		t.Fatalf("first two reference rows nearly identical (%.3g): degenerate test data", spread)
	}
	return e
}

// consumer is a runtime that loads an export and returns its
// probabilities [n*k] (nil for a checker that computes none).
type consumer struct {
	name string
	tol  float64
	// run returns the probabilities, or an error when the consumer
	// cannot load or run the export; it skips or fails t for problems of
	// the harness (a missing runtime).
	run func(t *testing.T, e *exportFile) ([]float32, error)
	// limit is the prefix of Limits' lines about this consumer ("" for
	// one that runs every export).
	limit string
}

var consumers = []consumer{
	{"onnxruntime-go", parityTol, runORTGo, ""},
	{"onnxruntime-node", consumerTol, runNode, ""},
	{"opencv-dnn", consumerTol, runOpenCV, LimitOpenCV},
	{"onnx-checker", 0, runChecker, ""},
}

// limited returns the Limits line about cons, or "".
func (e *exportFile) limited(cons consumer) string {
	for _, l := range e.limits {
		if cons.limit != "" && strings.HasPrefix(l, cons.limit) {
			return l
		}
	}
	return ""
}

// TestConsumerMatrix runs every export kind in every consumer; a consumer
// that cannot load an export, or disagrees with head.PredictBatch beyond
// its tolerance, fails its cell.
func TestConsumerMatrix(t *testing.T) {
	ortReady(t)
	for _, c := range matrixCases {
		t.Run(c.name, func(t *testing.T) {
			e := c.build(t)
			for _, cons := range consumers {
				t.Run(cons.name, func(t *testing.T) {
					if l := e.limited(cons); l != "" {
						// The export says this consumer cannot run it: check
						// that this is still true, so the README's list of
						// exceptions cannot go stale.
						if _, err := cons.run(t, e); err == nil {
							t.Errorf("the export says %q, yet %s ran it", l, cons.name)
						} else {
							t.Logf("fails as the export says (%s): %v", l, lastLine([]byte(err.Error())))
						}
						return
					}
					got, err := cons.run(t, e)
					if err != nil {
						t.Fatal(err)
					}
					if got == nil {
						return
					}
					tol := cons.tol
					if c.tol > 0 {
						tol = c.tol
					}
					d := maxAbsDiff(got, e.want)
					t.Logf("max |probability difference| = %.3g (%d images x %d classes)", d, e.f.n, e.f.k)
					if d > tol {
						t.Errorf("%s probabilities differ from head.PredictBatch by %.3g > %g", cons.name, d, tol)
					}
				})
			}
		})
	}
}

func runORTGo(t *testing.T, e *exportFile) ([]float32, error) {
	ss, err := e.meta.SessionSpec(e.meta.HasFeatures())
	if err != nil {
		t.Fatal(err)
	}
	outs, err := runModel(e.data, e.meta.InputName, e.f.spec, e.feed, e.f.n, ss.Outputs, ss.OutputSizes)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime (Go): %w", err)
	}
	if e.meta.HasFeatures() {
		tol := 1e-5
		if e.meta.FP16 {
			tol = 0.05 // absolute, on features of order 1
		}
		if fd := maxAbsDiff(outs[1], e.f.feats); fd > tol {
			t.Errorf("features output differs from the cut backbone's by %.3g", fd)
		}
	}
	return outs[0], nil
}

// writeF32 writes x as little-endian float32 to dir/name.
func writeF32(t *testing.T, dir, name string, x []float32) string {
	t.Helper()
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, x)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runNode runs the README's Node snippet, which takes raw pixels and
// normalises them itself when the export has no preprocessing.
func runNode(t *testing.T, e *exportFile) ([]float32, error) {
	node, nodePath := nodeWithORT(t)
	script := readmeSnippet(t, "run_export.js")
	pixels := writeF32(t, e.dir, "pixels.f32", e.f.raw)
	out, err := runCmd(node, []string{"NODE_PATH=" + nodePath}, script, e.path, pixels, fmt.Sprint(e.f.n))
	if err != nil {
		return nil, fmt.Errorf("node (README snippet): %w", err)
	}
	var res struct {
		Classes       []string    `json:"classes"`
		Top           []string    `json:"top"`
		Probabilities [][]float32 `json:"probabilities"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("node output %q: %w", out, err)
	}
	if strings.Join(res.Classes, "|") != strings.Join(e.h.Classes, "|") || len(res.Top) != e.f.n {
		t.Errorf("node gave classes %q and %d top classes", res.Classes, len(res.Top))
	}
	var got []float32
	for _, r := range res.Probabilities {
		got = append(got, r...)
	}
	return got, nil
}

// opencvScript runs an export in OpenCV's DNN module on a float32 tensor
// file and prints the probabilities as JSON.
const opencvScript = `
import json, sys
import numpy as np, cv2
model, feed, name, shape = sys.argv[1], sys.argv[2], sys.argv[3], [int(v) for v in sys.argv[4].split(",")]
x = np.fromfile(feed, dtype="<f4").reshape(shape)
net = cv2.dnn.readNetFromONNX(model)
net.setInput(x, name)
p = net.forward("probabilities")
print(json.dumps({"version": cv2.__version__, "probabilities": p.astype(float).ravel().tolist()}))
`

// debianPython returns /usr/bin/python3 when it can import mods, or skips
// (fails under CI) saying which Debian package is missing.
func debianPython(t *testing.T, mods, pkgs string) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import "+mods).CombinedOutput(); err != nil {
		testasset.Skip(t, "%s cannot import %s (apt-get install %s): %s", py, mods, pkgs, lastLine(out))
	}
	return py
}

func runOpenCV(t *testing.T, e *exportFile) ([]float32, error) {
	py := debianPython(t, "numpy, cv2", "python3-numpy python3-opencv")
	s := e.f.spec
	shape := fmt.Sprintf("%d,%d,%d,%d", e.f.n, s.Channels, s.Height, s.Width)
	if s.Layout == "NHWC" {
		shape = fmt.Sprintf("%d,%d,%d,%d", e.f.n, s.Height, s.Width, s.Channels)
	}
	feed := writeF32(t, e.dir, "feed.f32", e.feed)
	out, err := runCmd(py, nil, "-c", opencvScript, e.path, feed, e.meta.InputName, shape)
	if err != nil {
		return nil, fmt.Errorf("OpenCV DNN cannot run the export: %w", err)
	}
	var res struct {
		Version       string    `json:"version"`
		Probabilities []float32 `json:"probabilities"`
	}
	if err := json.Unmarshal(lastJSONLine(out), &res); err != nil {
		return nil, fmt.Errorf("opencv output %q: %w", out, err)
	}
	if !strings.HasPrefix(res.Version, "4.6.") {
		t.Logf("OpenCV %s (the README's claims are about 4.6)", res.Version)
	}
	return res.Probabilities, nil
}

// checkerScript runs onnx.checker's full check and strict shape inference
// and prints the inferred probabilities shape.
const checkerScript = `
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
out = [o for o in inferred.graph.output if o.name == "probabilities"][0]
print(onnx.__version__, [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim])
`

func runChecker(t *testing.T, e *exportFile) ([]float32, error) {
	py := debianPython(t, "onnx", "python3-onnx")
	out, err := runCmd(py, nil, "-c", checkerScript, e.path)
	if err != nil {
		return nil, fmt.Errorf("onnx.checker refused the export: %w", err)
	}
	want := fmt.Sprintf("['N', %d]", e.f.k)
	if e.meta.FixedBatch > 0 {
		want = fmt.Sprintf("[%d, %d]", e.meta.FixedBatch, e.f.k)
	}
	if !strings.Contains(string(out), want) {
		t.Errorf("inferred probabilities shape: %s, want %s", bytes.TrimSpace(out), want)
	}
	return nil, nil
}

// runCmd runs name with args (and extra environment) and returns its
// stdout; the error carries the last lines of stderr.
func runCmd(name string, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, tail(stderr.String(), 6))
	}
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(b []byte) string { return tail(string(b), 1) }

// lastJSONLine returns the last line of out that starts with '{' (OpenCV
// may print warnings on stdout).
func lastJSONLine(out []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if bytes.HasPrefix(lines[i], []byte("{")) {
			return lines[i]
		}
	}
	return out
}

var (
	regMu  sync.Mutex
	regFix = map[string]*fixture{}
)

// torchvisionScript exports a torchvision architecture with random weights
// at opset 13, input 96x96, dynamic batch.
const torchvisionScript = `
import sys, torch, torchvision
torch.manual_seed(0)
m = getattr(torchvision.models, sys.argv[1])(weights=None)
# Random weights: let batch normalisation see data once, or the activations
# saturate and every image gets the same features.
for bn in m.modules():
    if isinstance(bn, torch.nn.BatchNorm2d):
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the batches below
m.train()
with torch.no_grad():
    for _ in range(4):
        m(torch.rand(16, 3, 96, 96) * 4 - 2)
m.eval()
torch.onnx.export(m, torch.randn(1, 3, 96, 96), sys.argv[2], opset_version=13,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
`

// torchvision returns a fixture function for a torchvision architecture
// exported by Debian's python3-torch (skipped, or failed under CI, when it
// is absent).
func torchvision(arch string) func(testing.TB) *fixture {
	return func(t testing.TB) *fixture {
		t.Helper()
		ortReady(t)
		regMu.Lock()
		defer regMu.Unlock()
		key := "torchvision-" + arch
		if f := regFix[key]; f != nil {
			return f
		}
		const py = "/usr/bin/python3"
		if out, err := exec.Command(py, "-c", "import torch, torchvision").CombinedOutput(); err != nil {
			testasset.Skip(t, "%s cannot import torch, torchvision (apt-get install python3-torch python3-torchvision): %s", py, lastLine(out))
		}
		dir, err := os.MkdirTemp("", "headtune-torchvision-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, arch+".onnx")
		if out, err := runCmd(py, nil, "-c", torchvisionScript, arch, p); err != nil {
			t.Fatalf("torch.onnx.export %s: %v %s", arch, err, out)
		}
		m, err := backbone.ReadModelFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := newFixture(m, key, "imagenet", 0, registryImages, registryClasses)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		regFix[key] = f
		return f
	}
}

// registryImages and registryClasses size the registry-built fixtures: a
// few images of the full input size (InceptionV3 is 299x299).
const (
	registryImages  = 6
	registryClasses = 5
)

// registryFixture builds arch from its pinned npm tarball (fetched with npm
// into the test cache, as models/tfjs's tests do) and makes a fixture with
// the preprocessing the builder states.
func registryFixture(t testing.TB, arch string) *fixture {
	t.Helper()
	ortReady(t)
	regMu.Lock()
	defer regMu.Unlock()
	if f := regFix[arch]; f != nil {
		return f
	}
	tgz := npmTarball(t, arch)
	m, info, err := tfjs.Build(arch, tgz)
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFixtureSpec(m, arch, info.FeatureTensor, info.Spec(), true, 0, registryImages, registryClasses)
	if err != nil {
		t.Fatalf("%s: %v", arch, err)
	}
	regFix[arch] = f
	return f
}

// npmTarball returns the pinned npm tarball arch is built from (see
// testnpm.Tarball).
func npmTarball(t testing.TB, arch string) string {
	t.Helper()
	spec, err := tfjs.PackageSpec(arch)
	if err != nil {
		t.Fatal(err)
	}
	return testnpm.Tarball(t, spec)
}
