package darknet

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/imaging"
)

// Options adjust an import.
type Options struct {
	// Width and Height replace the [net] section's input size when > 0.
	// Darknet's detectors are fully convolutional, so any multiple of
	// their total stride (32 for YOLOv2/v3/v4) works with the same weights;
	// classifiers with [connected] layers need the size they were trained
	// at.
	Width, Height int
	// InputName names the graph input; "data" when empty.
	InputName string
}

// Info describes an imported network.
type Info struct {
	Header Header `json:"header"`
	// Width, Height and Channels are the graph input's size; the input is
	// float32 [N, Channels, Height, Width], RGB in 0..1.
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	Channels int    `json:"channels"`
	Input    string `json:"input"`
	// Letterbox says how Darknet fits images to the input: keeping aspect
	// on a 0.5 grey border (detectors) or stretching (classifiers, and
	// cfgs with letter_box=0).
	Letterbox bool `json:"letterbox"`
	// Outputs are the graph outputs: the raw tensors that fed each cut
	// detection head, in cfg order, or the last layer's output.
	Outputs []string `json:"outputs"`
	// Heads lists the cut detection layers ("yolo", "region", ...).
	Heads []string `json:"heads,omitempty"`
	// Layers describes every cfg layer in order (index = Darknet's layer
	// number).
	Layers []Layer `json:"layers"`
	// Params is the number of float32 values read from the weights file.
	Params int64 `json:"params"`
}

// Layer is one cfg section after [net] as imported.
type Layer struct {
	Type string `json:"type"`
	// Tensor is the graph tensor holding the layer's output, "" for cut
	// heads and [cost] layers (which have none in the graph).
	Tensor string `json:"tensor,omitempty"`
	// C, H, W are Darknet's output dimensions.
	C, H, W int
}

// Spec is the preprocessing Darknet applies: RGB scaled to 0..1, NCHW,
// letterboxed on grey 128 (Darknet fills with 0.5) or stretched, bilinear.
func (i *Info) Spec() imaging.Spec {
	s := imaging.Spec{
		Width: i.Width, Height: i.Height,
		Resize: imaging.ResizeSquash, Interpolation: imaging.InterpBilinear,
		Channels: i.Channels, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNCHW,
		Scale: 1.0 / 255, Std: [3]float32{1, 1, 1},
	}
	if i.Letterbox {
		s.Resize = imaging.ResizeLetterbox
		s.Background = [3]uint8{128, 128, 128}
	}
	return s
}

// Blob is one run of float32 values in a .weights file, in file order.
type Blob struct {
	Layer int    // Darknet layer number
	Kind  string // "bias", "scale", "mean", "variance" or "weight"
	N     int    // number of float32 values
}

// BuildFiles imports cfgPath and weightsPath. Every error names the file
// at fault.
func BuildFiles(cfgPath, weightsPath string, opts Options) (*onnxpb.ModelProto, *Info, error) {
	cf, err := os.Open(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	defer cf.Close()
	cfg, err := ParseConfig(cf, filepath.Base(cfgPath))
	if err != nil {
		return nil, nil, err
	}
	wf, err := os.Open(weightsPath)
	if err != nil {
		return nil, nil, err
	}
	defer wf.Close()
	return Build(cfg, wf, weightsPath, opts)
}

// Build translates cfg into an ONNX model with the weights read from w
// (named weightsName in messages). The weights must match the cfg exactly:
// a file that ends early or holds values after the last layer is refused.
func Build(cfg *Config, w io.Reader, weightsName string, opts Options) (*onnxpb.ModelProto, *Info, error) {
	if w == nil {
		return nil, nil, fmt.Errorf("%s: no weights", cfg.Name)
	}
	h, err := ReadHeader(w)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", weightsName, err)
	}
	t := &translator{cfg: cfg, opts: opts, fr: newFloatReader(w), weightsName: weightsName}
	t.info.Header = h
	m, err := t.run()
	if err != nil {
		return nil, nil, err
	}
	extra, err := t.fr.surplus()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", weightsName, err)
	}
	if extra > 0 {
		return nil, nil, fmt.Errorf("%s: %d bytes left after the %d weights that %s needs; the weights belong to another cfg", weightsName, extra, t.fr.read, cfg.Name)
	}
	t.info.Params = t.fr.read
	return m, &t.info, nil
}

