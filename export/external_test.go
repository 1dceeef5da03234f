package export

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/internal/testasset"
)

// nodeWithORT returns the node binary and a NODE_PATH under which
// require('onnxruntime-node') works: $HEADTUNE_NODE_PATH, $NODE_PATH, or
// the .deps/node_modules that scripts/setup.sh unpacks (npm pack, no
// install scripts). Without one it skips (fails under CI=true). It never
// installs anything.
func nodeWithORT(t *testing.T) (node, nodePath string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testasset.Skip(t, "node is not installed; the Node snippet was not run")
	}
	// .deps/node/node_modules is where .ci/run unpacks onnxruntime-node
	// (scripts/lib.sh npm_unpack).
	local := ""
	if root, err := testasset.RepoRoot(); err == nil {
		local = filepath.Join(root, ".deps", "node", "node_modules")
	}
	for _, p := range []string{os.Getenv("HEADTUNE_NODE_PATH"), os.Getenv("NODE_PATH"), local} {
		if p == "" {
			continue
		}
		cmd := exec.Command(node, "-e", "require('onnxruntime-node')")
		cmd.Env = append(os.Environ(), "NODE_PATH="+p)
		if err := cmd.Run(); err == nil {
			return node, p
		}
	}
	testasset.Skip(t, "onnxruntime-node is not available; the Node snippet was not run. Prepare it once with "+
		"`bash -c '. scripts/lib.sh; npm_unpack .deps/node onnxruntime-common@1.24.1 onnxruntime-node@1.24.1'` "+
		"(as .ci/run does), or set HEADTUNE_NODE_PATH to a node_modules folder that has it")
	return "", ""
}

// TestNodeSnippet runs the README's Node snippet (extracted from README.md
// as printed) on
// exports with and without in-graph preprocessing, fed the same raw pixels,
// and compares its probabilities with head.PredictBatch.
func TestNodeSnippet(t *testing.T) {
	ortReady(t) // the reference numbers come from the Go side's features
	node, nodePath := nodeWithORT(t)
	script := readmeSnippet(t, "run_export.js")
	for _, c := range []parityCase{parityCases[2], parityCases[4], parityCases[5]} {
		t.Run(c.name, func(t *testing.T) {
			f, h, m := c.build(t)
			dir := t.TempDir()
			model := filepath.Join(dir, "model.onnx")
			if err := Write(model, m); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			binary.Write(&buf, binary.LittleEndian, f.raw)
			pixels := filepath.Join(dir, "pixels.f32")
			if err := os.WriteFile(pixels, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(node, script, model, pixels, fmt.Sprint(f.n))
			cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node run_export.js: %v: %s", err, stderr.String())
			}
			var res struct {
				Classes       []string    `json:"classes"`
				Top           []string    `json:"top"`
				Probabilities [][]float32 `json:"probabilities"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("node output %q: %v", out, err)
			}
			if len(res.Probabilities) != f.n || strings.Join(res.Classes, "|") != strings.Join(h.Classes, "|") {
				t.Fatalf("node gave %d rows, classes %q", len(res.Probabilities), res.Classes)
			}
			want := make([]float32, f.n*f.k)
			if err := h.PredictBatch(f.feats, f.n, want); err != nil {
				t.Fatal(err)
			}
			var got []float32
			for _, r := range res.Probabilities {
				got = append(got, r...)
			}
			d := maxAbsDiff(got, want)
			t.Logf("onnxruntime-node vs head.PredictBatch: max |difference| = %.3g (with_preprocessing=%v)", d, c.opt.WithPreprocessing)
			if d > parityTol {
				t.Errorf("node probabilities differ by %.3g > %g", d, parityTol)
			}
			if c.head == head.KindLinear && len(res.Top) != f.n {
				t.Errorf("top has %d entries", len(res.Top))
			}
		})
	}
}
