package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models"
)

// BackboneOptions says how to open a backbone for feature extraction.
type BackboneOptions struct {
	// Store resolves catalog names; nil means only file paths work.
	Store *models.Store `json:"-"`
	// FeatureTensor overrides the detected feature tensor (--feature-tensor).
	FeatureTensor string `json:"feature_tensor,omitempty"`
	// Preset names the preprocessing family for a plain .onnx file
	// ("imagenet" when empty); installed models carry their own recipe.
	Preset string `json:"preset,omitempty"`
	// Width and Height give the input size of models with dynamic spatial
	// dimensions; they must match a fixed size when the model has one.
	Width, Height int `json:"-"`
	// FastJPEG enables DCT-domain JPEG downscaling (recorded in the spec).
	FastJPEG bool `json:"fast_jpeg,omitempty"`
	// TuneLayers cuts the graph before the last K dense layers so that the
	// head can fine-tune them (--tune-layers).
	TuneLayers int `json:"tune_layers,omitempty"`
	// Session configures ONNX Runtime.
	Session ort.SessionOptions `json:"-"`
	// NoSession skips creating the ONNX Runtime session (export, inspect).
	NoSession bool `json:"-"`
	// Spec, when set, is the exact preprocessing to use (a head's recorded
	// recipe), instead of the installed model's or the preset's.
	Spec *imaging.Spec `json:"spec,omitempty"`
	// Faces, when set (and Spec is not), makes the recipe crop faces: see
	// imaging.FaceSpec and ExtractFaces.
	Faces imaging.FaceSpec `json:"faces,omitzero"`
}

// Backbone is a frozen feature extractor ready to run: the model cut at its
// feature tensor, the exact preprocessing, and the identity under which its
// features are cached.
type Backbone struct {
	Ref       string // what the user named: a catalog name or a file path
	Name      string // catalog name, or the file's base name
	ModelPath string
	ModelHash string // hex SHA-256 of the model file

	Spec      imaging.Spec
	InputName string
	Choice    *backbone.FeatureChoice
	Dim       int

	// Tuned holds the dense layers cut off for --tune-layers, first to
	// last, with their pretrained weights.
	Tuned []backbone.DenseNode

	Full     *onnxpb.ModelProto // the model as read
	Cut      *onnxpb.ModelProto // cut at the feature tensor, output "features"
	Identity featcache.Identity
	Session  *ort.Session // nil with NoSession
	// Inferers is how many batches to run through Session at once: the
	// session runs each on one thread (see the package comment), and
	// SessionOptions.Threads (0: one per core) sets how many run together.
	Inferers int

	// Options are the options the backbone was opened with.
	Options BackboneOptions
}

// Close releases the ONNX Runtime session.
func (b *Backbone) Close() error {
	if b == nil || b.Session == nil {
		return nil
	}
	err := b.Session.Close()
	b.Session = nil
	return err
}

// IsModelFile reports whether ref names a file rather than a catalog entry.
func IsModelFile(ref string) bool {
	if strings.HasSuffix(strings.ToLower(ref), ".onnx") || strings.ContainsRune(ref, filepath.Separator) {
		return true
	}
	st, err := os.Stat(ref)
	return err == nil && !st.IsDir()
}