// Layout lists the float32 runs a .weights file for cfg holds after its
// header, in order, without reading any weights. Tools that write weights
// (and the tests) use it.
func Layout(cfg *Config, opts Options) ([]Blob, error) {
	t := &translator{cfg: cfg, opts: opts, layoutOnly: true}
	if _, err := t.run(); err != nil {
		return nil, err
	}
	return t.blobs, nil
}

type tensor struct {
	name    string
	c, h, w int
	flat    bool // [N, c] rather than [N, c, h, w]
}

type translator struct {
	cfg         *Config
	opts        Options
	fr          *floatReader
	weightsName string
	layoutOnly  bool
	blobs       []Blob
	b           *backbone.Builder
	info        Info
	outs        []tensor // per layer; name "" for layers without output
	layer       int
}

// read takes the next n floats of the weights file for the current layer.
func (t *translator) read(kind string, n int) ([]float32, error) {
	if n < 0 || n > maxBlob {
		return nil, fmt.Errorf("%d %s values in one layer: more than the %d the importer accepts", n, kind, maxBlob)
	}
	t.blobs = append(t.blobs, Blob{Layer: t.layer, Kind: kind, N: n})
	if t.layoutOnly {
		v := make([]float32, n)
		if kind == "variance" || kind == "scale" {
			for i := range v {
				v[i] = 1
			}
		}
		return v, nil
	}
	v, err := t.fr.next(n)
	if err != nil {
		return nil, weightsError{fmt.Errorf("%s: %v while reading %d %s values of layer %d (%s line %d) after %d values; the weights belong to another cfg or the file is truncated",
			t.weightsName, err, n, kind, t.layer, t.cfg.Name, t.cfg.Layers()[t.layer].Line, t.fr.read)}
	}
	return v, nil
}

// maxBlob bounds one layer's weights (1 GiB of float32); VGG-16's first
// connected layer, the largest in Darknet's cfgs, has 103 million.
const maxBlob = 1 << 28

// maxSide bounds a feature map's sides, so a cfg with absurd padding is
// refused before anything is allocated for it.
const maxSide = imaging.MaxInputSide

// weightsError is a problem of the weights file; its message already
// names the file and the layer.
type weightsError struct{ error }

func (e weightsError) Unwrap() error { return e.error }

// trainingKeys may appear in layer sections and do not change inference.
var trainingKeys = map[string]bool{
	"stopbackward": true, "train_only_bn": true, "learning_rate": true, "momentum": true, "decay": true,
}

