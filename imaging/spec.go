package imaging

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// ResizeMode says how an image of any shape becomes the model's input size.
type ResizeMode string

const (
	// ResizeCrop scales the shorter side to Spec.ResizeShorter (or to the
	// crop size when 0) and cuts the centre Width x Height: torchvision's
	// Resize(s) + CenterCrop(size).
	ResizeCrop ResizeMode = "crop"
	// ResizeSquash scales both sides to Width x Height, ignoring aspect.
	ResizeSquash ResizeMode = "squash"
	// ResizeLetterbox scales to fit inside Width x Height keeping aspect and
	// fills the border with Spec.Background.
	ResizeLetterbox ResizeMode = "letterbox"
)

// Spec is the whole preprocessing recipe from decoded pixels to the model's
// input tensor. It is recorded with every cached feature, in every head file
// and in every export, so training and prediction feed the model identical
// tensors. The zero value is not valid; start from a Preset.
//
// A pixel value p in 0..255 of channel c becomes (p*Scale - Mean[c]) / Std[c],
// with channels in ChannelOrder (Mean and Std are given in that order too).
type Spec struct {
	Width  int `json:"width"`  // model input width in pixels
	Height int `json:"height"` // model input height in pixels

	Resize        ResizeMode `json:"resize"`
	ResizeShorter int        `json:"resize_shorter,omitempty"` // crop mode: shorter side before the crop; 0 means no border is cut
	Interpolation string     `json:"interpolation"`            // "bilinear", "bicubic", "area", "nearest"

	Channels     int    `json:"channels"`      // 3, or 1 for grey models
	ChannelOrder string `json:"channel_order"` // "RGB" or "BGR"
	Layout       string `json:"layout"`        // "NCHW" or "NHWC"

	Scale float32    `json:"scale"` // multiplies 0..255 pixels first (1/255 for 0..1)
	Mean  [3]float32 `json:"mean"`  // subtracted after Scale
	Std   [3]float32 `json:"std"`   // divides after Mean

	Background [3]uint8 `json:"background"` // alpha compositing and letterbox fill, RGB

	// FastJPEG allows DCT-domain downscaling while decoding JPEGs (1/2, 1/4,
	// 1/8: the largest reduction that stays at or above the size the resize
	// needs). It changes pixels slightly, so it is part of the recipe.
	FastJPEG bool `json:"fast_jpeg,omitempty"`

	// Faces, when set, makes every sample a face found in the image rather
	// than the whole image: a detector finds the faces and each becomes a
	// Width x Height crop (see FaceSpec), which replaces the Resize step.
	// The zero value (whole images) is left out of Canonical, so the hash
	// of every spec without faces is unchanged.
	Faces FaceSpec `json:"faces,omitzero"`
}

// FaceSpec is the face stage of a preprocessing recipe: which detector finds
// the faces, which of its detections count, and how a face becomes a crop.
// The detector runs elsewhere (package faces, which owns ONNX Runtime);
// imaging only records the recipe so that it is hashed with the rest.
type FaceSpec struct {
	// Detector names the detector and its decoding, e.g. "blazeface/1";
	// DetectorSHA256 is the SHA-256 (lower-case hex) of its ONNX file, so a
	// different file gives a different recipe.
	Detector       string `json:"detector"`
	DetectorSHA256 string `json:"detector_sha256"`
	// Threshold is the lowest detection score (0..1) kept.
	Threshold float32 `json:"threshold"`
	// MinSize is the smallest face kept: the larger side of its box, in
	// pixels of the decoded image. Smaller faces carry too little detail
	// for a crop, and tiny images upscaled for the detector give blobs it
	// takes for faces.
	MinSize float32 `json:"min_size"`
	// Suppression merges overlapping detections: "blend" (MediaPipe's
	// score-weighted average of every box overlapping the best one) or
	// "nms" (keep the best one only).
	Suppression string `json:"suppression"`
	// Align is "eyes" (rotate so the eyes are level) or "none" (upright
	// crop).
	Align string `json:"align"`
	// Margin widens the square crop: its side is (1 + 2*Margin) times the
	// larger side of the detected box, centred on the box.
	Margin float32 `json:"margin"`
}

// IsZero reports whether f is the zero FaceSpec (whole images, no faces).
func (f FaceSpec) IsZero() bool { return f == FaceSpec{} }

// Suppression and alignment names accepted in FaceSpec.
const (
	SuppressBlend = "blend"
	SuppressNMS   = "nms"
	AlignEyes     = "eyes"
	AlignNone     = "none"
)

