package models

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
)

// TensorInfo is a graph input or output: its name and shape, with symbolic
// or unknown dimensions given as -1.
type TensorInfo struct {
	Name  string
	Shape []int64
}

// ModelInfo is what Inspect learns from an ONNX file without running it.
type ModelInfo struct {
	Input   TensorInfo   // the image input (the only non-initializer input)
	Layout  string       // "NCHW" or "NHWC" from the input shape, "" if unclear
	Width   int          // from the input shape, 0 if symbolic
	Height  int          // from the input shape, 0 if symbolic
	Outputs []TensorInfo // graph outputs in order
	// Tensors is the set of all tensor names produced in the graph (node
	// outputs and graph inputs), for validating a feature tensor name.
	Tensors map[string]bool
	shapes  map[string][]int64
}

// Inspect reads the graph of an ONNX model: its image input, the layout and
// size that input implies, its outputs and the names of all its tensors.
func Inspect(m *onnxpb.ModelProto) (ModelInfo, error) {
	g := m.GetGraph()
	init := map[string]bool{}
	for _, t := range g.GetInitializer() {
		init[t.GetName()] = true
	}
	info := ModelInfo{Tensors: map[string]bool{}, shapes: map[string][]int64{}}
	var inputs []TensorInfo
	for _, vi := range g.GetInput() {
		ti := tensorInfo(vi)
		info.shapes[ti.Name] = ti.Shape
		info.Tensors[ti.Name] = true
		if !init[ti.Name] {
			inputs = append(inputs, ti)
		}
	}
	if len(inputs) != 1 {
		names := make([]string, len(inputs))
		for i, t := range inputs {
			names[i] = t.Name
		}
		return info, fmt.Errorf("the model has %d inputs (%s); headtune needs exactly one image input", len(inputs), strings.Join(names, ", "))
	}
	info.Input = inputs[0]
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				info.Tensors[o] = true
			}
		}
	}
	for _, vi := range g.GetValueInfo() {
		ti := tensorInfo(vi)
		info.shapes[ti.Name] = ti.Shape
	}
	for _, vi := range g.GetOutput() {
		ti := tensorInfo(vi)
		info.shapes[ti.Name] = ti.Shape
		info.Outputs = append(info.Outputs, ti)
	}
	if s := info.Input.Shape; len(s) == 4 {
		switch {
		case s[1] == 3 || s[1] == 1:
			info.Layout, info.Height, info.Width = "NCHW", int(max(s[2], 0)), int(max(s[3], 0))
		case s[3] == 3 || s[3] == 1:
			info.Layout, info.Height, info.Width = "NHWC", int(max(s[1], 0)), int(max(s[2], 0))
		}
	}
	return info, nil
}

