package export

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models/tfjs"
)

// readmeSnippet extracts the fenced code block that follows the line
// "<!-- snippet: NAME -->" in the repository's README.md, exactly as
// printed, writes it to a temporary file called NAME and returns its path.
// The README is the only copy of the snippets, so what users read is what
// the tests run.
func readmeSnippet(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	code, err := extractSnippet(readme, name)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, code, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// extractSnippet returns the body of the first fenced block after the
// marker line for name.
func extractSnippet(doc []byte, name string) ([]byte, error) {
	marker := "<!-- snippet: " + name + " -->"
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	state := 0 // 0: looking for the marker, 1: for the fence, 2: in the block
	var fence string
	var out bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		switch state {
		case 0:
			if strings.TrimSpace(line) == marker {
				state = 1
			}
		case 1:
			if s := strings.TrimSpace(line); strings.HasPrefix(s, "```") {
				fence = s[:strings.LastIndex(s, "`")+1]
				state = 2
			} else if s != "" {
				return nil, fmt.Errorf("%s is not followed by a fenced code block", marker)
			}
		case 2:
			if strings.TrimSpace(line) == fence {
				return out.Bytes(), nil
			}
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	if state == 0 {
		return nil, fmt.Errorf("no %s marker", marker)
	}
	return nil, fmt.Errorf("the block after %s is not closed", marker)
}

func TestExtractSnippet(t *testing.T) {
	doc := []byte("text\n<!-- snippet: a.py -->\n\n```python\nprint(1)\n\n  x = '```'\n```\nafter\n<!-- snippet: b.js -->\nprose\n```js\n```\n")
	got, err := extractSnippet(doc, "a.py")
	if err != nil || string(got) != "print(1)\n\n  x = '```'\n" {
		t.Errorf("a.py: %q, %v", got, err)
	}
	if _, err := extractSnippet(doc, "b.js"); err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("b.js: %v, want a missing-block error", err)
	}
	if _, err := extractSnippet(doc, "c.sh"); err == nil {
		t.Error("c.sh: no error for a missing marker")
	}
}

// writePNG writes a w x h photo-like test image (smooth gradients and
// edges, no noise PNG would not keep) and returns its path.
func writePNG(t *testing.T, dir string, w, h, seed int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := func(c int) uint8 {
				f := 128 + 90*math.Sin(float64(x*(c+1)+seed*7)/17) + 30*math.Cos(float64(y*(seed+c+1))/11)
				if (x/23+y/19+seed)%3 == c {
					f += 40
				}
				return uint8(min(255, max(0, f)))
			}
			img.Set(x, y, color.RGBA{v(0), v(1), v(2), 255})
		}
	}
	p := filepath.Join(dir, fmt.Sprintf("photo%d.png", seed))
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPythonSnippet runs the README's Python snippet (extracted as printed)
// with Debian's python3 on PNG photos, for exports with each resize mode
// (squash, crop, letterbox) with and without --with-preprocessing, and
// compares every printed probability with headtune's own path: imaging's
// decode, resize and normalisation, the cut backbone in ONNX Runtime and
// head.PredictBatch. The snippet uses OpenCV's DNN module where Python
// onnxruntime is absent (Debian ships none).
func TestPythonSnippet(t *testing.T) {
	ortReady(t)
	py := debianPython(t, "numpy, onnx, PIL, cv2", "python3-numpy python3-onnx python3-pil python3-opencv")
	script := readmeSnippet(t, "run_export.py")
	dir := t.TempDir()
	photos := []string{writePNG(t, dir, 200, 150, 1), writePNG(t, dir, 97, 160, 2)}
	for _, tc := range []struct {
		name    string
		fixture func(testing.TB) *fixture
		opt     Options
	}{
		{"mobilenetv2-block10-squash", registry(tfjs.ArchMobileNetV2), Options{}},
		{"face-expression-letterbox/pixels", registry(tfjs.ArchFaceExpression), Options{WithPreprocessing: true}},
		{"resnet-crop/pixels", testModel("resnet", 0), Options{WithPreprocessing: true}},
		{"keras-nhwc-crop", testModel("keras", 0), Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fixture(t)
			h := handHead(f, []int{8}, 1.3)
			m, err := Build(f.cut, f.spec, h, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			model := filepath.Join(t.TempDir(), "model.onnx")
			if err := Write(model, m); err != nil {
				t.Fatal(err)
			}
			cutData, err := backbone.MarshalModel(f.cut)
			if err != nil {
				t.Fatal(err)
			}
			for _, photo := range photos {
				// headtune's path.
				img, err := imaging.DecodeFile(photo, imaging.DecodeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				x := make([]float32, f.spec.TensorLen())
				if err := f.spec.Fill(img, x, new(imaging.Scratch)); err != nil {
					t.Fatal(err)
				}
				feats, err := runModel(cutData, f.input, f.spec, x, 1, []string{OutputFeatures}, []int{f.d})
				if err != nil {
					t.Fatal(err)
				}
				want := make([]float32, f.k)
				if err := h.PredictBatch(feats[0], 1, want); err != nil {
					t.Fatal(err)
				}
				// The snippet.
				out, err := runCmd(py, nil, script, model, photo)
				if err != nil {
					t.Fatalf("README Python snippet: %v", err)
				}
				got := map[string]float64{}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					name, p, ok := strings.Cut(line, "\t")
					v, err := strconv.ParseFloat(p, 64)
					if !ok || err != nil {
						t.Fatalf("snippet printed %q", line)
					}
					got[name] = v
				}
				worst := 0.0
				for i, c := range h.Classes {
					v, ok := got[c]
					if !ok {
						t.Fatalf("snippet printed no probability for %q: %s", c, out)
					}
					worst = max(worst, math.Abs(v-float64(want[i])))
				}
				t.Logf("%s: max |snippet - headtune| = %.3g over %d classes", filepath.Base(photo), worst, f.k)
				if worst > consumerTol {
					t.Errorf("%s: the README snippet's probabilities differ from headtune's by %.3g > %g", filepath.Base(photo), worst, consumerTol)
				}
			}
		})
	}
}
