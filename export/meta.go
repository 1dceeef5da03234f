package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/dense"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
)

// FormatVersion is the version of the metadata layout Build writes
// (KeyFormat). ReadMetadata refuses newer versions.
const FormatVersion = 1

const keyPrefix = "headtune."

// metadata_props keys written by Build. Values are strings; JSON values are
// compact.
const (
	// KeyFormat is FormatVersion as a decimal string.
	KeyFormat = "headtune.format"
	// KeyClasses is the class names as a JSON array of strings, in the
	// order of the probabilities output's columns.
	KeyClasses = "headtune.classes"
	// KeyPreprocess is the imaging.Spec as its canonical JSON: input size,
	// resize mode and interpolation, layout, channel order, scale, mean,
	// std, background, fast_jpeg.
	KeyPreprocess = "headtune.preprocess"
	// KeyBackbone is the head.BackboneRef JSON (id, model_hash,
	// feature_tensor, tune_cut); the preprocessing is in KeyPreprocess.
	KeyBackbone = "headtune.backbone"
	// KeyVersion is the headtune version that wrote the file.
	KeyVersion = "headtune.version"
	// KeyMetrics is the head's evaluation metrics as a JSON object of
	// numbers (null for values that were not finite).
	KeyMetrics = "headtune.metrics"
	// KeyHead summarises the head: kind, layer shapes and activations,
	// tuned layer count, standardisation, temperature (JSON).
	KeyHead = "headtune.head"
	// KeyInputName is the name of the graph input to feed.
	KeyInputName = "headtune.input_name"
	// KeyInputLayout describes that input in words (InputLayoutText).
	KeyInputLayout = "headtune.input_layout"
	// KeyWithPreprocessing is "true" when the input takes raw 0..255
	// pixels, "false" when it takes the normalised tensor.
	KeyWithPreprocessing = "headtune.with_preprocessing"
	// KeyFastJPEG is "true" when the features were extracted with
	// DCT-domain JPEG downscaling (the spec's fast_jpeg).
	KeyFastJPEG = "headtune.fast_jpeg"
	// KeyOutputs lists the graph outputs, comma separated.
	KeyOutputs = "headtune.outputs"
	// KeyFeatureDim is D, the width of the features tensor.
	KeyFeatureDim = "headtune.feature_dim"
	// KeyPrecision is "float16" when the weights and activations inside
	// the graph are half precision (export --fp16), "float32" otherwise;
	// inputs and outputs are float32 either way. Absent means float32.
	KeyPrecision = "headtune.precision"
)

// ErrNotExport is wrapped by ReadMetadata's error for an ONNX model that
// carries no headtune metadata.
var ErrNotExport = errors.New("no headtune metadata: it was not made by `headtune export`; use it as a backbone with --model in extract instead")

type headLayer struct {
	In  int    `json:"in"`
	Out int    `json:"out"`
	Act string `json:"act,omitempty"`
}

type headInfo struct {
	Kind         string      `json:"kind"`
	Layers       []headLayer `json:"layers"`
	Tuned        int         `json:"tuned"`
	ConvTuned    []string    `json:"conv_tuned,omitempty"`
	Standardized bool        `json:"standardized"`
	Temperature  float64     `json:"temperature"`
}