func (t *translator) run() (*onnxpb.ModelProto, error) {
	for _, s := range t.cfg.Sections {
		s.used = map[string]bool{}
	}
	net := t.cfg.Net()
	width, err := net.Int("width", 0)
	if err != nil {
		return nil, t.errNet(err)
	}
	height, err := net.Int("height", 0)
	if err != nil {
		return nil, t.errNet(err)
	}
	channels, err := net.Int("channels", 0)
	if err != nil {
		return nil, t.errNet(err)
	}
	if t.opts.Width > 0 {
		width = t.opts.Width
	}
	if t.opts.Height > 0 {
		height = t.opts.Height
	}
	if width <= 0 || height <= 0 || width > imaging.MaxInputSide || height > imaging.MaxInputSide {
		return nil, t.errNet(fmt.Errorf("input size %dx%d: width and height must be 1..%d", width, height, imaging.MaxInputSide))
	}
	if channels != 1 && channels != 3 {
		return nil, t.errNet(fmt.Errorf("channels=%d: only images (1 or 3 channels) are supported", channels))
	}
	hasHead := false
	for _, s := range t.cfg.Layers() {
		switch s.Type {
		case "yolo", "region", "detection", "gaussian_yolo":
			hasHead = true
		}
	}
	lb, err := net.Int("letter_box", -1)
	if err != nil {
		return nil, t.errNet(err)
	}
	t.info.Letterbox = lb == 1 || (lb == -1 && hasHead)
	t.info.Width, t.info.Height, t.info.Channels = width, height, channels
	t.info.Input = t.opts.InputName
	if t.info.Input == "" {
		t.info.Input = "data"
	}

	t.b = backbone.NewBuilder(strings.TrimSuffix(t.cfg.Name, filepath.Ext(t.cfg.Name)))
	t.b.Input(t.info.Input, -1, int64(channels), int64(height), int64(width))
	cur := tensor{name: t.info.Input, c: channels, h: height, w: width}
	var heads []tensor
	last := -1
	for i, s := range t.cfg.Layers() {
		t.layer = i
		n0 := len(t.b.Graph.Node)
		out, err := t.layerOp(s, cur)
		if err != nil {
			var we weightsError
			if errors.As(err, &we) {
				return nil, err // names the weights file and the layer
			}
			return nil, fmt.Errorf("%s: %w", s.where(t.cfg.Name, i), err)
		}
		for _, k := range s.Keys {
			if !s.used[k] && !trainingKeys[k] && !isHead(s.Type) && s.Type != "cost" {
				return nil, fmt.Errorf("%s: option %s is not supported by the importer", s.where(t.cfg.Name, i), k)
			}
		}
		l := Layer{Type: s.Type}
		switch {
		case isHead(s.Type):
			if cur.name == t.info.Input {
				return nil, fmt.Errorf("%s: a detection head needs a layer before it", s.where(t.cfg.Name, i))
			}
			heads = append(heads, cur)
			t.info.Heads = append(t.info.Heads, s.Type)
			t.outs = append(t.outs, tensor{})
		case s.Type == "cost":
			// Training loss: passes its input through; no graph tensor.
			t.outs = append(t.outs, tensor{})
		default:
			// Every layer's result gets a stable name and a declared
			// shape, so feature detection and tests can find it.
			name := fmt.Sprintf("layer_%d", i)
			if !renameOutput(t.b, n0, out.name, name) {
				// The layer passes an earlier tensor through (dropout,
				// a one-layer route).
				t.b.Node("Identity", []string{out.name}, []string{name})
			}
			out.name = name
			t.declare(out)
			t.outs = append(t.outs, out)
			l.Tensor = name
			last = i
			cur = out
		}
		l.C, l.H, l.W = cur.c, cur.h, cur.w
		t.info.Layers = append(t.info.Layers, l)
	}
	if last < 0 {
		return nil, fmt.Errorf("%s: no layers", t.cfg.Name)
	}
	if len(heads) == 0 {
		heads = []tensor{t.outs[last]}
	}
	seen := map[string]bool{}
	for _, h := range heads {
		if seen[h.name] {
			continue
		}
		seen[h.name] = true
		t.info.Outputs = append(t.info.Outputs, h.name)
		t.b.Output(h.name, h.dims()...)
	}
	return t.b.Model(0), nil
}

func isHead(typ string) bool {
	switch typ {
	case "yolo", "region", "detection", "gaussian_yolo":
		return true
	}
	return false
}

func (t *translator) errNet(err error) error {
	return fmt.Errorf("%s: %w", t.cfg.Net().where(t.cfg.Name, -1), err)
}

func (x tensor) dims() []int64 {
	if x.flat {
		return []int64{-1, int64(x.c)}
	}
	return []int64{-1, int64(x.c), int64(x.h), int64(x.w)}
}

func (t *translator) declare(x tensor) {
	t.b.Graph.ValueInfo = append(t.b.Graph.ValueInfo, backbone.ValueInfo(x.name, onnxpb.TensorProto_FLOAT, x.dims()))
}

