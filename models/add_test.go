package models

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
)

// addModel builds small ONNX graphs of the shapes Add must tell apart.
//
//	"extractor+logits": fixtureModel: image [N,3,16,16] -> features [N,ch]
//	                    (first output) and logits [N,5]
//	"classifier":       image [1,3,16,16] (static batch) -> pooled [1,ch] ->
//	                    Gemm -> Softmax -> probs [1,5], the only output
//	"grey-nhwc":        image [N,20,24,1] -> Transpose -> Conv -> features [N,ch]
//	"dynamic":          image [N,3,H,W] -> features [N,ch]
//	"two-inputs":       image and mask inputs
//	"uint8":            a uint8 image input
//
// The feature width is addModelDim[kind] (8 where absent).
func addModel(t testing.TB, kind string) []byte {
	t.Helper()
	ch := addModelDim[kind]
	if ch == 0 {
		ch = 8
	}
	if kind == "extractor+logits" {
		return fixtureModel(t, ch)
	}
	b := backbone.NewBuilder(kind)
	w := make([]float32, ch*3)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	var x string
	switch kind {
	case "classifier":
		x = b.Input("image", 1, 3, 16, 16)
	case "grey-nhwc":
		x = b.Input("image", -1, 20, 24, 1)
		x = b.Op("Transpose", "to_nchw", []string{x}, backbone.AttrInts("perm", 0, 3, 1, 2))
		w = w[:ch]
	case "dynamic":
		b.Graph.Input = append(b.Graph.Input, backbone.ValueInfo("image", onnxpb.TensorProto_FLOAT, []int64{-1, 3, -1, -1}, "N", "H", "W"))
		x = "image"
	case "two-inputs":
		x = b.Input("image", -1, 3, 16, 16)
		b.Input("mask", -1, 1, 16, 16)
	case "uint8":
		b.Graph.Input = append(b.Graph.Input, backbone.ValueInfo("image", onnxpb.TensorProto_UINT8, []int64{-1, 3, 16, 16}))
		x = "image"
	default:
		t.Fatalf("unknown fixture kind %q", kind)
	}
	cw := b.Initializer("conv_w", []int64{int64(ch), int64(len(w) / ch), 1, 1}, w)
	c := b.Op("Conv", "conv", []string{x, cw})
	p := b.Op("GlobalAveragePool", "pool", []string{c})
	if kind == "classifier" {
		b.Node("Flatten", []string{p}, []string{"pooled"}, backbone.AttrInt("axis", 1))
		fw := b.Initializer("fc_w", []int64{5, int64(ch)}, make([]float32, 5*ch))
		l := b.Op("Gemm", "fc", []string{"pooled", fw}, backbone.AttrInt("transB", 1))
		b.Node("Softmax", []string{l}, []string{"probs"}, backbone.AttrInt("axis", 1))
		b.Output("probs", 1, 5)
	} else {
		b.Node("Flatten", []string{p}, []string{"features"}, backbone.AttrInt("axis", 1))
		b.Output("features", -1, int64(ch))
	}
	data, err := backbone.MarshalModel(b.Model(0))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var addModelDim = map[string]int{"extractor+logits": 300, "classifier": 40, "grey-nhwc": 12}

func writeModel(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mine.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func specJSON(t *testing.T, preset string, w, h, ch int, layout string) json.RawMessage {
	t.Helper()
	s, err := imaging.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(s.WithInput(w, h, ch, layout).Canonical())
}

func TestAddUserModel(t *testing.T) {
	type want struct {
		task          Task
		dim           int
		w, h, ch      int
		layout        string
		static        bool
		preset        string
		featureTensor string // recorded even when detected
	}
	tests := []struct {
		name    string
		kind    string
		opts    AddOptions
		wantErr []string // all must appear (besides the file's path)
		want    want
	}{
		{"preset, feature tensor", "extractor+logits", AddOptions{Preset: "imagenet", FeatureTensor: "features"}, nil,
			want{TaskImageNetClassifier, 300, 16, 16, 3, "NCHW", false, "imagenet", "features"}},
		{"preset, auto features", "extractor+logits", AddOptions{Preset: "caffe"}, nil,
			want{TaskImageNetClassifier, 300, 16, 16, 3, "NCHW", false, "caffe", "features"}},
		{"classifier detected", "classifier", AddOptions{Preset: "unit"}, nil,
			want{TaskImageNetClassifier, 40, 16, 16, 3, "NCHW", true, "unit", "pooled"}},
		{"grey NHWC input", "grey-nhwc", AddOptions{Preset: "raw"}, nil,
			want{TaskFeatureExtractor, 12, 24, 20, 1, "NHWC", false, "raw", "features"}},
		{"dynamic size takes the preset's", "dynamic", AddOptions{Preset: "imagenet"}, nil,
			want{TaskFeatureExtractor, 8, 224, 224, 3, "NCHW", false, "imagenet", "features"}},
		{"exact recipe wins over preset", "dynamic", AddOptions{Preset: "caffe", Preprocess: specJSON(t, "unit", 160, 128, 3, "NCHW")}, nil,
			want{TaskFeatureExtractor, 8, 160, 128, 3, "NCHW", false, "", "features"}},
		{"explicit task", "extractor+logits", AddOptions{Preset: "unit", Task: TaskFaceExpression}, nil,
			want{TaskFaceExpression, 300, 16, 16, 3, "NCHW", false, "unit", "features"}},

		{"unknown tensor", "extractor+logits", AddOptions{Preset: "imagenet", FeatureTensor: "nope"}, []string{`"nope"`, "features"}, want{}},
		{"unknown preset", "extractor+logits", AddOptions{Preset: "bogus"}, []string{`"bogus"`, "imagenet"}, want{}},
		{"no preprocessing", "extractor+logits", AddOptions{}, []string{"no preprocessing", "caffe"}, want{}},
		{"layout mismatch", "extractor+logits", AddOptions{Preprocess: specJSON(t, "unit", 16, 16, 3, "NHWC")}, []string{"layout NHWC", "NCHW"}, want{}},
		{"size mismatch", "extractor+logits", AddOptions{Preprocess: specJSON(t, "unit", 32, 32, 3, "NCHW")}, []string{"32x32", "16x16"}, want{}},
		{"channel mismatch", "grey-nhwc", AddOptions{Preprocess: specJSON(t, "unit", 24, 20, 3, "NHWC")}, []string{"3-channel", "takes 1"}, want{}},
		{"invalid recipe", "extractor+logits", AddOptions{Preprocess: json.RawMessage(`{"width":16}`)}, []string{"preprocessing recipe"}, want{}},
		{"unknown recipe field", "extractor+logits", AddOptions{Preprocess: json.RawMessage(`{"widht":16}`)}, []string{"widht"}, want{}},
		{"two inputs", "two-inputs", AddOptions{Preset: "unit"}, []string{"2 inputs", "mask"}, want{}},
		{"uint8 input", "uint8", AddOptions{Preset: "unit"}, []string{"uint8"}, want{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content := addModel(t, tc.kind)
			src := writeModel(t, content)
			s := newStore(t)
			in, err := s.Add(context.Background(), "mine", src, tc.opts)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("accepted, want an error containing %q", tc.wantErr)
				}
				for _, w := range append(tc.wantErr, src) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans several lines: %q", err)
				}
				if _, gerr := s.Get("mine"); gerr == nil {
					t.Fatal("refused model was installed")
				}
				noLeftovers(t, s.Dir())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, w := in.Meta, tc.want
			if m.Source != SourceFile || m.Provenance != src || m.SHA256 != sha(content) || m.InputName != "image" {
				t.Errorf("source %s provenance %s sha %s input %s", m.Source, m.Provenance, m.SHA256, m.InputName)
			}
			if m.Task != w.task || m.FeatureDim != w.dim || m.FeatureTensor != w.featureTensor || m.StaticBatch != w.static || m.Preset != w.preset {
				t.Errorf("task %s dim %d tensor %q static %v preset %q, want %+v", m.Task, m.FeatureDim, m.FeatureTensor, m.StaticBatch, m.Preset, w)
			}
			spec, err := imaging.ParseSpec(m.Preprocess)
			if err != nil {
				t.Fatalf("recorded recipe does not parse: %v", err)
			}
			if spec.Width != w.w || spec.Height != w.h || spec.Channels != w.ch || spec.Layout != w.layout {
				t.Errorf("recipe %dx%dx%d %s, want %dx%dx%d %s", spec.Width, spec.Height, spec.Channels, spec.Layout, w.w, w.h, w.ch, w.layout)
			}
			if w.preset != "" {
				// Normalisation comes from imaging's preset unchanged.
				p, _ := imaging.Preset(w.preset)
				if spec.Scale != p.Scale || spec.Mean != p.Mean || spec.Std != p.Std || spec.ChannelOrder != p.ChannelOrder {
					t.Errorf("recipe %+v drifted from imaging preset %s %+v", spec, w.preset, p)
				}
			}
			if err := s.Verify("mine"); err != nil {
				t.Error(err)
			}
			if got, err := os.ReadFile(src); err != nil || sha(got) != sha(content) {
				t.Error("Add moved, deleted or changed the user's file")
			}
			if _, err := s.Add(context.Background(), "mine", src, tc.opts); err == nil || !strings.Contains(err.Error(), "already installed") {
				t.Errorf("second Add without Replace: %v", err)
			}
			tc.opts.Replace = true
			if _, err := s.Add(context.Background(), "mine", src, tc.opts); err != nil {
				t.Errorf("Add with Replace: %v", err)
			}
		})
	}
}

