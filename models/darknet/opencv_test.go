package darknet

import (
	"fmt"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/headtune/headtune/backbone"
)

// darknetNets are the YOLO and Darknet cfgs Debian's darknet package ships
// (plus testdata/ cfgs in the YOLOv4 style, which Debian does not ship),
// with the input size the test runs them at. The detectors and the
// Darknet-19/53 classifiers are fully convolutional (global average
// pooling, no [connected] layer), so a smaller multiple of 32 than the
// cfg's 416/608/256 gives the same per-pixel computation at a fraction of
// the cost; feature is the tensor feature detection must choose.
var darknetNets = []struct {
	cfg     string
	size    int // 0: the cfg's own
	big     bool
	feature string
	// cvNoHead gives OpenCV the cfg without its trailing detection head,
	// which it cannot read (YOLO9000's hierarchical [region]); the head is
	// cut by the importer anyway.
	cvNoHead bool
}{
	{cfg: "yolov2-tiny.cfg", size: 128, feature: "layer_13"},
	{cfg: "yolov2-tiny-voc.cfg", size: 128, feature: "layer_13"},
	{cfg: "yolov2.cfg", size: 128, feature: "layer_29"},
	{cfg: "yolov2-voc.cfg", size: 128, feature: "layer_29"},
	{cfg: "yolo9000.cfg", size: 128, big: true, feature: "layer_22", cvNoHead: true},
	{cfg: "yolov3-tiny.cfg", size: 128, feature: "layer_13"},
	{cfg: "yolov3.cfg", size: 128, big: true, feature: "layer_79"},
	{cfg: "yolov3-voc.cfg", size: 128, big: true, feature: "layer_79"},
	{cfg: "yolov3-spp.cfg", size: 128, big: true, feature: "layer_86"},
	{cfg: "yolov3-openimages.cfg", size: 128, big: true, feature: "layer_79"},
	{cfg: "darknet19.cfg", size: 128, feature: "layer_22"},
	{cfg: "darknet19_448.cfg", size: 128, feature: "layer_22"},
	{cfg: "darknet53.cfg", size: 128, big: true, feature: "layer_75"},
	{cfg: "darknet53_448.cfg", size: 128, big: true, feature: "layer_75"},
	{cfg: "darknet.cfg", size: 128, feature: "layer_13"},
	{cfg: "tiny.cfg", size: 128, feature: "layer_18"},
	{cfg: "testdata/yolov4-tiny-style.cfg", size: 128, feature: "layer_27"},
	{cfg: "testdata/yolov4-style.cfg", size: 128, feature: "layer_21"},
}

// TestMatchesOpenCV imports each cfg with random weights written in
// Darknet's format and compares every layer's output, the raw tensors that
// fed the cut detection heads, and the pooled features with OpenCV's
// Darknet reader on the same input, to 1e-4 of each tensor's largest
// magnitude.
func TestMatchesOpenCV(t *testing.T) {
	dir := cfgDir(t)
	py := python3(t)
	orttest.Init(t)
	for i, nt := range darknetNets {
		t.Run(filepath.Base(nt.cfg), func(t *testing.T) {
			if nt.big && testing.Short() {
				t.Skip("SKIP: large network in -short mode")
			}
			src := filepath.Join(dir, nt.cfg)
			if filepath.Dir(nt.cfg) == "testdata" {
				src = nt.cfg
			}
			tmp := t.TempDir()
			cfgPath := resizedCfg(t, src, tmp, nt.size, nt.size)
			matchOpenCV(t, py, cfgPath, i, nt.feature, nt.cvNoHead)
		})
	}
}