// renameOutput renames tensor old to new if a node from index n0 on
// produces it (and so nothing before n0 reads it), reporting whether it did.
func renameOutput(b *backbone.Builder, n0 int, old, new string) bool {
	nodes := b.Graph.Node[n0:]
	for _, n := range nodes {
		for j, o := range n.Output {
			if o != old {
				continue
			}
			n.Output[j] = new
			for _, m := range nodes {
				for k, in := range m.Input {
					if in == old {
						m.Input[k] = new
					}
				}
			}
			b.Unique(new)
			return true
		}
	}
	return false
}

// ref resolves a layer reference (negative: relative to the current layer).
func (t *translator) ref(idx int) (tensor, error) {
	i := idx
	if idx < 0 {
		i = t.layer + idx
	}
	if i < 0 || i >= t.layer {
		return tensor{}, fmt.Errorf("refers to layer %d, which is not an earlier layer", i)
	}
	x := t.outs[i]
	if x.name == "" {
		return tensor{}, fmt.Errorf("refers to layer %d ([%s]), which has no output in the imported graph", i, t.cfg.Layers()[i].Type)
	}
	return x, nil
}

func (t *translator) layerOp(s *Section, in tensor) (tensor, error) {
	switch s.Type {
	case "convolutional", "conv":
		return t.conv(s, in)
	case "connected":
		return t.connected(s, in)
	case "maxpool":
		return t.maxpool(s, in)
	case "avgpool":
		if in.flat {
			return in, fmt.Errorf("average pooling needs a feature map, the input is flat")
		}
		out := tensor{c: in.c, h: 1, w: 1}
		out.name = t.b.Op("GlobalAveragePool", "avgpool", []string{in.name})
		return out, nil
	case "shortcut":
		return t.shortcut(s, in)
	case "route":
		return t.route(s)
	case "upsample":
		return t.upsample(s, in)
	case "reorg":
		return t.reorg(s, in)
	case "softmax":
		return t.softmax(s, in)
	case "dropout":
		if _, err := s.Float("probability", 0.5); err != nil {
			return in, err
		}
		return in, nil
	case "yolo", "region", "detection", "gaussian_yolo", "cost":
		return in, nil
	}
	return in, fmt.Errorf("layer type [%s] is not supported (supported: convolutional, connected, maxpool, avgpool, shortcut, route, upsample, reorg, softmax, dropout; yolo/region/detection heads are cut)", s.Type)
}

// activation appends Darknet's activation function.
func (t *translator) activation(s *Section, x string, def string) (string, error) {
	a := s.String("activation", def)
	switch a {
	case "linear":
		return x, nil
	case "leaky":
		return t.b.Op("LeakyRelu", "leaky", []string{x}, backbone.AttrFloat("alpha", 0.1)), nil
	case "relu":
		return t.b.Op("Relu", "relu", []string{x}), nil
	case "logistic":
		return t.b.Op("Sigmoid", "logistic", []string{x}), nil
	case "tanh":
		return t.b.Op("Tanh", "tanh", []string{x}), nil
	case "mish":
		// x * tanh(softplus(x)); ONNX's Mish needs opset 18.
		sp := t.b.Op("Softplus", "softplus", []string{x})
		th := t.b.Op("Tanh", "tanh", []string{sp})
		return t.b.Op("Mul", "mish", []string{x, th}), nil
	case "swish":
		sg := t.b.Op("Sigmoid", "sigmoid", []string{x})
		return t.b.Op("Mul", "swish", []string{x, sg}), nil
	}
	return "", fmt.Errorf("activation=%s is not supported (linear, leaky, relu, logistic, tanh, mish, swish)", a)
}

