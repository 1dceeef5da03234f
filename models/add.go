package models

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
)

// AddOptions describe a user's model for Store.Add.
type AddOptions struct {
	// Preset names an imaging preset (see PresetNames); Add adapts it to
	// the size, channel count and layout of the model's image input with
	// imaging.Spec.WithInput. Ignored when Preprocess is given.
	Preset string
	// Preprocess is an exact imaging.Spec as JSON (imaging.ParseSpec
	// rules: unknown fields are refused, the spec must validate).
	Preprocess json.RawMessage
	// FeatureTensor names the features; "" lets the backbone choose
	// (backbone.FindFeatureTensor), and Add refuses a model where it
	// cannot.
	FeatureTensor string
	// Task defaults to TaskImageNetClassifier when the model has a
	// classifier (detected by the backbone, or a [N, K>1] output beside
	// the features), else TaskFeatureExtractor.
	Task        Task
	License     string
	Description string
	// Classes are the names of the model's own classes, in its output
	// order (what `eval --original` reports). Empty: read from the model's
	// metadata_props when it carries them (ClassesFromMetadata). Their
	// count must match the classifier's width when that is known.
	Classes []string
	// Replace allows overwriting an installed model of the same name.
	Replace bool
}

// Add registers a user's ONNX classifier or feature extractor under name.
// It parses the file and checks it with the backbone package: one float32
// image input (backbone.ImageInput), a feature tensor that exists or can be
// detected (backbone.FindFeatureTensor, whose width becomes
// Meta.FeatureDim), and a preprocessing recipe whose size, channels and
// layout match the input. It then copies the file into the store with a
// meta.json. The original file is left untouched; every error names it.
func (s *Store) Add(ctx context.Context, name, onnxPath string, opts AddOptions) (Installed, error) {
	if err := ValidateName(name); err != nil {
		return Installed{}, err
	}
	if !opts.Replace {
		if _, err := s.Get(name); err == nil {
			return Installed{}, fmt.Errorf("add %s: a model named %s is already installed; remove it first or replace it", onnxPath, name)
		}
	}
	m, err := backbone.ReadModelFile(onnxPath)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	in, err := backbone.ImageInput(m)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	raw, err := addSpec(in, opts)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	fc, err := backbone.FindFeatureTensor(m, opts.FeatureTensor)
	if err != nil {
		if opts.FeatureTensor == "" {
			return Installed{}, fmt.Errorf("add %s: no feature tensor detected (%v); name one explicitly", onnxPath, err)
		}
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	task := opts.Task
	if task == "" {
		task = guessTask(m, fc)
	}
	preset := opts.Preset
	if len(opts.Preprocess) > 0 {
		preset = "" // the exact recipe wins; do not claim a family
	}
	abs, err := filepath.Abs(onnxPath)
	if err != nil {
		abs = onnxPath
	}
	classes := append([]string(nil), opts.Classes...)
	if len(classes) == 0 {
		classes = ClassesFromMetadata(m)
	}
	if want := classifierWidth(m, fc); len(classes) > 0 && want > 0 && int64(len(classes)) != want {
		return Installed{}, fmt.Errorf("add %s: %d class names given but the model's classifier has %d classes", onnxPath, len(classes), want)
	}
	// The tensor is recorded even when detected, so that inspect, extract
	// and a later headtune (whose detection may improve) cut where this one
	// did; naming the detected tensor gives the detected cut.
	meta := Meta{
		Name: name, Task: task, Source: SourceFile, Provenance: abs,
		License: opts.License, Description: opts.Description,
		Preset: preset, Preprocess: raw,
		InputName: in.Name, FeatureTensor: fc.Tensor,
		StaticBatch: in.Batch == 1,
		Classes:     classes,
	}
	if fc.Dim > 0 {
		meta.FeatureDim = int(fc.Dim)
	}
	return s.installFile(ctx, onnxPath, false, "", meta)
}

// classifierWidth is the number of classes of m's own classifier: the
// detected classifier's width, else the width of a [N, K>1] output other
// than the features; 0 when unknown.
func classifierWidth(m *onnxpb.ModelProto, fc *backbone.FeatureChoice) int64 {
	if fc.Rule == backbone.RuleOverride {
		if auto, err := backbone.FindFeatureTensor(m, ""); err == nil {
			fc = auto
		}
	}
	if fc.Classes > 0 {
		return fc.Classes
	}
	for _, o := range m.GetGraph().GetOutput() {
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if o.GetName() != fc.Tensor && len(d) == 2 && d[1].GetDimValue() > 1 {
			return d[1].GetDimValue()
		}
	}
	return 0
}

// ClassesFromMetadata reads class names from an ONNX model's
// metadata_props: headtune.classes, classes, labels or class_names as a
// JSON list of strings or one name per line (or comma-separated), or
// Ultralytics' names ({0: 'cat', 1: 'dog'}). nil when none is present or
// readable.
func ClassesFromMetadata(m *onnxpb.ModelProto) []string {
	props := map[string]string{}
	for _, p := range m.GetMetadataProps() {
		props[p.GetKey()] = p.GetValue()
	}
	for _, key := range []string{"headtune.classes", "classes", "labels", "class_names"} {
		v := strings.TrimSpace(props[key])
		if v == "" {
			continue
		}
		var list []string
		if json.Unmarshal([]byte(v), &list) == nil && len(list) > 0 {
			return list
		}
		sep := "\n"
		if !strings.Contains(v, sep) {
			sep = ","
		}
		for _, s := range strings.Split(v, sep) {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		if len(list) > 0 {
			return list
		}
	}
	return ultralyticsNames(props["names"])
}

// ultralyticsNames parses {0: 'person', 1: 'bicycle'} (a Python dict
// literal with int keys in order 0..K-1).
func ultralyticsNames(v string) []string {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "{") || !strings.HasSuffix(v, "}") {
		return nil
	}
	body := v[1 : len(v)-1]
	var out []string
	for len(strings.TrimSpace(body)) > 0 {
		colon := strings.IndexByte(body, ':')
		if colon < 0 {
			return nil
		}
		if strings.TrimSpace(body[:colon]) != fmt.Sprint(len(out)) {
			return nil
		}
		rest := strings.TrimSpace(body[colon+1:])
		if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
			return nil
		}
		end := strings.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return nil
		}
		out = append(out, rest[1:1+end])
		body = strings.TrimSpace(rest[2+end:])
		body = strings.TrimPrefix(body, ",")
	}
	return out
}

