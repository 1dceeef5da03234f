package darknet

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	onnxruntime "github.com/yalue/onnxruntime_go"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/internal/testasset"
)

// cfgDir is where Debian's darknet package keeps its cfgs
// ($HEADTUNE_DARKNET_CFG overrides).
func cfgDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("HEADTUNE_DARKNET_CFG")
	if d == "" {
		d = "/usr/share/darknet/cfg"
	}
	if _, err := os.Stat(filepath.Join(d, "yolov3.cfg")); err != nil {
		testasset.Skip(t, "Darknet cfgs not found in %s (apt-get install darknet, or set HEADTUNE_DARKNET_CFG): %v", d, err)
	}
	return d
}

// python3 is Debian's interpreter with python3-opencv.
func python3(t testing.TB) string {
	t.Helper()
	p := os.Getenv("HEADTUNE_PYTHON3")
	if p == "" {
		p = "/usr/bin/python3"
	}
	if err := exec.Command(p, "-c", "import cv2, numpy").Run(); err != nil {
		testasset.Skip(t, "%s cannot import cv2 (apt-get install python3-opencv): %v", p, err)
	}
	return p
}

var netSize = regexp.MustCompile(`(?m)^\s*(width|height)\s*=.*$`)

// resizedCfg copies a cfg with the [net] input size set to w x h, so that
// the importer and OpenCV read the same text.
func resizedCfg(t testing.TB, src, dir string, w, h int) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if w > 0 {
		n := 0
		text = netSize.ReplaceAllStringFunc(text, func(s string) string {
			n++
			if n > 2 { // only [net]'s, which come first
				return s
			}
			if strings.HasPrefix(strings.TrimSpace(s), "width") {
				return fmt.Sprintf("width=%d", w)
			}
			return fmt.Sprintf("height=%d", h)
		})
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// withoutTrailingHead writes a copy of a cfg cut before its last [region]
// or [yolo] section.
func withoutTrailingHead(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := max(strings.LastIndex(text, "[region]"), strings.LastIndex(text, "[yolo]"))
	if i < 0 {
		t.Fatalf("%s has no head to cut", path)
	}
	dst := path + ".nohead.cfg"
	if err := os.WriteFile(dst, []byte(text[:i]), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeRandomWeights writes a .weights file for cfg with random values:
// biases and batch-norm means in [-0.1, 0.1], scales and variances in
// [0.5, 1.5], weights uniform with variance 2/fan-in (activations keep
// their scale through leaky layers). extra adds that many surplus floats.
func writeRandomWeights(t testing.TB, cfg *Config, opts Options, path string, h Header, seed uint64, extra int) int64 {
	t.Helper()
	blobs, err := Layout(cfg, opts)
	if err != nil {
		t.Fatalf("layout %s: %v", cfg.Name, err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := WriteHeader(w, h); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var buf [4]byte
	put := func(v float32) {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
		w.Write(buf[:])
	}
	var total int64
	outs := 0
	for _, b := range blobs {
		lo, hi := float32(-0.1), float32(0.1)
		switch b.Kind {
		case "bias":
			outs = b.N
		case "scale", "variance":
			lo, hi = 0.5, 1.5
		case "weight":
			a := float32(math.Sqrt(6 / (float64(b.N) / float64(outs))))
			lo, hi = -a, a
		}
		for i := 0; i < b.N; i++ {
			put(lo + (hi-lo)*rng.Float32())
		}
		total += int64(b.N)
	}
	for i := 0; i < extra; i++ {
		put(0)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return total
}

func parseCfgFile(t testing.TB, path string) *Config {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseConfig(f, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// refOutputs runs OpenCV's Darknet reader and returns each layer's output
// by Darknet layer number.
func refOutputs(t testing.TB, py, cfg, weights string, in []float32, n, c, h, w int) map[int][]float32 {
	t.Helper()
	dir := t.TempDir()
	inPath := filepath.Join(dir, "input.bin")
	raw := make([]byte, 4*len(in))
	for i, v := range in {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(inPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	cmd := exec.Command(py, "testdata/opencv_ref.py", cfg, weights, inPath,
		strconv.Itoa(n), strconv.Itoa(c), strconv.Itoa(h), strconv.Itoa(w), outDir)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "OPENCV_FOR_THREADS_NUM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("OpenCV reference: %v\n%s", err, out)
	}
	list, err := os.ReadFile(filepath.Join(outDir, "layers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	res := map[int][]float32{}
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		i, err := strconv.Atoi(strings.Fields(line)[0])
		if err != nil {
			t.Fatalf("layers.txt: %q", line)
		}
		b, err := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("layer_%d.bin", i)))
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, len(b)/4)
		for k := range v {
			v[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
		res[i] = v
	}
	return res
}

// runModel runs m on in ([n, c, h, w]) through ONNX Runtime and returns
// the named outputs, which it first declares as graph outputs.
func runModel(t testing.TB, m *onnxpb.ModelProto, input string, in []float32, n int, inShape []int64, outputs []string, sizes []int) [][]float32 {
	t.Helper()
	m = backbone.ShallowCopy(m)
	g := backbone.ShallowCopy(m.Graph)
	m.Graph = g
	declared := map[string]bool{}
	for _, o := range g.Output {
		declared[o.GetName()] = true
	}
	g.Output = append([]*onnxpb.ValueInfoProto(nil), g.Output...)
	for _, o := range outputs {
		if !declared[o] {
			elem := int32(onnxpb.TensorProto_FLOAT)
			g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: &o, Type: &onnxpb.TypeProto{
				Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: &elem}}}})
			declared[o] = true
		}
	}
	data, err := backbone.MarshalModel(m)
	if err != nil {
		t.Fatal(err)
	}
	so, err := onnxruntime.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	so.SetIntraOpNumThreads(1)
	so.SetInterOpNumThreads(1)
	sess, err := onnxruntime.NewDynamicAdvancedSessionWithONNXData(data, []string{input}, outputs, so)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	x, err := onnxruntime.NewTensor(onnxruntime.NewShape(append([]int64{int64(n)}, inShape...)...), in)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Destroy()
	vals := make([]onnxruntime.Value, len(outputs))
	if err := sess.Run([]onnxruntime.Value{x}, vals); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := make([][]float32, len(outputs))
	for i, v := range vals {
		ft, ok := v.(*onnxruntime.Tensor[float32])
		if !ok {
			t.Fatalf("output %s is not float32", outputs[i])
		}
		res[i] = append([]float32(nil), ft.GetData()...)
		if len(res[i]) != n*sizes[i] {
			t.Errorf("output %s: %d values, want %d", outputs[i], len(res[i]), n*sizes[i])
		}
		v.Destroy()
	}
	return res
}

// relErr is max|a-b| / max|b|: the error relative to the tensor's scale.
func relErr(a, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = max(m, math.Abs(float64(b[i])))
	}
	if m == 0 {
		return d
	}
	return d / m
}