// unflat turns a [N, c] tensor into [N, c, 1, 1] for spatial layers.
func (t *translator) unflat(x tensor) tensor {
	if !x.flat {
		return x
	}
	shape := t.b.Int64Initializer("shape", []int64{4}, []int64{0, int64(x.c), 1, 1})
	return tensor{name: t.b.Op("Reshape", "unflat", []string{x.name, shape}), c: x.c, h: 1, w: 1}
}

// bnFold reads batch-norm parameters of n channels (after the biases that
// double as its shift) and returns per-channel multipliers and the new
// shift, exactly as Darknet normalises: (x - mean) / (sqrt(var) + 1e-6).
func (t *translator) bnFold(bias []float32, n int) (mul []float64, shift []float32, err error) {
	scale, err := t.read("scale", n)
	if err != nil {
		return nil, nil, err
	}
	mean, err := t.read("mean", n)
	if err != nil {
		return nil, nil, err
	}
	variance, err := t.read("variance", n)
	if err != nil {
		return nil, nil, err
	}
	mul = make([]float64, n)
	shift = make([]float32, n)
	for f := 0; f < n; f++ {
		if variance[f] < 0 && !t.layoutOnly {
			return nil, nil, weightsError{fmt.Errorf("%s: layer %d has a negative batch-norm variance (%g in channel %d); the weights do not match the cfg", t.weightsName, t.layer, variance[f], f)}
		}
		mul[f] = float64(scale[f]) / (math.Sqrt(float64(variance[f])) + .000001)
		shift[f] = float32(float64(bias[f]) - float64(mean[f])*mul[f])
	}
	return mul, shift, nil
}

func (t *translator) conv(s *Section, in tensor) (tensor, error) {
	in = t.unflat(in)
	n, err := s.Int("filters", 1)
	if err != nil {
		return in, err
	}
	size, err := s.Int("size", 1)
	if err != nil {
		return in, err
	}
	stride, err := s.Int("stride", 1)
	if err != nil {
		return in, err
	}
	pad, err := s.Int("pad", 0)
	if err != nil {
		return in, err
	}
	padding, err := s.Int("padding", 0)
	if err != nil {
		return in, err
	}
	if pad != 0 {
		padding = size / 2
	}
	groups, err := s.Int("groups", 1)
	if err != nil {
		return in, err
	}
	bn, err := s.Int("batch_normalize", 0)
	if err != nil {
		return in, err
	}
	for _, k := range []string{"stride_x", "stride_y", "dilation", "binary", "xnor", "dontloadscales", "dontload", "antialiasing", "deform", "share_index"} {
		if _, ok := s.Options[k]; ok {
			return in, fmt.Errorf("option %s is not supported by the importer", k)
		}
	}
	switch {
	case n <= 0 || size <= 0 || stride <= 0 || padding < 0:
		return in, fmt.Errorf("filters=%d size=%d stride=%d padding=%d: must be positive", n, size, stride, padding)
	case groups <= 0 || in.c%groups != 0 || n%groups != 0:
		return in, fmt.Errorf("groups=%d must divide the %d input channels and %d filters", groups, in.c, n)
	}
	oh := (in.h+2*padding-size)/stride + 1
	ow := (in.w+2*padding-size)/stride + 1
	if oh <= 0 || ow <= 0 || in.h+2*padding < size || in.w+2*padding < size {
		return in, fmt.Errorf("a %dx%d kernel does not fit the %dx%d input; use a larger network input", size, size, in.w, in.h)
	}
	if oh > maxSide || ow > maxSide || n > maxBlob || padding > maxSide {
		return in, fmt.Errorf("output %dx%dx%d (padding %d) is larger than the importer accepts", n, oh, ow, padding)
	}
	bias, err := t.read("bias", n)
	if err != nil {
		return in, err
	}
	var mul []float64
	if bn != 0 {
		if mul, bias, err = t.bnFold(bias, n); err != nil {
			return in, err
		}
	}
	per := in.c / groups * size * size
	w, err := t.read("weight", n*per)
	if err != nil {
		return in, err
	}
	if mul != nil {
		for f := 0; f < n; f++ {
			for j, v := range w[f*per : (f+1)*per] {
				w[f*per+j] = float32(float64(v) * mul[f])
			}
		}
	}
	wn := t.b.Initializer(fmt.Sprintf("conv%d_w", t.layer), []int64{int64(n), int64(in.c / groups), int64(size), int64(size)}, w)
	bnm := t.b.Initializer(fmt.Sprintf("conv%d_b", t.layer), []int64{int64(n)}, bias)
	p := int64(padding)
	y := t.b.Op("Conv", "conv", []string{in.name, wn, bnm},
		backbone.AttrInts("kernel_shape", int64(size), int64(size)),
		backbone.AttrInts("strides", int64(stride), int64(stride)),
		backbone.AttrInts("pads", p, p, p, p),
		backbone.AttrInt("group", int64(groups)))
	y, err = t.activation(s, y, "logistic")
	if err != nil {
		return in, err
	}
	return tensor{name: y, c: n, h: oh, w: ow}, nil
}

