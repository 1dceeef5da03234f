package models

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/internal/testmodels"
)

// TestAddUnusualModels: issue 15's models register with the detected
// tensor recorded, their width, and class names read from their metadata;
// unusable tensors and wrong class lists are refused in one line.
func TestAddUnusualModels(t *testing.T) {
	for _, kind := range testmodels.UnusualKinds {
		t.Run(kind, func(t *testing.T) {
			e := testmodels.ExpectFor(kind, 16)
			data, err := backbone.MarshalModel(testmodels.Model(kind, 16))
			if err != nil {
				t.Fatal(err)
			}
			src := writeModel(t, data)
			s := newStore(t)
			in, err := s.Add(context.Background(), "mine", src, AddOptions{Preset: "imagenet"})
			if err != nil {
				t.Fatal(err)
			}
			m := in.Meta
			if m.FeatureTensor != e.FeatureTensor || m.FeatureDim != e.FeatureDim || m.Task != TaskImageNetClassifier || m.StaticBatch != (e.Batch == 1) {
				t.Errorf("meta %+v, want tensor %s dim %d", m, e.FeatureTensor, e.FeatureDim)
			}
			if !slices.Equal(m.Classes, e.ClassNames) {
				t.Errorf("classes %q, want %q from the metadata", m.Classes, e.ClassNames)
			}
		})
	}
}

func TestAddRefusesUnusable(t *testing.T) {
	write := func(kind string) string {
		m := oddModel()
		if kind != "odd" {
			m = testmodels.Model(kind, 16)
		}
		data, err := backbone.MarshalModel(m)
		if err != nil {
			t.Fatal(err)
		}
		return writeModel(t, data)
	}
	tests := []struct {
		name, kind string
		opts       AddOptions
		want       []string
	}{
		{"quantized tensor with a scale", "int8-qlinear", AddOptions{Preset: "imagenet", FeatureTensor: "gap_q"}, nil},
		{"uint8 tensor without a scale", "odd", AddOptions{Preset: "imagenet", FeatureTensor: "as_uint8"}, []string{`"as_uint8" is uint8`, "--feature-tensor"}},
		{"unknown size", "odd", AddOptions{Preset: "imagenet", FeatureTensor: "mystery"}, []string{`cannot tell the size of feature tensor "mystery"`}},
		{"wrong class count", "two-output", AddOptions{Preset: "imagenet", Classes: []string{"a", "b"}}, []string{"2 class names", "5 classes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := write(tc.kind)
			s := newStore(t)
			_, err := s.Add(context.Background(), "mine", src, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			for _, w := range append(tc.want, src) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestClassesFromMetadata(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       []string
	}{
		{"labels", `["a","b"]`, []string{"a", "b"}},
		{"classes", "cat\ndog\n", []string{"cat", "dog"}},
		{"class_names", "cat, dog", []string{"cat", "dog"}},
		{"names", "{0: 'person', 1: \"bi cycle\"}", []string{"person", "bi cycle"}},
		{"names", "{1: 'x'}", nil},
		{"names", "{0: 'x', 1: 'y'", nil},
		{"other", "a,b", nil},
	} {
		m := testmodels.Model("resnet", 8)
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(tc.key), Value: proto.String(tc.value)})
		if got := ClassesFromMetadata(m); !slices.Equal(got, tc.want) {
			t.Errorf("%s=%q: %q, want %q", tc.key, tc.value, got, tc.want)
		}
	}
}

// oddModel: image -> Cast to uint8 ("as_uint8") -> Cast back -> a custom
// operator whose output shape nobody knows ("mystery") -> Relu -> output.
func oddModel() *onnxpb.ModelProto {
	b := backbone.NewBuilder("odd")
	x := b.Input("image", -1, 3, 16, 16)
	b.Node("Cast", []string{x}, []string{"as_uint8"}, backbone.AttrInt("to", int64(onnxpb.TensorProto_UINT8)))
	f := b.Op("Cast", "as_float", []string{"as_uint8"}, backbone.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	n := b.Node("Mystery", []string{f}, []string{"mystery"})
	n.Domain = proto.String("example.custom")
	b.Node("Relu", []string{"mystery"}, []string{"out"})
	b.Output("out", -1, 3, 16, 16)
	m := b.Model(0)
	m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("example.custom"), Version: proto.Int64(1)})
	return m
}