// Meta is what an exported model says about itself (its headtune.*
// metadata_props), parsed and checked. All slices and maps are fresh and
// owned by the caller.
type Meta struct {
	// Format is the metadata layout version (FormatVersion or older).
	Format int
	// Classes names the columns of the probabilities output.
	Classes []string
	// Spec is the preprocessing recipe the backbone's features were
	// extracted with. With WithPreprocessing the model applies its
	// normalisation itself; see FeedSpec for what to feed.
	Spec imaging.Spec
	// WithPreprocessing is true when the input takes raw 0..255 pixels.
	WithPreprocessing bool
	// FastJPEG repeats Spec.FastJPEG (KeyFastJPEG).
	FastJPEG bool
	// FP16 is true when the graph computes in half precision (KeyPrecision).
	FP16 bool
	// Backbone identifies the backbone and feature tensor; Preprocess is
	// set to Spec's canonical JSON, so it compares with head files.
	Backbone head.BackboneRef
	// Version is the headtune version that exported the model.
	Version string
	// Metrics are the head's evaluation metrics (NaN for nulls).
	Metrics map[string]float64
	// HeadKind is "linear" or "mlp"; Layers the dense layers' shapes.
	HeadKind string
	Layers   []dense.Layer // In, Out, Act only: no weights
	// Tuned is the number of fine-tuned backbone layers in Layers.
	Tuned int
	// ConvTuned names the backbone's Conv nodes whose weights the head's
	// training tuned (head.Model.ConvTail); they are in the graph with
	// their tuned weights. Empty for other heads.
	ConvTuned []string
	// Temperature is the calibration temperature built into the graph.
	Temperature float64
	// InputName is the graph input to feed; InputLayout describes it.
	InputName   string
	InputLayout string
	// Outputs lists the graph outputs: OutputProbabilities, and
	// OutputFeatures when the model was exported with features.
	Outputs []string
	// FeatureDim is D, the width of the features output.
	FeatureDim int
	// FixedBatch is the batch size the model's input declares, or 0 when
	// its batch axis is dynamic.
	FixedBatch int
	// Extra holds the metadata_props outside the headtune namespace.
	Extra map[string]string
}

// HasFeatures reports whether the model has the OutputFeatures output.
func (m *Meta) HasFeatures() bool {
	for _, o := range m.Outputs {
		if o == OutputFeatures {
			return true
		}
	}
	return false
}

// FeedSpec is the spec whose imaging.Spec.Fill produces exactly the tensor
// the model's input takes: Spec itself, or, for a model exported with
// preprocessing, Spec with scale 1, mean 0 and std 1 (raw 0..255 values;
// the model applies Spec's normalisation, giving the same numbers Fill
// with Spec gives).
func (m *Meta) FeedSpec() imaging.Spec {
	s := m.Spec
	if m.WithPreprocessing {
		s.Scale, s.Mean, s.Std = 1, [3]float32{}, [3]float32{1, 1, 1}
	}
	return s
}

// SessionSpec returns what ort.NewSession needs to run the model:
// its input with the per-sample shape of Spec's layout, the probabilities
// output ([len(Classes)] per sample) and, when withFeatures is true, the
// features output ([FeatureDim] per sample), in that order.
func (m *Meta) SessionSpec(withFeatures bool) (ort.SessionSpec, error) {
	ss := ort.SessionSpec{
		Input:       m.InputName,
		InputShape:  m.Spec.InputShape(),
		Outputs:     []string{OutputProbabilities},
		OutputSizes: []int{len(m.Classes)},
		FixedBatch:  m.FixedBatch,
	}
	if withFeatures {
		if !m.HasFeatures() {
			return ort.SessionSpec{}, errors.New("the model was exported without its features output (use headtune export --with-features)")
		}
		ss.Outputs = append(ss.Outputs, OutputFeatures)
		ss.OutputSizes = append(ss.OutputSizes, m.FeatureDim)
	}
	return ss, nil
}

// ErrFaceModel is returned by ReadMetadata for a face model (BuildFaces):
// it takes a whole letterboxed photo, not preprocessed crops, and its
// KeyFaces metadata describes it.
var ErrFaceModel = errors.New("a face model made by `headtune export --faces`: it takes a whole photo letterboxed into a square (input \"photo\", see its headtune.faces metadata) and returns boxes and per-face probabilities; run it with ONNX Runtime directly, or use `headtune predict --head` with the head it was made from")