func (t *translator) connected(s *Section, in tensor) (tensor, error) {
	n, err := s.Int("output", 1)
	if err != nil {
		return in, err
	}
	bn, err := s.Int("batch_normalize", 0)
	if err != nil {
		return in, err
	}
	if n <= 0 || n > maxBlob {
		return in, fmt.Errorf("output=%d must be 1..%d", n, maxBlob)
	}
	inputs := in.c * in.h * in.w
	x := in.name
	if !in.flat {
		x = t.b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
	}
	bias, err := t.read("bias", n)
	if err != nil {
		return in, err
	}
	w, err := t.read("weight", n*inputs)
	if err != nil {
		return in, err
	}
	if bn != 0 {
		mul, shift, err := t.bnFold(bias, n)
		if err != nil {
			return in, err
		}
		for f := 0; f < n; f++ {
			for j, v := range w[f*inputs : (f+1)*inputs] {
				w[f*inputs+j] = float32(float64(v) * mul[f])
			}
		}
		bias = shift
	}
	wn := t.b.Initializer(fmt.Sprintf("fc%d_w", t.layer), []int64{int64(n), int64(inputs)}, w)
	bnm := t.b.Initializer(fmt.Sprintf("fc%d_b", t.layer), []int64{int64(n)}, bias)
	y := t.b.Op("Gemm", "fc", []string{x, wn, bnm}, backbone.AttrInt("transB", 1))
	y, err = t.activation(s, y, "logistic")
	if err != nil {
		return in, err
	}
	return tensor{name: y, c: n, h: 1, w: 1, flat: true}, nil
}

func (t *translator) maxpool(s *Section, in tensor) (tensor, error) {
	in = t.unflat(in)
	stride, err := s.Int("stride", 1)
	if err != nil {
		return in, err
	}
	size, err := s.Int("size", stride)
	if err != nil {
		return in, err
	}
	padding, err := s.Int("padding", size-1)
	if err != nil {
		return in, err
	}
	for _, k := range []string{"stride_x", "stride_y", "maxpool_depth", "antialiasing", "out_channels"} {
		if _, ok := s.Options[k]; ok {
			return in, fmt.Errorf("option %s is not supported by the importer", k)
		}
	}
	if size <= 0 || stride <= 0 || padding < 0 {
		return in, fmt.Errorf("size=%d stride=%d padding=%d: must be positive", size, stride, padding)
	}
	// Darknet starts windows at -padding/2 and pads the far side with the
	// rest; both sides count as -inf.
	lo, hi := padding/2, padding-padding/2
	if lo >= size || hi >= size {
		return in, fmt.Errorf("padding=%d must be below twice size=%d", padding, size)
	}
	oh := (in.h+padding-size)/stride + 1
	ow := (in.w+padding-size)/stride + 1
	if oh <= 0 || ow <= 0 {
		return in, fmt.Errorf("a %dx%d window does not fit the %dx%d input", size, size, in.w, in.h)
	}
	// ONNX's output size floor((h+lo+hi-size)/stride)+1 equals Darknet's.
	y := t.b.Op("MaxPool", "maxpool", []string{in.name},
		backbone.AttrInts("kernel_shape", int64(size), int64(size)),
		backbone.AttrInts("strides", int64(stride), int64(stride)),
		backbone.AttrInts("pads", int64(lo), int64(lo), int64(hi), int64(hi)))
	return tensor{name: y, c: in.c, h: oh, w: ow}, nil
}

