package pipeline

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/convtail"
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
	// head can fine-tune them (--tune-layers). When the feature tensor is
	// not after dense layers but is a globally pooled NCHW map
	// (backbone.PooledMap), it cuts before the last K convolutions of the
	// straight conv run that ends there instead, and the features are
	// those convolutions' input map, flattened (Backbone.TunedConv).
	TuneLayers int `json:"tune_layers,omitempty"`
	// ConvTail, when set, replaces the weights of the last len(ConvTail)
	// convolutions before the pooled feature map with these tuned ones
	// (backbone.WriteConvChain) before cutting: the features are then the
	// tuned tail's pooled output (predict and export of a head trained on
	// a conv tail). ConvTailFrom must name the tensor the first of them
	// reads, as recorded at training time.
	ConvTail     []convtail.Layer `json:"-"`
	ConvTailFrom string           `json:"-"`
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
	// TunedConv holds the convolutions cut off for --tune-layers on a
	// convolutional tail, first to last, with their pretrained weights
	// (batch norm folded); Pooled is then the feature tensor they lead to
	// (what a frozen extraction would pool), while Choice is their input
	// map, flattened: Dim is C*H*W.
	TunedConv []backbone.ConvNode
	Pooled    *backbone.FeatureChoice

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
	identTensor := ""
	if opt.TuneLayers > 0 && len(opt.ConvTail) > 0 {
		return nil, fmt.Errorf("%s: TuneLayers and ConvTail exclude each other", b.ModelPath)
	}
	if opt.TuneLayers > 0 {
		layers, err := backbone.DenseChainN(m, choice.Tensor, opt.TuneLayers)
		if err != nil {
			return nil, fmt.Errorf("%s: --tune-layers: %w", b.ModelPath, err)
		}
		if mapT := backbone.PooledMap(m, choice); len(layers) == 0 && mapT != "" {
			chain, err := backbone.ConvChainN(m, mapT, opt.TuneLayers)
			if err != nil {
				return nil, fmt.Errorf("%s: --tune-layers: %w", b.ModelPath, err)
			}
			if len(chain) == 0 {
				return nil, fmt.Errorf("%s: --tune-layers %d: the feature map %s does not end a straight chain of convolutions (Conv, optional BatchNormalization, then Relu, LeakyRelu 0.1, Clip 0..6 or nothing, each reading the previous one's output) nor follows dense layers", b.ModelPath, opt.TuneLayers, mapT)
			}
			if len(chain) < opt.TuneLayers {
				return nil, fmt.Errorf("%s: --tune-layers %d: only %d convolutions precede the feature map %s in a straight chain (the walk stops before %s)", b.ModelPath, opt.TuneLayers, len(chain), mapT, chain[0].Input)
			}
			b.TunedConv, b.Pooled = chain, choice
			l0 := chain[0].Layer
			choice = &backbone.FeatureChoice{Tensor: chain[0].Input, Dim: int64(l0.InLen()), Shape: []int64{-1, int64(l0.InC), int64(l0.InH), int64(l0.InW)},
				Layout: "NCHW", Pool: backbone.PoolFlatten, Rule: backbone.RuleOverride}
			// The same tensor pooled is another feature: keep the two
			// apart in the cache.
			identTensor = chain[0].Input + SpatialSuffix
		} else {
			if len(layers) < opt.TuneLayers {
				return nil, fmt.Errorf("%s: --tune-layers %d: only %d dense layers precede the feature tensor %s", b.ModelPath, opt.TuneLayers, len(layers), choice.Tensor)
			}
			b.Tuned = layers
			choice, err = backbone.FindFeatureTensor(m, layers[0].Input)
			if err != nil {
				return nil, fmt.Errorf("%s: --tune-layers: %w", b.ModelPath, err)
			}
		}
	}
	if len(opt.ConvTail) > 0 {
		mapT := backbone.PooledMap(m, choice)
		if mapT == "" {
			return nil, fmt.Errorf("%s: feature tensor %s is not a globally pooled NCHW map, so the head's tuned convolutions have nowhere to go", b.ModelPath, choice.Tensor)
		}
		chain, err := backbone.ConvChainN(m, mapT, len(opt.ConvTail))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
		}
		if len(chain) != len(opt.ConvTail) || chain[0].Input != opt.ConvTailFrom {
			return nil, fmt.Errorf("%s: the convolutions before %s are not the %d the head was tuned on (from %s)", b.ModelPath, mapT, len(opt.ConvTail), opt.ConvTailFrom)
		}
		tuned, err := backbone.WriteConvChain(m, chain, opt.ConvTail)
		if err != nil {
			return nil, fmt.Errorf("%s: write the tuned convolutions: %w", b.ModelPath, err)
		}
		m, b.Full = tuned, tuned
		if choice, err = backbone.FindFeatureTensor(m, choice.Tensor); err != nil {
			return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
		}
		identTensor = TunedFeatureTensor(choice.Tensor, opt.ConvTail)
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
		FeatureTensor: cmp.Or(identTensor, choice.Tensor),
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
		InputShape:  spec.InputShape(),
		Outputs:     []string{"features"},
		OutputSizes: []int{b.Dim},
		FixedBatch:  fixed,
	}, sessOpt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.ModelPath, err)
	}
	return b, nil
}

// SpatialSuffix marks, in a cache identity's FeatureTensor, the flattened
// map cached for --tune-layers on a convolutional tail, so that its rows
// never mix with the same tensor's pooled features.
const SpatialSuffix = "#map"

// TunedSuffix marks, in a cache identity's FeatureTensor, features read
// through tuned convolutions (BackboneOptions.ConvTail); the hash of their
// weights follows it.
const TunedSuffix = "#tuned:"

// TunedFeatureTensor is the cache identity's FeatureTensor of features
// read at tensor through the tuned convolutions layers.
func TunedFeatureTensor(tensor string, layers []convtail.Layer) string {
	return tensor + TunedSuffix + convTailHash(layers)
}

func convTailHash(layers []convtail.Layer) string {
	h := sha256.New()
	var b [4]byte
	for _, l := range layers {
		fmt.Fprintf(h, "%d %d %d %d %d %d %d %d %s;", l.InC, l.InH, l.InW, l.OutC, l.K, l.Stride, l.Pad, l.Groups, l.Act)
		for _, v := range append(append([]float32(nil), l.W...), l.B...) {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
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