func TestAddRejectsNonModels(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t)
	for name, data := range map[string][]byte{"empty.onnx": {}, "text.onnx": []byte("hello, not a model")} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(context.Background(), "x", p, AddOptions{Preset: "unit"}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, want an error naming the file", name, err)
		}
	}
	missing := filepath.Join(dir, "missing.onnx")
	if _, err := s.Add(context.Background(), "x", missing, AddOptions{Preset: "unit"}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := s.Add(context.Background(), "../x", missing, AddOptions{Preset: "unit"}); err == nil {
		t.Error("path-like model name accepted")
	}
	noLeftovers(t, s.Dir())
}

// sharedModels finds the read-only reference models ($HEADTUNE_SHARED/models
// or a shared/models folder beside a parent of the package), or skips.
func sharedModels(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("HEADTUNE_SHARED"); d != "" {
		return filepath.Join(d, "models")
	}
	wd, err := os.Getwd()
	if err != nil {
		testasset.Skip(t, "no working directory: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "shared", "models")); err == nil && st.IsDir() {
			return filepath.Join(d, "shared", "models")
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	testasset.Skip(t, "reference models not found: set HEADTUNE_SHARED or provide ../shared/models")
	return ""
}

// TestAddReferenceModels adds the independently converted TF.js models as
// a user would, and checks what Add reads from their real graphs.
func TestAddReferenceModels(t *testing.T) {
	dir := sharedModels(t)
	tests := []struct {
		file    string
		opts    AddOptions
		task    Task
		dim     int
		side    int
		wantErr string
	}{
		{"imagenet_mobilenet_v2_100_block10_224.onnx", AddOptions{Preset: "unit"}, TaskFeatureExtractor, 384, 224, ""},
		{"imagenet_inception_v3_mixed5_299.onnx", AddOptions{Preset: "unit"}, TaskFeatureExtractor, 768, 299, ""},
		{"faceapi_expression.onnx", AddOptions{Preset: "raw", FeatureTensor: "features"}, TaskImageNetClassifier, 256, 112, ""},
		{"faceapi_expression.onnx", AddOptions{Preset: "raw", Preprocess: specJSON(t, "raw", 112, 112, 3, "NCHW")}, "", 0, 0, "layout NCHW"},
	}
	for _, tc := range tests {
		name := tc.file
		if tc.wantErr != "" {
			name += " refused"
		}
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(dir, tc.file)
			if _, err := os.Stat(src); err != nil {
				testasset.Skip(t, "reference model absent: %v", err)
			}
			s := newStore(t)
			in, err := s.Add(context.Background(), "ref", src, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), src) {
					t.Fatalf("got %v, want an error naming %s and containing %q", err, src, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := in.Meta
			spec, err := imaging.ParseSpec(m.Preprocess)
			if err != nil {
				t.Fatal(err)
			}
			if m.Task != tc.task || m.FeatureDim != tc.dim || m.InputName != "input_nhwc" ||
				spec.Layout != "NHWC" || spec.Width != tc.side || spec.Height != tc.side || spec.Channels != 3 {
				t.Errorf("task %s dim %d input %s, recipe %dx%dx%d %s; want %s %d input_nhwc %dx%dx3 NHWC",
					m.Task, m.FeatureDim, m.InputName, spec.Width, spec.Height, spec.Channels, spec.Layout, tc.task, tc.dim, tc.side, tc.side)
			}
			if err := s.Verify("ref"); err != nil {
				t.Error(err)
			}
		})
	}
}

// FuzzAddPreprocess feeds arbitrary recipes to the preprocessing check of
// Add: it must not panic, and whatever it accepts parses back to a valid
// spec that fits the input.
func FuzzAddPreprocess(f *testing.F) {
	for _, seed := range []string{"unit", "imagenet", "caffe"} {
		p, _ := imaging.Preset(seed)
		f.Add(p.WithInput(24, 20, 1, "NHWC").Canonical(), "")
	}
	f.Add([]byte(`{"width":24,"height":20}`), "raw")
	f.Add([]byte(`null`), "symmetric")
	f.Add([]byte{}, "bogus")
	in := backbone.ImageInfo{Name: "image", Layout: "NHWC", Channels: 1, Height: 20, Width: 24}
	f.Fuzz(func(t *testing.T, recipe []byte, preset string) {
		raw, err := addSpec(in, AddOptions{Preprocess: recipe, Preset: preset})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		s, err := imaging.ParseSpec(raw)
		if err != nil {
			t.Fatalf("accepted recipe %s does not parse back: %v", raw, err)
		}
		if s.Width != 24 || s.Height != 20 || s.Channels != 1 || s.Layout != "NHWC" {
			t.Fatalf("accepted recipe %s does not fit the 24x20x1 NHWC input", raw)
		}
	})
}