func (t *translator) shortcut(s *Section, in tensor) (tensor, error) {
	from, err := s.Ints("from")
	if err != nil {
		return in, err
	}
	if len(from) != 1 {
		return in, fmt.Errorf("from=%s: only one layer is supported", s.Options["from"])
	}
	alpha, err := s.Float("alpha", 1)
	if err != nil {
		return in, err
	}
	beta, err := s.Float("beta", 1)
	if err != nil {
		return in, err
	}
	if alpha != 1 || beta != 1 {
		return in, fmt.Errorf("alpha=%g beta=%g: only a plain sum is supported", alpha, beta)
	}
	if wt := s.String("weights_type", "none"); wt != "none" {
		return in, fmt.Errorf("weights_type=%s is not supported", wt)
	}
	other, err := t.ref(from[0])
	if err != nil {
		return in, fmt.Errorf("from: %w", err)
	}
	if other.flat || in.flat || other.c != in.c || other.h != in.h || other.w != in.w {
		return in, fmt.Errorf("adds layer output %dx%dx%d to %dx%dx%d; only equal shapes are supported", other.c, other.h, other.w, in.c, in.h, in.w)
	}
	y := t.b.Op("Add", "shortcut", []string{in.name, other.name})
	y, err = t.activation(s, y, "linear")
	if err != nil {
		return in, err
	}
	return tensor{name: y, c: in.c, h: in.h, w: in.w}, nil
}

func (t *translator) route(s *Section) (tensor, error) {
	layers, err := s.Ints("layers")
	if err != nil {
		return tensor{}, err
	}
	groups, err := s.Int("groups", 1)
	if err != nil {
		return tensor{}, err
	}
	gid, err := s.Int("group_id", 0)
	if err != nil {
		return tensor{}, err
	}
	if groups <= 0 || gid < 0 || gid >= groups {
		return tensor{}, fmt.Errorf("groups=%d group_id=%d: need 0 <= group_id < groups", groups, gid)
	}
	var parts []string
	out := tensor{}
	for k, idx := range layers {
		x, err := t.ref(idx)
		if err != nil {
			return tensor{}, fmt.Errorf("layers: %w", err)
		}
		x = t.unflat(x)
		if k == 0 {
			out.h, out.w = x.h, x.w
		} else if x.h != out.h || x.w != out.w {
			return tensor{}, fmt.Errorf("layers: joins a %dx%d map to a %dx%d map; sizes must be equal", x.w, x.h, out.w, out.h)
		}
		if x.c%groups != 0 {
			return tensor{}, fmt.Errorf("groups=%d does not divide the %d channels of layer %d", groups, x.c, idx)
		}
		name := x.name
		if groups > 1 {
			per := int64(x.c / groups)
			st := t.b.Int64Initializer("starts", []int64{1}, []int64{int64(gid) * per})
			en := t.b.Int64Initializer("ends", []int64{1}, []int64{int64(gid+1) * per})
			ax := t.b.Int64Initializer("axes", []int64{1}, []int64{1})
			name = t.b.Op("Slice", "group", []string{x.name, st, en, ax})
		}
		parts = append(parts, name)
		out.c += x.c / groups
	}
	if len(parts) == 1 {
		out.name = parts[0]
		return out, nil
	}
	out.name = t.b.Op("Concat", "route", parts, backbone.AttrInt("axis", 1))
	return out, nil
}