// ReadMetadata parses the headtune metadata of an exported model and checks
// it against the graph (input name, output names and widths). A model
// without headtune metadata gives an error wrapping ErrNotExport; a damaged
// entry gives an error naming the key. m is not modified.
func ReadMetadata(m *onnxpb.ModelProto) (*Meta, error) {
	if m.GetGraph() == nil {
		return nil, errors.New("model has no graph")
	}
	kv := map[string]string{}
	extra := map[string]string{}
	for _, p := range m.MetadataProps {
		if strings.HasPrefix(p.GetKey(), keyPrefix) {
			kv[p.GetKey()] = p.GetValue()
		} else {
			extra[p.GetKey()] = p.GetValue()
		}
	}
	if _, ok := kv[KeyClasses]; !ok {
		return nil, fmt.Errorf("model has %w", ErrNotExport)
	}
	if _, ok := kv[KeyFaces]; ok {
		return nil, ErrFaceModel
	}
	for _, k := range []string{KeyFormat, KeyPreprocess, KeyBackbone, KeyInputName, KeyWithPreprocessing, KeyOutputs, KeyFeatureDim} {
		if _, ok := kv[k]; !ok {
			return nil, fmt.Errorf("headtune metadata: %s is missing (the file was damaged or written by a partial tool)", k)
		}
	}
	meta := &Meta{Extra: extra, Version: kv[KeyVersion], InputName: kv[KeyInputName], InputLayout: kv[KeyInputLayout]}
	var err error
	if meta.Format, err = strconv.Atoi(kv[KeyFormat]); err != nil || meta.Format < 1 {
		return nil, fmt.Errorf("headtune metadata: %s %q is not a version number", KeyFormat, kv[KeyFormat])
	}
	if meta.Format > FormatVersion {
		return nil, fmt.Errorf("headtune metadata: format %d is newer than this headtune understands (%d): upgrade headtune", meta.Format, FormatVersion)
	}
	if err := json.Unmarshal([]byte(kv[KeyClasses]), &meta.Classes); err != nil {
		return nil, fmt.Errorf("headtune metadata: %s is not a JSON array of strings: %v", KeyClasses, err)
	}
	if len(meta.Classes) < 2 {
		return nil, fmt.Errorf("headtune metadata: %s has %d classes, need at least 2", KeyClasses, len(meta.Classes))
	}
	if meta.Spec, err = imaging.ParseSpec([]byte(kv[KeyPreprocess])); err != nil {
		return nil, fmt.Errorf("headtune metadata: %s: %v", KeyPreprocess, err)
	}
	if err := json.Unmarshal([]byte(kv[KeyBackbone]), &meta.Backbone); err != nil {
		return nil, fmt.Errorf("headtune metadata: %s is not a backbone reference: %v", KeyBackbone, err)
	}
	meta.Backbone.Preprocess = json.RawMessage(meta.Spec.Canonical())
	if meta.WithPreprocessing, err = strconv.ParseBool(kv[KeyWithPreprocessing]); err != nil {
		return nil, fmt.Errorf("headtune metadata: %s %q is not true or false", KeyWithPreprocessing, kv[KeyWithPreprocessing])
	}
	meta.FastJPEG = meta.Spec.FastJPEG
	if v, ok := kv[KeyFastJPEG]; ok {
		if meta.FastJPEG, err = strconv.ParseBool(v); err != nil || meta.FastJPEG != meta.Spec.FastJPEG {
			return nil, fmt.Errorf("headtune metadata: %s %q contradicts the preprocessing spec", KeyFastJPEG, v)
		}
	}
	switch v := kv[KeyPrecision]; v {
	case "", "float32":
	case "float16":
		meta.FP16 = true
	default:
		return nil, fmt.Errorf("headtune metadata: %s %q is not float32 or float16", KeyPrecision, v)
	}
	if v, ok := kv[KeyMetrics]; ok && v != "" {
		var raw map[string]*float64
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return nil, fmt.Errorf("headtune metadata: %s is not a JSON object of numbers: %v", KeyMetrics, err)
		}
		meta.Metrics = make(map[string]float64, len(raw))
		for k, x := range raw {
			if x == nil {
				meta.Metrics[k] = math.NaN()
			} else {
				meta.Metrics[k] = *x
			}
		}
	}
	if v, ok := kv[KeyHead]; ok {
		var hi headInfo
		if err := json.Unmarshal([]byte(v), &hi); err != nil {
			return nil, fmt.Errorf("headtune metadata: %s is not a head summary: %v", KeyHead, err)
		}
		meta.HeadKind, meta.Tuned, meta.Temperature, meta.ConvTuned = hi.Kind, hi.Tuned, hi.Temperature, hi.ConvTuned
		for _, l := range hi.Layers {
			meta.Layers = append(meta.Layers, dense.Layer{In: l.In, Out: l.Out, Act: l.Act})
		}
	}
	meta.Outputs = strings.Split(kv[KeyOutputs], ",")
	if d, err := strconv.Atoi(kv[KeyFeatureDim]); err != nil || d <= 0 || d > 1<<24 {
		return nil, fmt.Errorf("headtune metadata: %s %q is not a positive width", KeyFeatureDim, kv[KeyFeatureDim])
	} else {
		meta.FeatureDim = d
	}
	if err := meta.checkGraph(m.Graph); err != nil {
		return nil, err
	}
	return meta, nil
}