// guessTask says whether a model is a classifier: the backbone recognised
// its classifier, or one of its outputs other than the features is a
// [N, K] score vector with K > 1.
func guessTask(m *onnxpb.ModelProto, fc *backbone.FeatureChoice) Task {
	if fc.Rule == backbone.RuleOverride {
		if auto, err := backbone.FindFeatureTensor(m, ""); err == nil {
			fc = auto
		}
	}
	if fc.Rule == backbone.RuleClassifier || fc.Rule == backbone.RuleConvHead {
		return TaskImageNetClassifier
	}
	for _, o := range m.GetGraph().GetOutput() {
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if o.GetName() != fc.Tensor && len(d) == 2 && d[1].GetDimValue() > 1 {
			return TaskImageNetClassifier
		}
	}
	return TaskFeatureExtractor
}

// addSpec resolves the preprocessing recipe of a user's model, checks it
// against the model's image input and returns it as canonical JSON.
func addSpec(in backbone.ImageInfo, opts AddOptions) (json.RawMessage, error) {
	var spec imaging.Spec
	switch {
	case len(opts.Preprocess) > 0:
		var err error
		if spec, err = imaging.ParseSpec(opts.Preprocess); err != nil {
			return nil, fmt.Errorf("preprocessing recipe: %w", err)
		}
	case opts.Preset != "":
		p, err := imaging.Preset(opts.Preset)
		if err != nil {
			return nil, err
		}
		w, h := in.Width, in.Height
		if w == 0 || h == 0 {
			w, h = p.Width, p.Height // dynamic size: the preset's own (224x224)
		}
		spec = p.WithInput(w, h, in.Channels, in.Layout)
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("preset %s for input %s: %w", opts.Preset, in.Name, err)
		}
	default:
		return nil, fmt.Errorf("no preprocessing: give a preset (%s) or a recipe", strings.Join(PresetNames(), ", "))
	}
	if spec.Layout != in.Layout {
		return nil, fmt.Errorf("preprocessing recipe says layout %s but input %s is %s", spec.Layout, in.Name, in.Layout)
	}
	if spec.Channels != in.Channels {
		return nil, fmt.Errorf("preprocessing recipe makes %d-channel images but input %s takes %d", spec.Channels, in.Name, in.Channels)
	}
	if (in.Width != 0 && spec.Width != in.Width) || (in.Height != 0 && spec.Height != in.Height) {
		return nil, fmt.Errorf("preprocessing recipe makes %dx%d images but input %s takes %dx%d", spec.Width, spec.Height, in.Name, in.Width, in.Height)
	}
	return json.RawMessage(spec.Canonical()), nil
}
