package darknet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
)

const tinyCfg = `[net]
# comment
width = 32
height=32
channels=3
letter_box=1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=6
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=1,1,2,2
classes=1
num=2
`

func parseString(t *testing.T, s string) *Config {
	t.Helper()
	c, err := ParseConfig(strings.NewReader(s), "net.cfg")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseConfig(t *testing.T) {
	c := parseString(t, tinyCfg+"\n[convolutional]\nfilters=1\nfilters=2\n")
	if got := len(c.Sections); got != 6 {
		t.Fatalf("%d sections, want 6", got)
	}
	if w, _ := c.Net().Int("width", 0); w != 32 {
		t.Errorf("width %d, want 32 (spaces around = are dropped)", w)
	}
	last := c.Sections[5]
	if f, _ := last.Int("filters", 0); f != 1 {
		t.Errorf("repeated key: got %d, want the first value 1 (Darknet's rule)", f)
	}
	if last.Line != 33 {
		t.Errorf("section line %d, want 33", last.Line)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "no sections"},
		{"[convolutional]\nfilters=1\n", "starts with [net]"},
		{"width=3\n[net]\n", "before the first [section]"},
		{"[net]\nwidth\n", "expected key=value"},
		{"[net\n", "malformed section header"},
		{"[net]\n=3\n", "expected key=value"},
	} {
		_, err := ParseConfig(strings.NewReader(tc.in), "bad.cfg")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.cfg") {
			t.Errorf("ParseConfig(%q) = %v, want an error naming bad.cfg with %q", tc.in, err, tc.want)
		}
	}
}

// weightsFor writes random weights for cfg text to a buffer.
func weightsFor(t *testing.T, cfgText string, h Header, extra int) ([]byte, int64) {
	t.Helper()
	c := parseString(t, cfgText)
	p := filepath.Join(t.TempDir(), "w")
	n := writeRandomWeights(t, c, Options{}, p, h, 1, extra)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data, n
}

func TestBuildSmall(t *testing.T) {
	data, n := weightsFor(t, tinyCfg, Header{Major: 0, Minor: 2, Seen: 1 << 40}, 0)
	// bias+scale+mean+var (4x4) + 4*3*3*3 weights; bias 6 + 6*4 weights.
	if want := int64(16 + 108 + 6 + 24); n != want {
		t.Fatalf("layout has %d values, want %d", n, want)
	}
	m, info, err := Build(parseString(t, tinyCfg), bytes.NewReader(data), "net.weights", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Header.Seen != 1<<40 || info.Header.SeenBits != 64 {
		t.Errorf("header %+v: want a 64-bit seen of 2^40", info.Header)
	}
	if len(info.Outputs) != 1 || info.Outputs[0] != "layer_2" || len(info.Heads) != 1 {
		t.Errorf("outputs %v heads %v: want the yolo head's input layer_2", info.Outputs, info.Heads)
	}
	want := imaging.Spec{Width: 32, Height: 32, Resize: imaging.ResizeLetterbox, Interpolation: "bilinear", Channels: 3,
		ChannelOrder: "RGB", Layout: "NCHW", Scale: 1.0 / 255, Std: [3]float32{1, 1, 1}, Background: [3]uint8{128, 128, 128}}
	if got := info.Spec(); got != want {
		t.Errorf("spec %+v, want %+v", got, want)
	}
	if err := info.Spec().Validate(); err != nil {
		t.Error(err)
	}
	if _, err := backbone.MarshalModel(m); err != nil {
		t.Fatal(err)
	}
	// Classifiers without letter_box stretch.
	cls := strings.Replace(strings.Replace(tinyCfg, "letter_box=1\n", "", 1), "[yolo]", "[softmax]\n[cost]\n#", 1)
	cls = strings.Split(cls, "#\nmask")[0]
	d2, _ := weightsFor(t, cls, Header{Minor: 1}, 0)
	_, info2, err := Build(parseString(t, cls), bytes.NewReader(d2), "c.weights", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info2.Letterbox || info2.Header.SeenBits != 32 {
		t.Errorf("classifier: letterbox %v seen bits %d, want stretch and a 32-bit seen (version 0.1)", info2.Letterbox, info2.Header.SeenBits)
	}
}

func TestRefusesMismatchedWeights(t *testing.T) {
	data, n := weightsFor(t, tinyCfg, Header{Major: 0, Minor: 2}, 0)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)-4], "file ends early while reading 24 weight values of layer 2 (net.cfg line 20) after 130 values"},
		{"header only", data[:10], "header: file ends early"},
		{"surplus", append(append([]byte(nil), data...), make([]byte, 8)...), "8 bytes left after the 154 weights"},
		{"transposed", append([]byte{0xe8, 3, 0, 0}, data[4:]...), "transposed connected weights"},
	} {
		_, _, err := Build(parseString(t, tinyCfg), bytes.NewReader(tc.data), "net.weights", Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "net.weights") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line starting with net.weights and containing %q", tc.name, err, tc.want)
		}
	}
	_ = n
}