// OpenBackbone resolves ref (an installed model name or an .onnx file),
// finds its image input and feature tensor, cuts the graph there, and (unless
// opt.NoSession) starts an ONNX Runtime session on the cut model.
func OpenBackbone(ref string, opt BackboneOptions) (*Backbone, error) {
	b := &Backbone{Ref: ref, Options: opt}
	b.Options.Store = nil
	var meta *models.Meta
	if IsModelFile(ref) {
		// Heads and last-extract.json record the reference: make it work
		// from any folder.
		if abs, err := filepath.Abs(ref); err == nil {
			ref = abs
		}
		b.Ref, b.ModelPath = ref, ref
		b.Name = strings.TrimSuffix(filepath.Base(ref), filepath.Ext(ref))
	} else {
		if opt.Store == nil {
			return nil, fmt.Errorf("model %q: no model store to look it up in", ref)
		}
		inst, err := opt.Store.Get(ref)
		if err != nil {
			return nil, err
		}
		meta = &inst.Meta
		b.ModelPath = inst.ModelPath()
		b.Name = ref
	}
	data, err := os.ReadFile(b.ModelPath)
	if err != nil {
		return nil, err
	}
	b.ModelHash = backbone.ModelHash(data)
	if meta != nil && meta.SHA256 != "" && meta.SHA256 != b.ModelHash {
		return nil, fmt.Errorf("model %s: %s changed since it was installed (sha256 %s, expected %s); run `headtune models verify %s` or pull it again", ref, b.ModelPath, b.ModelHash[:12], meta.SHA256[:min(12, len(meta.SHA256))], ref)
	}
	m, err := backbone.ParseModel(data)
	data = nil
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	b.Full = m

	in, err := imageInput(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	b.InputName = in.Name
	spec, err := resolveSpec(meta, opt, in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	b.Spec = spec

	override := opt.FeatureTensor
	if override == "" && meta != nil {
		override = meta.FeatureTensor
	}
	choice, err := backbone.FindFeatureTensor(m, override)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	if opt.TuneLayers > 0 {
		layers, err := backbone.DenseChainN(m, choice.Tensor, opt.TuneLayers)
		if err != nil {
			return nil, fmt.Errorf("%s: --tune-layers: %w", b.ModelPath, err)
		}
		if len(layers) < opt.TuneLayers {
			return nil, fmt.Errorf("%s: --tune-layers %d: only %d dense layers precede the feature tensor %s", b.ModelPath, opt.TuneLayers, len(layers), choice.Tensor)
		}
		b.Tuned = layers
		choice, err = backbone.FindFeatureTensor(m, layers[0].Input)
		if err != nil {
			return nil, fmt.Errorf("%s: --tune-layers: %w", b.ModelPath, err)
		}
	}
	b.Choice = choice
	if choice.Dim <= 0 {
		return nil, fmt.Errorf("%s: cannot tell the size of feature tensor %s (shape %v); name another with --feature-tensor", b.ModelPath, choice.Tensor, choice.Shape)
	}
	b.Dim = int(choice.Dim)
	cut, err := backbone.CutAtFeature(m, choice)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	b.Cut = cut
	b.Identity = featcache.Identity{
		ModelHash:     b.ModelHash,
		FeatureTensor: choice.Tensor,
		Preprocess:    json.RawMessage(spec.Canonical()),
		Dim:           b.Dim,
	}
	if opt.NoSession {
		return b, nil
	}
	if _, err := ort.Init(""); err != nil {
		return nil, err
	}
	cutBytes, err := backbone.MarshalModel(cut)
	if err != nil {
		return nil, err
	}
	fixed := 0
	if in.Batch > 0 {
		fixed = in.Batch
	}
	var sessOpt ort.SessionOptions
	b.Inferers, sessOpt = PipelineThreads(opt.Session)
	b.Session, err = ort.NewSession(cutBytes, ort.SessionSpec{
		Input:       in.Name,
		InputShape:  inputShape(spec),
		Outputs:     []string{"features"},
		OutputSizes: []int{b.Dim},
		FixedBatch:  fixed,
	}, sessOpt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	return b, nil
}

// imageInputInfo describes a model's image input, with its declared shape
// for messages.
type imageInputInfo struct {
	backbone.ImageInfo
	Shape string
}

func (i imageInputInfo) ShapeString() string { return i.Shape }

func imageInput(m *onnxpb.ModelProto) (imageInputInfo, error) {
	var in imageInputInfo
	var err error
	in.ImageInfo, err = backbone.ImageInput(m)
	if err != nil {
		return in, err
	}
	for _, v := range m.Graph.Input {
		if v.GetName() != in.Name {
			continue
		}
		dims := v.GetType().GetTensorType().GetShape().GetDim()
		var parts []string
		for _, d := range dims {
			if p := d.GetDimParam(); p != "" || d.Value == nil {
				parts = append(parts, "?"+p)
			} else {
				parts = append(parts, fmt.Sprint(d.GetDimValue()))
			}
		}
		in.Shape = "[" + strings.Join(parts, ",") + "]"
	}
	return in, nil
}

// PipelineThreads turns a thread budget into the pipeline's layout: that
// many concurrent inference calls on a session with one intra-op thread.
func PipelineThreads(opt ort.SessionOptions) (inferers int, session ort.SessionOptions) {
	inferers = opt.Threads
	if inferers <= 0 {
		inferers = runtime.NumCPU()
	}
	opt.Threads = 1
	return inferers, opt
}

// inputShape is the per-sample input shape the spec fills.
func inputShape(s imaging.Spec) []int64 {
	if s.Layout == "NHWC" {
		return []int64{int64(s.Height), int64(s.Width), int64(s.Channels)}
	}
	return []int64{int64(s.Channels), int64(s.Height), int64(s.Width)}
}

// resolveSpec builds the preprocessing recipe: an installed model's own
// recipe, else the named preset, sized to the model's input.
func resolveSpec(meta *models.Meta, opt BackboneOptions, in imageInputInfo) (imaging.Spec, error) {
	var spec imaging.Spec
	var err error
	if opt.Spec != nil {
		spec = *opt.Spec
		if in.Width > 0 && (spec.Width != in.Width || spec.Height != in.Height) {
			return spec, fmt.Errorf("the recorded preprocessing makes %dx%d images but the model takes %dx%d", spec.Width, spec.Height, in.Width, in.Height)
		}
		return spec, spec.Validate()
	}
	if meta != nil && len(meta.Preprocess) > 0 && opt.Preset == "" {
		spec, err = meta.Spec()
		if err != nil {
			return spec, err
		}
	} else {
		name := opt.Preset
		if name == "" {
			name = "imagenet"
		}
		spec, err = imaging.Preset(name)
		if err != nil {
			return spec, err
		}
	}
	w, h := in.Width, in.Height
	switch {
	case w > 0 && h > 0:
		if (opt.Width > 0 && opt.Width != w) || (opt.Height > 0 && opt.Height != h) {
			return spec, fmt.Errorf("the model takes %dx%d images; --input-size %dx%d does not fit", w, h, opt.Width, opt.Height)
		}
	case opt.Width > 0 && opt.Height > 0:
		w, h = opt.Width, opt.Height
	case spec.Width > 0 && spec.Height > 0 && meta != nil:
		w, h = spec.Width, spec.Height
	default:
		return spec, fmt.Errorf("input %s has a dynamic size %s: give the size with --input-size WxH", in.Name, in.ShapeString())
	}
	spec = spec.WithInput(w, h, in.Channels, in.Layout)
	spec.FastJPEG = spec.FastJPEG || opt.FastJPEG
	if !opt.Faces.IsZero() {
		// Crops are sampled straight from the decoded photo at the input
		// size: no resize step, and no reduced JPEG decode.
		spec.Faces, spec.FastJPEG = opt.Faces, false
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	return spec, nil
}