// Validate reports the first thing wrong with f as one line, or nil. The
// zero FaceSpec is valid (no faces).
func (f FaceSpec) Validate() error {
	if f.IsZero() {
		return nil
	}
	if f.Detector == "" {
		return fmt.Errorf("preprocess spec: faces: no detector named")
	}
	if len(f.DetectorSHA256) != 64 || strings.Trim(f.DetectorSHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("preprocess spec: faces: detector_sha256 %q is not 64 lower-case hex digits", f.DetectorSHA256)
	}
	if !finite32(f.Threshold) || f.Threshold <= 0 || f.Threshold >= 1 {
		return fmt.Errorf("preprocess spec: faces: threshold %v must be between 0 and 1 (exclusive)", f.Threshold)
	}
	if !finite32(f.MinSize) || f.MinSize < 0 {
		return fmt.Errorf("preprocess spec: faces: min_size %v must be 0 or more pixels", f.MinSize)
	}
	if f.Suppression != SuppressBlend && f.Suppression != SuppressNMS {
		return fmt.Errorf("preprocess spec: faces: unknown suppression %q (want blend or nms)", f.Suppression)
	}
	if f.Align != AlignEyes && f.Align != AlignNone {
		return fmt.Errorf("preprocess spec: faces: unknown alignment %q (want eyes or none)", f.Align)
	}
	if !finite32(f.Margin) || f.Margin < 0 || f.Margin > 2 {
		return fmt.Errorf("preprocess spec: faces: margin %v must be 0..2", f.Margin)
	}
	return nil
}

// Interpolation names accepted in Spec.Interpolation.
const (
	// InterpBilinear is PIL's antialiased BILINEAR: a triangle filter whose
	// support grows with the reduction factor (what torchvision 0.14 applies
	// to PIL images).
	InterpBilinear = "bilinear"
	// InterpBicubic is PIL's antialiased BICUBIC (cubic convolution, a=-0.5).
	InterpBicubic = "bicubic"
	// InterpArea averages the source over each output pixel's footprint
	// with exact fractional coverage (OpenCV's INTER_AREA); for integer
	// reduction factors it equals PIL's BOX.
	InterpArea = "area"
	// InterpNearest picks the source pixel under each output pixel's centre
	// (PIL's NEAREST geometry).
	InterpNearest = "nearest"
)

// Layout and channel-order names accepted in Spec.
const (
	LayoutNCHW = "NCHW" // planar: all of channel 0, then channel 1, ...
	LayoutNHWC = "NHWC" // interleaved: the channels of pixel 0, then pixel 1, ...
	OrderRGB   = "RGB"
	OrderBGR   = "BGR"
)

// MaxInputSide is the largest model input side Validate accepts, in pixels.
const MaxInputSide = 8192

// Validate reports the first thing wrong with s as one line, or nil.
func (s Spec) Validate() error {
	if s.Width <= 0 || s.Height <= 0 || s.Width > MaxInputSide || s.Height > MaxInputSide {
		return fmt.Errorf("preprocess spec: input size %dx%d must be 1..%d on each side", s.Width, s.Height, MaxInputSide)
	}
	switch s.Resize {
	case ResizeCrop:
		if s.ResizeShorter != 0 && s.ResizeShorter < max(s.Width, s.Height) {
			return fmt.Errorf("preprocess spec: resize_shorter %d is smaller than the %dx%d crop (use 0 or at least %d)", s.ResizeShorter, s.Width, s.Height, max(s.Width, s.Height))
		}
		if s.ResizeShorter > 4*MaxInputSide {
			return fmt.Errorf("preprocess spec: resize_shorter %d exceeds %d", s.ResizeShorter, 4*MaxInputSide)
		}
	case ResizeSquash, ResizeLetterbox:
		if s.ResizeShorter != 0 {
			return fmt.Errorf("preprocess spec: resize_shorter %d is only meaningful with resize %q, not %q", s.ResizeShorter, ResizeCrop, s.Resize)
		}
	default:
		return fmt.Errorf("preprocess spec: unknown resize mode %q (want crop, squash or letterbox)", s.Resize)
	}
	switch s.Interpolation {
	case InterpBilinear, InterpBicubic, InterpArea, InterpNearest:
	default:
		return fmt.Errorf("preprocess spec: unknown interpolation %q (want bilinear, bicubic, area or nearest)", s.Interpolation)
	}
	if s.Channels != 1 && s.Channels != 3 {
		return fmt.Errorf("preprocess spec: channels %d must be 1 or 3", s.Channels)
	}
	if s.ChannelOrder != OrderRGB && s.ChannelOrder != OrderBGR {
		return fmt.Errorf("preprocess spec: unknown channel order %q (want RGB or BGR)", s.ChannelOrder)
	}
	if s.Layout != LayoutNCHW && s.Layout != LayoutNHWC {
		return fmt.Errorf("preprocess spec: unknown layout %q (want NCHW or NHWC)", s.Layout)
	}
	if !finite32(s.Scale) || s.Scale == 0 {
		return fmt.Errorf("preprocess spec: scale %v must be finite and non-zero", s.Scale)
	}
	if err := s.Faces.Validate(); err != nil {
		return err
	}
	if !s.Faces.IsZero() && s.Width != s.Height {
		return fmt.Errorf("preprocess spec: face crops are square, the %dx%d input is not", s.Width, s.Height)
	}
	for c := 0; c < 3; c++ {
		if !finite32(s.Mean[c]) {
			return fmt.Errorf("preprocess spec: mean[%d] %v is not finite", c, s.Mean[c])
		}
		if !finite32(s.Std[c]) || s.Std[c] == 0 {
			return fmt.Errorf("preprocess spec: std[%d] %v must be finite and non-zero", c, s.Std[c])
		}
	}
	return nil
}

