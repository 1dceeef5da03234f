package imaging

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
}