func TestRefusesUnsupported(t *testing.T) {
	for _, tc := range []struct{ edit, want string }{
		{"[local]\nfilters=2\n", "net.cfg:33 [local] (layer 4): layer type [local] is not supported"},
		{"[convolutional]\nfilters=2\nsize=1\nbinary=1\n", "option binary is not supported"},
		{"[convolutional]\nfilters=2\nsize=1\nactivation=gelu\n", "activation=gelu is not supported"},
		{"[convolutional]\nfilters=2\nsize=1\nfrobnicate=3\n", "option frobnicate is not supported"},
		{"[route]\nlayers=-9\n", "refers to layer -5, which is not an earlier layer"},
		{"[route]\nlayers=-1\n", "refers to layer 3 ([yolo]), which has no output"},
		{"[shortcut]\nfrom=-3\n", "adds layer output 4x16x16 to 6x16x16"},
		{"[softmax]\ntree=data/9k.tree\n", "hierarchical softmax (tree) is not supported"},
		{"[convolutional]\nfilters=2\nsize=33\n", "does not fit the 16x16 input"},
	} {
		text := tinyCfg + "\n" + tc.edit
		_, err := Layout(parseString(t, text), Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.edit, err, tc.want)
		}
	}
}

func TestDarknet9000TreeRefused(t *testing.T) {
	dir := cfgDir(t)
	_, err := Layout(parseCfgFile(t, filepath.Join(dir, "darknet9000.cfg")), Options{})
	if err == nil || !strings.Contains(err.Error(), "darknet9000.cfg:199 [softmax] (layer 25): hierarchical softmax") {
		t.Fatalf("got %v, want a refusal of the tree softmax naming the line", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(tinyCfg))
	f.Add([]byte("[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=-1,-2\ngroups=2\n[upsample]\nstride=-2\n[reorg]\nstride=0\n[maxpool]\nsize=0\n"))
	f.Add([]byte("[net]\nwidth=8\nheight=8\nchannels=1\n[connected]\noutput=3\n[softmax]\n[convolutional]\nfilters=2\ngroups=2\n[avgpool]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(bytes.NewReader(data), "fuzz.cfg")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.cfg") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(c.Sections) == 0 || (c.Net().Type != "net" && c.Net().Type != "network") {
			t.Fatalf("accepted a cfg without [net]: %+v", c.Sections)
		}
		// Translation must not panic or allocate without bound: cap the
		// input size the fuzzer may ask for.
		if w, _ := c.Net().Int("width", 0); w > 64 {
			return
		}
		if h, _ := c.Net().Int("height", 0); h > 64 {
			return
		}
		for _, s := range c.Layers() {
			for _, k := range []string{"filters", "output", "size", "stride", "padding"} {
				if v, _ := s.Int(k, 0); v > 16 {
					return
				}
			}
		}
		blobs, err := Layout(c, Options{})
		if err != nil {
			return
		}
		for _, b := range blobs {
			if b.N < 0 {
				t.Fatalf("negative blob %+v", b)
			}
		}
	})
}

// reorgCfg joins a reorganised 16x16 map with a pooled one (YOLOv2's
// passthrough).
const reorgCfg = `[net]
width=16
height=16
channels=3

[convolutional]
filters=8
size=3
pad=1
activation=relu

[maxpool]
size=2
stride=2

[route]
layers=-2

[reorg]
stride=2

[route]
layers=-1,-3

[upsample]
stride=2
`

// classifierCfg is a small classifier with connected layers.
const classifierCfg = `[net]
width=16
height=16
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=swish

[maxpool]
size=2
stride=1

[connected]
batch_normalize=1
output=12
activation=leaky

[dropout]
probability=.5

[connected]
output=5
activation=linear

[softmax]
`

// TestImportsPassONNXChecker runs onnx.checker (python3-onnx) with full
// shape inference on imported graphs of every layer kind. (reorgCfg and
// the classifier are also compared with OpenCV in TestSmallMatchesOpenCV.)
func TestImportsPassONNXChecker(t *testing.T) {
	py := python3(t)
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testasset.Skip(t, "%s cannot import onnx (apt-get install python3-onnx): %v", py, err)
	}
	small := map[string]string{"reorg.cfg": reorgCfg, "classifier.cfg": classifierCfg,
		"scaled.cfg": reorgCfg + "scale=0.5\n"}
	paths := []string{"testdata/yolov4-style.cfg", "testdata/yolov4-tiny-style.cfg"}
	dir := t.TempDir()
	for name, text := range small {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	for i, p := range paths {
		cfg := parseCfgFile(t, p)
		w := filepath.Join(dir, fmt.Sprintf("%d.weights", i))
		writeRandomWeights(t, cfg, Options{}, w, Header{Minor: 2}, 1, 0)
		m, _, err := BuildFiles(p, w, Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		onnxPath := filepath.Join(dir, fmt.Sprintf("%d.onnx", i))
		if err := backbone.WriteModelFile(onnxPath, m); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", onnxPath).CombinedOutput()
		if err != nil {
			t.Errorf("%s: onnx.checker: %v\n%s", p, err, out)
		}
	}
}