func (t *translator) upsample(s *Section, in tensor) (tensor, error) {
	in = t.unflat(in)
	stride, err := s.Int("stride", 2)
	if err != nil {
		return in, err
	}
	scale, err := s.Float("scale", 1)
	if err != nil {
		return in, err
	}
	if stride <= 0 {
		return in, fmt.Errorf("stride=%d: only upsampling (stride > 0) is supported", stride)
	}
	if in.h*stride > maxSide || in.w*stride > maxSide {
		return in, fmt.Errorf("stride=%d makes a %dx%d map, larger than the importer accepts", stride, in.w*stride, in.h*stride)
	}
	sc := t.b.Initializer("scales", []int64{4}, []float32{1, 1, float32(stride), float32(stride)})
	y := t.b.Op("Resize", "upsample", []string{in.name, "", sc},
		backbone.AttrString("mode", "nearest"),
		backbone.AttrString("coordinate_transformation_mode", "asymmetric"),
		backbone.AttrString("nearest_mode", "floor"))
	if scale != 1 {
		k := t.b.Initializer("scale", []int64{1}, []float32{float32(scale)})
		y = t.b.Op("Mul", "upsample_scale", []string{y, k})
	}
	return tensor{name: y, c: in.c, h: in.h * stride, w: in.w * stride}, nil
}

// reorg is Darknet's reorg layer (YOLOv2's passthrough). Darknet reads its
// c x h x w input as c/s² x hs x ws, moves each s x s block into channels
// (block offset major, as ONNX SpaceToDepth does) and reads the c x h x w
// result as cs² x h/s x w/s.
func (t *translator) reorg(s *Section, in tensor) (tensor, error) {
	in = t.unflat(in)
	stride, err := s.Int("stride", 1)
	if err != nil {
		return in, err
	}
	for _, k := range []string{"reverse", "flatten", "extra"} {
		if v, _ := s.Int(k, 0); v != 0 {
			return in, fmt.Errorf("%s=%d is not supported", k, v)
		}
	}
	s2 := stride * stride
	if stride <= 0 || in.c%s2 != 0 || in.h%stride != 0 || in.w%stride != 0 {
		return in, fmt.Errorf("stride=%d must divide the %dx%d input and its square the %d channels", stride, in.w, in.h, in.c)
	}
	view := t.b.Int64Initializer("shape", []int64{4}, []int64{-1, int64(in.c / s2), int64(in.h * stride), int64(in.w * stride)})
	x := t.b.Op("Reshape", "reorg_view", []string{in.name, view})
	x = t.b.Op("SpaceToDepth", "reorg", []string{x}, backbone.AttrInt("blocksize", int64(stride)))
	out := tensor{c: in.c * s2, h: in.h / stride, w: in.w / stride}
	shape := t.b.Int64Initializer("shape", []int64{4}, []int64{-1, int64(out.c), int64(out.h), int64(out.w)})
	out.name = t.b.Op("Reshape", "reorg_out", []string{x, shape})
	return out, nil
}

func (t *translator) softmax(s *Section, in tensor) (tensor, error) {
	groups, err := s.Int("groups", 1)
	if err != nil {
		return in, err
	}
	temp, err := s.Float("temperature", 1)
	if err != nil {
		return in, err
	}
	if groups != 1 || temp != 1 {
		return in, fmt.Errorf("groups=%d temperature=%g: only a plain softmax is supported", groups, temp)
	}
	if _, ok := s.Options["tree"]; ok {
		return in, fmt.Errorf("hierarchical softmax (tree) is not supported")
	}
	x := in.name
	if !in.flat {
		x = t.b.Op("Flatten", "flatten", []string{x}, backbone.AttrInt("axis", 1))
	}
	y := t.b.Op("Softmax", "softmax", []string{x}, backbone.AttrInt("axis", 1))
	return tensor{name: y, c: in.c * in.h * in.w, h: 1, w: 1, flat: true}, nil
}