func finite32(f float32) bool {
	return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0)
}

// Canonical returns the spec as compact JSON with fields in declaration
// order. It is stable across runs and Go versions for equal specs, and it is
// what Hash digests. Fields added later must be `omitempty` so that the hash
// of every existing spec stays the same.
func (s Spec) Canonical() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		// Only NaN/Inf floats make json.Marshal fail; encode them as
		// strings so the result is still deterministic.
		return []byte(fmt.Sprintf("%#v", s))
	}
	return b
}

// Hash is the lowercase hex SHA-256 of Canonical (64 characters). Two specs
// with the same hash feed a model identical tensors.
func (s Spec) Hash() string {
	sum := sha256.Sum256(s.Canonical())
	return hex.EncodeToString(sum[:])
}

// TensorLen is the number of float32 values one image occupies in the input
// tensor: Channels*Width*Height.
func (s Spec) TensorLen() int { return s.Channels * s.Width * s.Height }

// InputShape is the shape of one image in the input tensor, without the
// batch dimension: [Channels, Height, Width] for NCHW, [Height, Width,
// Channels] for NHWC.
func (s Spec) InputShape() []int64 {
	if s.Layout == LayoutNHWC {
		return []int64{int64(s.Height), int64(s.Width), int64(s.Channels)}
	}
	return []int64{int64(s.Channels), int64(s.Height), int64(s.Width)}
}

// ParseSpec decodes a spec written by Canonical (or any JSON with the same
// fields), refusing unknown fields, and validates it.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("preprocess spec: %w", err)
	}
	if dec.More() {
		return Spec{}, fmt.Errorf("preprocess spec: trailing data after the JSON object")
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// PresetNames lists the names Preset accepts.
var PresetNames = []string{"imagenet", "unit", "symmetric", "raw", "caffe"}

// Preset returns a named normalisation recipe at 224x224x3 NCHW; call
// WithInput to adapt it to the model's input.
//
//   - "imagenet": RGB, x/255 then mean (.485,.456,.406) std (.229,.224,.225);
//     shorter side to 256, centre crop 224, bilinear (torchvision's recipe).
//   - "unit": RGB, x/255 (0..1); shorter side to the input size, centre crop.
//   - "symmetric": RGB, x/127.5 - 1 (-1..1); as "unit" otherwise.
//   - "raw": RGB, 0..255; as "unit" otherwise.
//   - "caffe": BGR, 0..255 minus mean (103.939, 116.779, 123.68) in BGR
//     order, std 1; shorter side 256, centre crop 224.
func Preset(name string) (Spec, error) {
	s := Spec{
		Width: 224, Height: 224,
		Resize: ResizeCrop, Interpolation: InterpBilinear,
		Channels: 3, ChannelOrder: OrderRGB, Layout: LayoutNCHW,
		Scale: 1, Std: [3]float32{1, 1, 1},
		Background: [3]uint8{255, 255, 255},
	}
	switch name {
	case "imagenet":
		s.ResizeShorter = 256
		s.Scale = 1.0 / 255
		s.Mean = [3]float32{0.485, 0.456, 0.406}
		s.Std = [3]float32{0.229, 0.224, 0.225}
	case "unit":
		s.Scale = 1.0 / 255
	case "symmetric":
		s.Scale = 1.0 / 127.5
		s.Mean = [3]float32{1, 1, 1}
	case "raw":
	case "caffe":
		s.ResizeShorter = 256
		s.ChannelOrder = OrderBGR
		s.Mean = [3]float32{103.939, 116.779, 123.68}
	default:
		return Spec{}, fmt.Errorf("unknown preprocessing preset %q (known: %s)", name, strings.Join(PresetNames, ", "))
	}
	return s, nil
}

// WithInput returns s adapted to a model input of width x height pixels,
// channels (1 or 3) and layout ("NCHW" or "NHWC"). In crop mode a non-zero
// ResizeShorter keeps its ratio to the crop: the imagenet preset's 256/224
// becomes 342 for a 299x299 input. The result is not validated; call
// Validate.
func (s Spec) WithInput(width, height, channels int, layout string) Spec {
	if s.Resize == ResizeCrop && s.ResizeShorter > 0 && s.Width > 0 && s.Height > 0 {
		oldSide, newSide := max(s.Width, s.Height), max(width, height)
		s.ResizeShorter = int(math.Round(float64(s.ResizeShorter) * float64(newSide) / float64(oldSide)))
		if s.ResizeShorter < newSide {
			s.ResizeShorter = newSide
		}
	}
	s.Width, s.Height, s.Channels, s.Layout = width, height, channels, layout
	return s
}