func tensorInfo(vi *onnxpb.ValueInfoProto) TensorInfo {
	ti := TensorInfo{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil || tt.GetShape() == nil {
		return ti
	}
	for _, d := range tt.GetShape().GetDim() {
		if v := d.GetDimValue(); v > 0 {
			ti.Shape = append(ti.Shape, v)
		} else {
			ti.Shape = append(ti.Shape, -1)
		}
	}
	return ti
}

// FeatureDim is the number of values per image of tensor name (the product
// of all dimensions after the first), or 0 when its shape is not recorded
// in the graph or not static.
func (mi ModelInfo) FeatureDim(name string) int {
	s, ok := mi.shapes[name]
	if !ok || len(s) < 2 {
		return 0
	}
	n := int64(1)
	for _, d := range s[1:] {
		if d <= 0 {
			return 0
		}
		n *= d
	}
	return int(n)
}

// AddOptions describe a user's model for Store.Add.
type AddOptions struct {
	// Preset builds the preprocessing recipe from a preset name and the
	// size and layout read from the model's input; ignored when
	// Preprocess is given.
	Preset string
	// Preprocess is an exact imaging.Spec as JSON.
	Preprocess json.RawMessage
	// FeatureTensor names the features; "" lets the backbone choose.
	FeatureTensor string
	Task          Task // default TaskImageNetClassifier when the model has a [N, K] output, else feature-extractor
	License       string
	Description   string
	Classes       []string
	// Replace allows overwriting an installed model of the same name.
	Replace bool
}

// Add registers a user's ONNX classifier or feature extractor under name: it
// parses the file, checks that it has one image input, that the feature
// tensor (if given) exists and that the preprocessing recipe matches the
// input's size and layout, then copies the file into the store with a
// meta.json. The original file is left untouched.
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
	info, err := Inspect(m)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	_, raw, err := addSpec(info, opts)
	if err != nil {
		return Installed{}, fmt.Errorf("add %s: %w", onnxPath, err)
	}
	if opts.FeatureTensor != "" && !info.Tensors[opts.FeatureTensor] {
		return Installed{}, fmt.Errorf("add %s: the model has no tensor named %q (outputs: %s)", onnxPath, opts.FeatureTensor, outputNames(info))
	}
	task := opts.Task
	if task == "" {
		task = TaskFeatureExtractor
		for _, o := range info.Outputs {
			if len(o.Shape) == 2 && o.Shape[1] > 1 && opts.FeatureTensor != o.Name {
				task = TaskImageNetClassifier
			}
		}
	}
	abs, err := filepath.Abs(onnxPath)
	if err != nil {
		abs = onnxPath
	}
	meta := Meta{
		Name: name, Task: task, Source: SourceFile, Provenance: abs,
		License: opts.License, Description: opts.Description,
		Preset: opts.Preset, Preprocess: raw,
		InputName: info.Input.Name, FeatureTensor: opts.FeatureTensor,
		StaticBatch: len(info.Input.Shape) > 0 && info.Input.Shape[0] == 1,
		Classes:     append([]string(nil), opts.Classes...),
	}
	if opts.FeatureTensor != "" {
		meta.FeatureDim = info.FeatureDim(opts.FeatureTensor)
	}
	return s.installFile(ctx, onnxPath, false, "", meta)
}

// addSpec resolves the preprocessing recipe of a user's model and checks it
// against the model's input.
func addSpec(info ModelInfo, opts AddOptions) (imaging.Spec, json.RawMessage, error) {
	var spec imaging.Spec
	switch {
	case len(opts.Preprocess) > 0:
		if err := json.Unmarshal(opts.Preprocess, &spec); err != nil {
			return spec, nil, fmt.Errorf("preprocessing recipe: %w", err)
		}
	case opts.Preset != "":
		if info.Layout == "" {
			return spec, nil, fmt.Errorf("cannot tell the layout of input %s %v; give a full preprocessing recipe instead of a preset", info.Input.Name, info.Input.Shape)
		}
		w, h := info.Width, info.Height
		if w == 0 || h == 0 {
			w, h = 224, 224 // symbolic size: the common default
		}
		var err error
		if spec, err = PresetSpec(opts.Preset, w, h, info.Layout); err != nil {
			return spec, nil, err
		}
		if s := info.Input.Shape; len(s) == 4 && ((info.Layout == "NCHW" && s[1] == 1) || (info.Layout == "NHWC" && s[3] == 1)) {
			spec.Channels = 1
		}
	default:
		return spec, nil, fmt.Errorf("no preprocessing: give a preset (%s) or a recipe", strings.Join(PresetNames(), ", "))
	}
	if spec.Width <= 0 || spec.Height <= 0 {
		return spec, nil, fmt.Errorf("preprocessing recipe: input size %dx%d is not positive", spec.Width, spec.Height)
	}
	if info.Layout != "" && spec.Layout != info.Layout {
		return spec, nil, fmt.Errorf("preprocessing recipe says layout %s but input %s has shape %v (%s)", spec.Layout, info.Input.Name, info.Input.Shape, info.Layout)
	}
	if (info.Width != 0 && spec.Width != info.Width) || (info.Height != 0 && spec.Height != info.Height) {
		return spec, nil, fmt.Errorf("preprocessing recipe makes %dx%d images but input %s takes %dx%d", spec.Width, spec.Height, info.Input.Name, info.Width, info.Height)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return spec, nil, fmt.Errorf("encode preprocessing recipe: %w", err)
	}
	return spec, raw, nil
}

func outputNames(info ModelInfo) string {
	names := make([]string, len(info.Outputs))
	for i, o := range info.Outputs {
		names[i] = o.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