// checkGraph matches the metadata against the graph's interface and reads
// the fixed batch size.
func (meta *Meta) checkGraph(g *onnxpb.GraphProto) error {
	var in *onnxpb.ValueInfoProto
	for _, v := range g.Input {
		if v.GetName() == meta.InputName {
			in = v
		}
	}
	if in == nil {
		return fmt.Errorf("headtune metadata: input %q (%s) is not a graph input", meta.InputName, KeyInputName)
	}
	if dims := in.GetType().GetTensorType().GetShape().GetDim(); len(dims) > 0 {
		if len(dims) != 4 {
			return fmt.Errorf("headtune metadata: input %s has rank %d, want 4 (%s)", meta.InputName, len(dims), meta.Spec.Layout)
		}
		if d := dims[0].GetDimValue(); d > 0 && d <= 1<<20 {
			meta.FixedBatch = int(d)
		}
	}
	want := map[string]int{OutputProbabilities: len(meta.Classes), OutputFeatures: meta.FeatureDim}
	seen := map[string]bool{}
	for _, name := range meta.Outputs {
		w, ok := want[name]
		if !ok || seen[name] {
			return fmt.Errorf("headtune metadata: %s lists %q, expected %s[,%s]", KeyOutputs, name, OutputProbabilities, OutputFeatures)
		}
		seen[name] = true
		var out *onnxpb.ValueInfoProto
		for _, v := range g.Output {
			if v.GetName() == name {
				out = v
			}
		}
		if out == nil {
			return fmt.Errorf("headtune metadata: output %q is not a graph output", name)
		}
		if dims := out.GetType().GetTensorType().GetShape().GetDim(); len(dims) == 2 {
			if d := dims[1].GetDimValue(); d > 0 && d != int64(w) {
				return fmt.Errorf("headtune metadata: output %s has width %d, the metadata says %d", name, d, w)
			}
		}
	}
	if !seen[OutputProbabilities] {
		return fmt.Errorf("headtune metadata: %s does not list %s", KeyOutputs, OutputProbabilities)
	}
	return nil
}

// ReadMetadataFile reads an ONNX file and its headtune metadata. For a
// model that is not a headtune export the error reads "model PATH has no
// headtune metadata: it was not made by `headtune export`; ..." and wraps
// ErrNotExport. The parsed model is returned too, for running it.
func ReadMetadataFile(path string) (*Meta, *onnxpb.ModelProto, error) {
	m, err := backbone.ReadModelFile(path)
	if err != nil {
		return nil, nil, err
	}
	meta, err := ReadMetadata(m)
	if errors.Is(err, ErrNotExport) {
		return nil, nil, fmt.Errorf("model %s has %w", path, ErrNotExport)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return meta, m, nil
}

// Write saves m to path atomically (backbone.WriteModelFile): a crash never
// leaves a half-written file, and an existing file stays intact on error.
func Write(path string, m *onnxpb.ModelProto) error {
	if m.GetGraph() == nil {
		return fmt.Errorf("write %s: model has no graph", path)
	}
	return backbone.WriteModelFile(path, m) // its errors name path
}