// matchOpenCV writes random weights for the cfg at cfgPath (seed i, both
// header layouts alternating), imports it, and compares every layer's
// output and the pooled features with OpenCV's Darknet reader; the
// detected feature tensor must be feature.
func matchOpenCV(t *testing.T, py, cfgPath string, i int, feature string, cvNoHead bool) {
	tmp := t.TempDir()
	cfg := parseCfgFile(t, cfgPath)
	wPath := filepath.Join(tmp, "net.weights")
	hdr := Header{Major: 0, Minor: 2, Revision: 5, Seen: 32013312}
	if i%2 == 1 { // both header layouts
		hdr = Header{Major: 0, Minor: 1, Revision: 0, Seen: 64000}
	}
	want := writeRandomWeights(t, cfg, Options{}, wPath, hdr, uint64(i+1), 0)

	m, info, err := BuildFiles(cfgPath, wPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Params != want {
		t.Fatalf("read %d weights, wrote %d", info.Params, want)
	}
	if info.Header.Seen != hdr.Seen || info.Header.Minor != hdr.Minor {
		t.Fatalf("header %+v, wrote %+v", info.Header, hdr)
	}

	const n = 2
	c, h, w := info.Channels, info.Height, info.Width
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	in := make([]float32, n*c*h*w)
	for k := range in {
		in[k] = rng.Float32()
	}
	cvCfg := cfgPath
	if cvNoHead {
		cvCfg = withoutTrailingHead(t, cfgPath)
	}
	ref := refOutputs(t, py, cvCfg, wPath, in, n, c, h, w)

	var names []string
	var sizes []int
	var idx []int
	for li, l := range info.Layers {
		if l.Tensor == "" {
			continue
		}
		if _, ok := ref[li]; !ok {
			t.Errorf("OpenCV has no output for layer %d (%s)", li, l.Type)
			continue
		}
		names = append(names, l.Tensor)
		sizes = append(sizes, l.C*l.H*l.W)
		idx = append(idx, li)
	}
	got := runModel(t, m, info.Input, in, n, []int64{int64(c), int64(h), int64(w)}, names, sizes)
	worst, worstAt := 0.0, ""
	for k, li := range idx {
		r := ref[li]
		if len(r) != len(got[k]) {
			t.Fatalf("layer %d (%s): %d values, OpenCV has %d", li, info.Layers[li].Type, len(got[k]), len(r))
		}
		e := relErr(got[k], r)
		if e > worst {
			worst, worstAt = e, names[k]
		}
		if e > 1e-4 {
			t.Errorf("layer %d (%s, %dx%dx%d): relative error %.3g", li, info.Layers[li].Type, info.Layers[li].C, info.Layers[li].H, info.Layers[li].W, e)
		}
	}
	t.Logf("%d layers, %d weights, outputs %v; worst relative error %.2g at %s", len(idx), info.Params, info.Outputs, worst, worstAt)

	// The graph's outputs are the heads' raw inputs (or the last
	// layer), all compared above.
	for _, o := range info.Outputs {
		found := false
		for _, nm := range names {
			found = found || nm == o
		}
		if !found {
			t.Errorf("graph output %s was not compared", o)
		}
	}

	fc, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatalf("feature detection: %v", err)
	}
	if fc.Tensor != feature {
		t.Errorf("feature tensor %s (%s, %v), want %s", fc.Tensor, fc.Rule, fc.Shape, feature)
	}
	var fl Layer
	fi := -1
	for li, l := range info.Layers {
		if l.Tensor == fc.Tensor {
			fl, fi = l, li
		}
	}
	if fi < 0 {
		t.Fatalf("feature tensor %s is no layer's output", fc.Tensor)
	}
	cut, err := backbone.CutAtFeature(m, fc)
	if err != nil {
		t.Fatal(err)
	}
	feat := runModel(t, cut, info.Input, in, n, []int64{int64(c), int64(h), int64(w)}, []string{backbone.FeatureOutput}, []int{fl.C})[0]
	// OpenCV's map, averaged over space.
	r := ref[fi]
	pooled := make([]float32, n*fl.C)
	hw := fl.H * fl.W
	for b := 0; b < n; b++ {
		for ch := 0; ch < fl.C; ch++ {
			var s float64
			for _, v := range r[(b*fl.C+ch)*hw : (b*fl.C+ch+1)*hw] {
				s += float64(v)
			}
			pooled[b*fl.C+ch] = float32(s / float64(hw))
		}
	}
	if e := relErr(feat, pooled); e > 1e-4 {
		t.Errorf("pooled features at %s: relative error %.3g", fc.Tensor, e)
	}
}

// TestSmallMatchesOpenCV compares the layer kinds the Debian YOLO cfgs do
// not use together (reorg beside a route, scaled upsample, swish,
// connected layers with batch norm, dropout) with OpenCV.
func TestSmallMatchesOpenCV(t *testing.T) {
	py := python3(t)
	orttest.Init(t)
	dir := t.TempDir()
	for _, c := range []struct{ name, text, feature string }{
		{"reorg.cfg", reorgCfg, "layer_5"},
		{"classifier.cfg", classifierCfg, "layer_3"},
	} {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Run(c.name, func(t *testing.T) { matchOpenCV(t, py, p, 3, c.feature, false) })
	}
}

// TestUpsampleScale: Darknet multiplies an upsampled map by the layer's
// scale (upsample_cpu); OpenCV 4.6 ignores the option, so the importer is
// checked against itself: scale=0.5 halves the unscaled output.
func TestUpsampleScale(t *testing.T) {
	orttest.Init(t)
	dir := t.TempDir()
	var outs [][]float32
	in := make([]float32, 3*16*16)
	for i := range in {
		in[i] = float32(i%7) / 7
	}
	for i, text := range []string{reorgCfg, reorgCfg + "scale=0.5\n"} {
		p := filepath.Join(dir, fmt.Sprintf("%d.cfg", i))
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		w := filepath.Join(dir, "w")
		writeRandomWeights(t, parseCfgFile(t, p), Options{}, w, Header{Minor: 2}, 9, 0)
		m, info, err := BuildFiles(p, w, Options{})
		if err != nil {
			t.Fatal(err)
		}
		l := info.Layers[len(info.Layers)-1]
		outs = append(outs, runModel(t, m, info.Input, in, 1, []int64{3, 16, 16}, []string{l.Tensor}, []int{l.C * l.H * l.W})[0])
	}
	half := make([]float32, len(outs[0]))
	for i, v := range outs[0] {
		half[i] = v / 2
	}
	if e := relErr(outs[1], half); e > 1e-6 || len(outs[1]) != 40*16*16 {
		t.Fatalf("scale=0.5: relative error %g against half the unscaled output (%d values)", e, len(outs[1]))
	}
}
