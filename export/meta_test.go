package export

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testmodels"
)

func getExampleSpec() imaging.Spec {
	s, _ := imaging.Preset("imagenet")
	return s
}

// exported returns a small export of the resnet test model.
func exported(t testing.TB, opt Options) *onnxpb.ModelProto {
	t.Helper()
	f := getFixture(t, "resnet", testSize, 0, testImages, testClasses)
	m, err := Build(f.cut, f.spec, handHead(f, []int{4}, 1.25), opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// withProp returns a copy of m whose metadata entry key is set to value,
// or removed when remove is true.
func withProp(m *onnxpb.ModelProto, key, value string, remove bool) *onnxpb.ModelProto {
	c := proto.Clone(m).(*onnxpb.ModelProto)
	var props []*onnxpb.StringStringEntryProto
	found := false
	for _, p := range c.MetadataProps {
		if p.GetKey() == key {
			found = true
			if remove {
				continue
			}
			p.Value = proto.String(value)
		}
		props = append(props, p)
	}
	if !found && !remove {
		props = append(props, &onnxpb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
	}
	c.MetadataProps = props
	return c
}

func TestReadMetadataErrors(t *testing.T) {
	m := exported(t, Options{WithFeatures: true})
	if _, err := ReadMetadata(m); err != nil {
		t.Fatalf("good model: %v", err)
	}
	tests := []struct {
		name       string
		key, value string
		remove     bool
		want       string
	}{
		{"not an export", KeyClasses, "", true, "not made by `headtune export`"},
		{"classes not JSON", KeyClasses, "[cat, dog]", false, KeyClasses},
		{"one class", KeyClasses, `["cat"]`, false, "need at least 2"},
		{"spec garbage", KeyPreprocess, "{", false, KeyPreprocess},
		{"spec invalid", KeyPreprocess, `{"width":0}`, false, KeyPreprocess},
		{"spec unknown field", KeyPreprocess, strings.Replace(string(getExampleSpec().Canonical()), "{", `{"gamma":2,`, 1), false, "gamma"},
		{"backbone not JSON", KeyBackbone, "x", false, KeyBackbone},
		{"bool", KeyWithPreprocessing, "yes", false, KeyWithPreprocessing},
		{"fast jpeg contradicts", KeyFastJPEG, "true", false, KeyFastJPEG},
		{"metrics", KeyMetrics, `{"acc":"high"}`, false, KeyMetrics},
		{"head summary", KeyHead, `[]`, false, KeyHead},
		{"missing format", KeyFormat, "", true, KeyFormat},
		{"future format", KeyFormat, "99", false, "newer"},
		{"format garbage", KeyFormat, "one", false, KeyFormat},
		{"input name", KeyInputName, "image", false, `input "image"`},
		{"outputs unknown", KeyOutputs, "probabilities,logits", false, "logits"},
		{"outputs missing probabilities", KeyOutputs, "features", false, "does not list"},
		{"outputs not in graph", KeyOutputs, "probabilities,features,probabilities", false, KeyOutputs},
		{"feature dim", KeyFeatureDim, "-3", false, KeyFeatureDim},
		{"feature dim vs graph", KeyFeatureDim, "9", false, "width 8"},
		{"class count vs graph", KeyClasses, `["a","b","c"]`, false, "width 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadMetadata(withProp(m, tc.key, tc.value, tc.remove))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
	t.Run("plain backbone", func(t *testing.T) {
		_, err := ReadMetadata(testmodels.Model("resnet", 16))
		if !errors.Is(err, ErrNotExport) {
			t.Fatalf("error %v, want ErrNotExport", err)
		}
	})
}

func TestReadMetadataFileAndWrite(t *testing.T) {
	dir := t.TempDir()
	m := exported(t, Options{WithPreprocessing: true})
	path := filepath.Join(dir, "model.onnx")
	if err := Write(path, m); err != nil {
		t.Fatal(err)
	}
	meta, back, err := ReadMetadataFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !meta.WithPreprocessing || meta.InputName != InputPixels || back.Graph == nil {
		t.Errorf("meta %+v", meta)
	}
	want, _ := backbone.MarshalModel(m)
	got, _ := os.ReadFile(path)
	if string(got) != string(want) {
		t.Error("written bytes differ from MarshalModel's")
	}

	// A plain backbone: the error names the file and says what to do.
	bpath := filepath.Join(dir, "backbone.onnx")
	if err := backbone.WriteModelFile(bpath, testmodels.Model("vgg", 16)); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadMetadataFile(bpath)
	if !errors.Is(err, ErrNotExport) || !strings.Contains(err.Error(), "model "+bpath+" has no headtune metadata") || !strings.Contains(err.Error(), "--model in extract") {
		t.Errorf("error %v", err)
	}
	// Not ONNX at all.
	junk := filepath.Join(dir, "junk.onnx")
	os.WriteFile(junk, []byte("hello"), 0o644)
	if _, _, err := ReadMetadataFile(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk file: %v", err)
	}
	// Writing into a missing folder fails and leaves no file; an existing
	// file survives a failed write.
	if err := Write(filepath.Join(dir, "nope", "m.onnx"), m); err == nil {
		t.Error("write into a missing folder succeeded")
	}
	if err := Write(path, &onnxpb.ModelProto{}); err == nil {
		t.Error("write of a graphless model succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != string(want) {
		t.Error("a failed write changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// FuzzReadMetadata feeds arbitrary values to every metadata key of a valid
// export: ReadMetadata must return a result or an error, never panic, and a
// result must be self-consistent.
func FuzzReadMetadata(f *testing.F) {
	m := exported(f, Options{WithFeatures: true})
	keys := []string{KeyFormat, KeyClasses, KeyPreprocess, KeyBackbone, KeyVersion, KeyMetrics, KeyHead, KeyInputName, KeyInputLayout, KeyWithPreprocessing, KeyFastJPEG, KeyOutputs, KeyFeatureDim}
	for i, k := range keys {
		for _, p := range m.MetadataProps {
			if p.GetKey() == k {
				f.Add(uint8(i), p.GetValue(), false)
			}
		}
		f.Add(uint8(i), "", true)
	}
	f.Add(uint8(1), `["a","b","c","d"]`, false)
	f.Add(uint8(5), `{"x":null,"y":1e308}`, false)
	f.Fuzz(func(t *testing.T, which uint8, value string, remove bool) {
		key := keys[int(which)%len(keys)]
		meta, err := ReadMetadata(withProp(m, key, value, remove))
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(value, "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if len(meta.Classes) != 4 || meta.Spec.Validate() != nil || meta.FeatureDim != 8 {
			t.Fatalf("accepted inconsistent metadata: %d classes, dim %d", len(meta.Classes), meta.FeatureDim)
		}
		if _, err := meta.SessionSpec(meta.HasFeatures()); err != nil {
			t.Fatal(err)
		}
	})
}
