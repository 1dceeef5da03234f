package tfjs

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// KerasLayer is one layer of a Keras functional (or sequential) model as a
// TF.js layers-model topology describes it.
type KerasLayer struct {
	Name      string
	ClassName string
	Config    map[string]any
	// Inputs names the layers whose (first) output feeds this layer, in
	// order. Empty for input layers.
	Inputs []string
}

// KerasModel is a parsed Keras model topology (the "modelTopology" of a
// TF.js model.json). Layers keep the file's order.
type KerasModel struct {
	Name         string
	KerasVersion string
	Layers       []*KerasLayer
	byName       map[string]*KerasLayer
}

// Layer returns the layer called name, or nil.
func (m *KerasModel) Layer(name string) *KerasLayer { return m.byName[name] }

type rawTopology struct {
	KerasVersion string          `json:"keras_version"`
	ModelConfig  json.RawMessage `json:"model_config"`
	ClassName    string          `json:"class_name"`
	Config       json.RawMessage `json:"config"`
}

type rawLayer struct {
	Name          string          `json:"name"`
	ClassName     string          `json:"class_name"`
	Config        map[string]any  `json:"config"`
	InboundNodes  json.RawMessage `json:"inbound_nodes"`
	innerSequence bool
}

// ParseKerasTopology parses a Keras model topology in JSON: either a
// TF.js "modelTopology" object ({keras_version, model_config: {...}}) or a
// bare model config ({class_name: "Model"|"Functional"|"Sequential",
// config: {...}}). Functional models must use Keras 2's inbound_nodes form
// ([[[layer, node, tensor, kwargs], ...]]); shared layers (called more than
// once) are refused.
func ParseKerasTopology(topology []byte) (*KerasModel, error) {
	var top rawTopology
	if err := json.Unmarshal(topology, &top); err != nil {
		return nil, fmt.Errorf("keras topology: %w", err)
	}
	if len(top.ModelConfig) > 0 {
		kv := top.KerasVersion
		if err := json.Unmarshal(top.ModelConfig, &top); err != nil {
			return nil, fmt.Errorf("keras topology: model_config: %w", err)
		}
		top.KerasVersion = kv
	}
	m := &KerasModel{KerasVersion: top.KerasVersion, byName: map[string]*KerasLayer{}}
	var layers []rawLayer
	switch top.ClassName {
	case "Model", "Functional":
		var cfg struct {
			Name   string     `json:"name"`
			Layers []rawLayer `json:"layers"`
		}
		if err := json.Unmarshal(top.Config, &cfg); err != nil {
			return nil, fmt.Errorf("keras topology: %s config: %w", top.ClassName, err)
		}
		m.Name, layers = cfg.Name, cfg.Layers
	case "Sequential":
		// Keras 2.2 writes a list of layers, later versions {name, layers}.
		if err := json.Unmarshal(top.Config, &layers); err != nil {
			var cfg struct {
				Name   string     `json:"name"`
				Layers []rawLayer `json:"layers"`
			}
			if err := json.Unmarshal(top.Config, &cfg); err != nil {
				return nil, fmt.Errorf("keras topology: Sequential config: %w", err)
			}
			m.Name, layers = cfg.Name, cfg.Layers
		}
		for i := range layers {
			layers[i].innerSequence = true
		}
	case "":
		return nil, fmt.Errorf("keras topology: no model class_name (is this a TF.js graph model rather than a layers model?)")
	default:
		return nil, fmt.Errorf("keras topology: model class %q is not supported (want Model, Functional or Sequential)", top.ClassName)
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("keras topology: no layers")
	}
	prev := ""
	for i, rl := range layers {
		name := rl.Name
		if name == "" && rl.Config != nil {
			name, _ = rl.Config["name"].(string)
		}
		if name == "" {
			return nil, fmt.Errorf("keras topology: layer %d (%s) has no name", i, rl.ClassName)
		}
		if m.byName[name] != nil {
			return nil, fmt.Errorf("keras topology: two layers are called %q", name)
		}
		l := &KerasLayer{Name: name, ClassName: rl.ClassName, Config: rl.Config}
		if l.Config == nil {
			l.Config = map[string]any{}
		}
		if rl.innerSequence {
			if prev == "" && rl.ClassName != "InputLayer" {
				// Sequential models without an InputLayer carry the input
				// shape on their first layer.
				in := &KerasLayer{Name: name + "_input", ClassName: "InputLayer", Config: map[string]any{"batch_input_shape": l.Config["batch_input_shape"]}}
				m.Layers = append(m.Layers, in)
				m.byName[in.Name] = in
				prev = in.Name
			}
			if prev != "" {
				l.Inputs = []string{prev}
			}
			prev = name
		} else {
			ins, err := parseInbound(rl.InboundNodes)
			if err != nil {
				return nil, fmt.Errorf("keras topology: layer %q (%s): %w", name, rl.ClassName, err)
			}
			l.Inputs = ins
		}
		m.Layers = append(m.Layers, l)
		m.byName[name] = l
	}
	for _, l := range m.Layers {
		for _, in := range l.Inputs {
			if m.byName[in] == nil {
				return nil, fmt.Errorf("keras topology: layer %q reads unknown layer %q", l.Name, in)
			}
		}
	}
	return m, nil
}

// parseInbound reads Keras 2 inbound_nodes: [[[name, node, tensor, kwargs], ...]].
func parseInbound(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var nodes [][][]any
	if err := json.Unmarshal(raw, &nodes); err != nil {
		return nil, fmt.Errorf("inbound_nodes not in the Keras 2 form [[[layer, node, tensor, kwargs]]]: %w", err)
	}
	switch len(nodes) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("layer is called %d times (shared layers are not supported)", len(nodes))
	}
	var ins []string
	for _, ref := range nodes[0] {
		if len(ref) < 3 {
			return nil, fmt.Errorf("inbound reference %v is too short", ref)
		}
		name, ok := ref[0].(string)
		if !ok {
			return nil, fmt.Errorf("inbound reference %v has no layer name", ref)
		}
		if n, _ := ref[1].(float64); n != 0 {
			return nil, fmt.Errorf("reads node %v of %q (shared layers are not supported)", ref[1], name)
		}
		if t, _ := ref[2].(float64); t != 0 {
			return nil, fmt.Errorf("reads output %v of %q (multi-output layers are not supported)", ref[2], name)
		}
		if len(ref) > 3 {
			if kw, ok := ref[3].(map[string]any); ok && len(kw) > 0 {
				return nil, fmt.Errorf("call arguments %v are not supported", kw)
			}
		}
		ins = append(ins, name)
	}
	return ins, nil
}

// ConvertOptions controls ConvertKeras.
type ConvertOptions struct {
	// Cut names the layer whose output becomes the model output; layers it
	// does not depend on are dropped. Required.
	Cut string
	// GlobalPool appends global average pooling (and a flatten) when Cut's
	// output is spatial, giving features [N, C].
	GlobalPool bool
	// FeatureName is the output tensor's name; default "gap_"+Cut with
	// GlobalPool, else Cut.
	FeatureName string
	// InputName is the graph input's name; default "input_nhwc".
	InputName string
	// KeepBatchNorm emits BatchNormalization nodes instead of folding each
	// one into the convolution it follows.
	KeepBatchNorm bool
	// GraphName names the ONNX graph; default the Keras model's name.
	GraphName string
}

// Converted is ConvertKeras's result. The builder's graph is complete (input,
// nodes, output) and may be extended before Model is called.
type Converted struct {
	Builder     *backbone.Builder
	InputName   string
	Height      int // input height in pixels
	Width       int // input width in pixels
	Channels    int // input channels
	FeatureName string
	// FeatureShape is the output shape without the batch axis: [C] when
	// flat, [H, W, C] (NHWC) when spatial.
	FeatureShape []int
}

// val is a converted tensor: its ONNX name and its shape without the batch
// axis, kept channels-first ([C, H, W]) or flat ([C]). pad is zero padding
// still owed (top, left, bottom, right) by a ZeroPadding2D folded into the
// convolution that reads it; c/h/w already include it.
type val struct {
	name    string
	c, h, w int
	flat    bool
	pad     [4]int
}

// conv2DClasses are the layers into which a preceding ZeroPadding2D or a
// following BatchNormalization can be folded.
var conv2DClasses = map[string]bool{"Conv2D": true, "DepthwiseConv2D": true}

// ConvertKeras translates the part of m that Cut depends on into an ONNX
// graph with one float32 input [N, H, W, C] (NHWC, as the TF.js model takes
// it) and one output. The graph transposes to NCHW once and stays there.
// Supported layer classes: InputLayer, ZeroPadding2D, Conv2D,
// DepthwiseConv2D, BatchNormalization, ReLU, Activation, Add, Concatenate,
// MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
// GlobalMaxPooling2D, Flatten, Dense, Dropout; any other class among the
// layers Cut depends on is refused with its class and layer name. weights
// holds the TF.js weights by name ("conv/kernel"); only those of converted
// layers are decoded.
func ConvertKeras(m *KerasModel, weights *Weights, opt ConvertOptions) (*Converted, error) {
	cut := m.byName[opt.Cut]
	if cut == nil {
		return nil, fmt.Errorf("keras model %q has no layer %q to cut at", m.Name, opt.Cut)
	}
	if opt.InputName == "" {
		opt.InputName = "input_nhwc"
	}
	if opt.GraphName == "" {
		opt.GraphName = m.Name
	}
	// Topological order of what the cut depends on (post-order DFS, inputs
	// in their listed order: deterministic).
	var order []*KerasLayer
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(l *KerasLayer) error
	visit = func(l *KerasLayer) error {
		switch state[l.Name] {
		case 1:
			return fmt.Errorf("keras model %q: cycle through layer %q", m.Name, l.Name)
		case 2:
			return nil
		}
		state[l.Name] = 1
		for _, in := range l.Inputs {
			if err := visit(m.byName[in]); err != nil {
				return err
			}
		}
		state[l.Name] = 2
		order = append(order, l)
		return nil
	}
	if err := visit(cut); err != nil {
		return nil, err
	}
	// Refuse unsupported classes up front, by name, before any work.
	for _, l := range order {
		if layerConverters[l.ClassName] == nil {
			return nil, fmt.Errorf("layer %q: Keras layer class %q is not supported (supported: %s)", l.Name, l.ClassName, supportedList())
		}
	}
	consumers := map[string][]*KerasLayer{}
	for _, l := range order {
		for _, in := range l.Inputs {
			consumers[in] = append(consumers[in], l)
		}
	}
	c := &converter{m: m, weights: weights, opt: opt, vals: map[string]val{}, consumers: consumers,
		b: backbone.NewBuilder(opt.GraphName), foldedBN: map[string]*KerasLayer{}, bnDone: map[string]bool{}}
	c.out = &Converted{Builder: c.b, InputName: opt.InputName}
	// Decide folds.
	for _, l := range order {
		if l == cut {
			continue
		}
		cons := consumers[l.Name]
		if len(cons) != 1 {
			continue
		}
		next := cons[0]
		switch {
		case l.ClassName == "ZeroPadding2D" && conv2DClasses[next.ClassName]:
			c.foldPad = append(c.foldPad, l.Name)
		case conv2DClasses[l.ClassName] && next.ClassName == "BatchNormalization" && !opt.KeepBatchNorm &&
			strOr(l.Config, "activation", "linear") == "linear" && bnAxisOK(next.Config["axis"], false):
			c.foldedBN[l.Name] = next
		}
	}
	out := c.out
	for _, l := range order {
		if c.bnDone[l.Name] {
			continue
		}
		if err := c.layer(l); err != nil {
			return nil, fmt.Errorf("layer %q (%s): %w", l.Name, l.ClassName, err)
		}
	}
	res := c.vals[cut.Name]
	if res.pad != [4]int{} {
		return nil, fmt.Errorf("cut layer %q is a padding folded into a convolution", cut.Name)
	}
	name := opt.FeatureName
	switch {
	case !res.flat && opt.GlobalPool:
		if name == "" {
			name = "gap_" + cut.Name
		}
		g := c.b.Op("GlobalAveragePool", "gap_"+cut.Name+"_4d", []string{res.name})
		c.b.Node("Flatten", []string{g}, []string{name}, backbone.AttrInt("axis", 1))
		c.b.Output(name, -1, int64(res.c))
		out.FeatureShape = []int{res.c}
	case !res.flat:
		if name == "" {
			name = cut.Name + "_nhwc"
		}
		c.b.Node("Transpose", []string{res.name}, []string{name}, backbone.AttrInts("perm", 0, 2, 3, 1))
		c.b.Output(name, -1, int64(res.h), int64(res.w), int64(res.c))
		out.FeatureShape = []int{res.h, res.w, res.c}
	default:
		if name == "" {
			name = cut.Name
		}
		if name != res.name {
			c.b.Node("Identity", []string{res.name}, []string{name})
		}
		c.b.Output(name, -1, int64(res.c))
		out.FeatureShape = []int{res.c}
	}
	out.FeatureName = name
	return out, nil
}

func supportedList() string {
	return strings.Join(slices.Sorted(maps.Keys(layerConverters)), ", ")
}

type converter struct {
	m         *KerasModel
	weights   *Weights
	opt       ConvertOptions
	b         *backbone.Builder
	vals      map[string]val
	consumers map[string][]*KerasLayer
	foldPad   []string
	foldedBN  map[string]*KerasLayer // conv layer -> the BN folded into it
	bnDone    map[string]bool        // BN layers already emitted by their conv
	haveInput bool
	out       *Converted // what ConvertKeras returns; the input layer sets its size
}

func (c *converter) input(l *KerasLayer, i int) (val, error) {
	if i >= len(l.Inputs) {
		return val{}, fmt.Errorf("needs input %d, has %d", i+1, len(l.Inputs))
	}
	v, ok := c.vals[l.Inputs[i]]
	if !ok {
		return val{}, fmt.Errorf("input %q was not converted", l.Inputs[i])
	}
	if v.pad != [4]int{} && !conv2DClasses[l.ClassName] {
		return val{}, fmt.Errorf("internal: folded padding read by %s", l.ClassName)
	}
	return v, nil
}

func (c *converter) only(l *KerasLayer) (val, error) {
	if len(l.Inputs) != 1 {
		return val{}, fmt.Errorf("takes one input, has %d", len(l.Inputs))
	}
	return c.input(l, 0)
}

func (c *converter) spatial(l *KerasLayer) (val, error) {
	v, err := c.only(l)
	if err == nil && v.flat {
		err = fmt.Errorf("needs a spatial [N, H, W, C] input, got a flat one")
	}
	if err == nil {
		if df := strOr(l.Config, "data_format", "channels_last"); df != "channels_last" {
			err = fmt.Errorf("data_format %q is not supported (want channels_last)", df)
		}
	}
	return v, err
}

// weight returns layer/suffix, also accepting a scoped name ending in it.
func (c *converter) weight(layer, suffix string, shape ...int) (*Tensor, error) {
	key := layer + "/" + suffix
	name := key
	if !c.weights.Has(key) {
		var found []string
		for _, k := range c.weights.names {
			if len(k) > len(key) && k[len(k)-len(key)-1] == '/' && k[len(k)-len(key):] == key {
				found = append(found, k)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("weight %q not found in the manifest", key)
		}
		name = found[0]
	}
	t, err := c.weights.Tensor(name)
	if err != nil {
		return nil, err
	}
	if shape != nil && !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("weight %q has shape %v, the layer needs %v", key, t.Shape, shape)
	}
	return t, nil
}

// layerConverters maps each supported Keras layer class to the method that
// appends its ONNX nodes and records its output value in c.vals.
var layerConverters = map[string]func(c *converter, l *KerasLayer) error{
	"InputLayer":             (*converter).inputLayer,
	"ZeroPadding2D":          (*converter).zeroPadding2D,
	"Conv2D":                 (*converter).conv,
	"DepthwiseConv2D":        (*converter).conv,
	"BatchNormalization":     (*converter).batchNormalization,
	"ReLU":                   (*converter).relu,
	"Activation":             (*converter).activationLayer,
	"Dropout":                (*converter).dropout,
	"Add":                    (*converter).add,
	"Concatenate":            (*converter).concatenate,
	"MaxPooling2D":           (*converter).pooling2D,
	"AveragePooling2D":       (*converter).pooling2D,
	"GlobalAveragePooling2D": (*converter).globalPooling2D,
	"GlobalMaxPooling2D":     (*converter).globalPooling2D,
	"Flatten":                (*converter).flatten,
	"Dense":                  (*converter).dense,
}

// layer converts one Keras layer.
func (c *converter) layer(l *KerasLayer) error {
	conv := layerConverters[l.ClassName]
	if conv == nil {
		return fmt.Errorf("Keras layer class %q is not supported", l.ClassName)
	}
	return conv(c, l)
}

// inputLayer declares the graph input (NHWC, as Keras takes it) and
// transposes it to NCHW for the convolutions.
func (c *converter) inputLayer(l *KerasLayer) error {
	cfg := l.Config
	if c.haveInput {
		return fmt.Errorf("a second input layer (models with several inputs are not supported)")
	}
	shape, err := intList(cfg, "batch_input_shape", 4)
	if err != nil {
		return fmt.Errorf("input shape: %w (want [null, H, W, C] with fixed H, W, C)", err)
	}
	h, w, ch := shape[1], shape[2], shape[3]
	if h <= 0 || w <= 0 || ch <= 0 {
		return fmt.Errorf("input shape %v: H, W and C must be fixed", shape)
	}
	if dt := strOr(cfg, "dtype", "float32"); dt != "float32" {
		return fmt.Errorf("input dtype %q is not supported (want float32)", dt)
	}
	c.haveInput = true
	c.b.Input(c.opt.InputName, -1, int64(h), int64(w), int64(ch))
	t := c.b.Op("Transpose", "to_nchw", []string{c.opt.InputName}, backbone.AttrInts("perm", 0, 3, 1, 2))
	c.vals[l.Name] = val{name: t, c: ch, h: h, w: w}
	c.out.Height, c.out.Width, c.out.Channels = h, w, ch
	return nil
}

// zeroPadding2D emits a Pad, or nothing when the convolution after it takes
// the padding over (foldPad).
func (c *converter) zeroPadding2D(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.spatial(l)
	if err != nil {
		return err
	}
	p, err := zeroPadding(cfg["padding"])
	if err != nil {
		return err
	}
	v := val{name: in.name, c: in.c, h: in.h + p[0] + p[2], w: in.w + p[1] + p[3]}
	for i := range 4 {
		v.pad[i] = in.pad[i] + p[i]
	}
	if slices.Contains(c.foldPad, l.Name) {
		c.vals[l.Name] = v
		return nil
	}
	pads := c.b.Int64Initializer(l.Name+"/pads", []int64{8}, []int64{0, 0, int64(v.pad[0]), int64(v.pad[1]), 0, 0, int64(v.pad[2]), int64(v.pad[3])})
	v.name = c.b.Op("Pad", l.Name, []string{in.name, pads})
	v.pad = [4]int{}
	c.vals[l.Name] = v
	return nil
}

// batchNormalization emits a BatchNormalization that was not folded into
// the convolution before it.
func (c *converter) batchNormalization(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.only(l)
	if err != nil {
		return err
	}
	if !bnAxisOK(cfg["axis"], in.flat) {
		return fmt.Errorf("axis %v is not supported (want the channel axis, -1)", cfg["axis"])
	}
	bn, err := c.bnParams(l, in.c)
	if err != nil {
		return err
	}
	ins := []string{in.name,
		c.b.Initializer(l.Name+"/gamma", []int64{int64(in.c)}, bn.gamma),
		c.b.Initializer(l.Name+"/beta", []int64{int64(in.c)}, bn.beta),
		c.b.Initializer(l.Name+"/moving_mean", []int64{int64(in.c)}, bn.mean),
		c.b.Initializer(l.Name+"/moving_variance", []int64{int64(in.c)}, bn.variance)}
	v := in
	v.name = c.b.Op("BatchNormalization", l.Name, ins, backbone.AttrFloat("epsilon", float32(bn.eps)))
	c.vals[l.Name] = v
	return nil
}

// relu emits Relu, or Clip for a max_value (ReLU6).
func (c *converter) relu(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.only(l)
	if err != nil {
		return err
	}
	if s := numOr(cfg, "negative_slope", 0); s != 0 {
		return fmt.Errorf("negative_slope %v is not supported", s)
	}
	if t := numOr(cfg, "threshold", 0); t != 0 {
		return fmt.Errorf("threshold %v is not supported", t)
	}
	v := in
	if mx, ok := cfg["max_value"].(float64); ok {
		v.name = c.clip(l.Name, in.name, 0, float32(mx))
	} else {
		v.name = c.b.Op("Relu", l.Name, []string{in.name})
	}
	c.vals[l.Name] = v
	return nil
}

// activationLayer emits a standalone Activation layer.
func (c *converter) activationLayer(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.only(l)
	if err != nil {
		return err
	}
	v, err := c.activation(l.Name, strOr(cfg, "activation", "linear"), in)
	if err != nil {
		return err
	}
	c.vals[l.Name] = v
	return nil
}

// dropout is the identity at inference.
func (c *converter) dropout(l *KerasLayer) error {
	in, err := c.only(l)
	if err != nil {
		return err
	}
	c.vals[l.Name] = in // inference: identity
	return nil
}

// add emits a chain of Adds over inputs of one shape.
func (c *converter) add(l *KerasLayer) error {
	if len(l.Inputs) < 2 {
		return fmt.Errorf("needs at least two inputs, has %d", len(l.Inputs))
	}
	acc, err := c.input(l, 0)
	if err != nil {
		return err
	}
	for i := 1; i < len(l.Inputs); i++ {
		x, err := c.input(l, i)
		if err != nil {
			return err
		}
		if x.c != acc.c || x.h != acc.h || x.w != acc.w || x.flat != acc.flat {
			return fmt.Errorf("input %q has shape %v, %q has %v", l.Inputs[i], x.shape(), l.Inputs[0], acc.shape())
		}
		name := l.Name
		if i < len(l.Inputs)-1 {
			name = l.Name + "_partial"
		}
		acc.name = c.b.Op("Add", name, []string{acc.name, x.name})
	}
	c.vals[l.Name] = acc
	return nil
}

// concatenate emits a Concat, the Keras (NHWC) axis mapped to NCHW.
func (c *converter) concatenate(l *KerasLayer) error {
	cfg := l.Config
	first, err := c.input(l, 0)
	if err != nil {
		return err
	}
	axis := int(numOr(cfg, "axis", -1))
	onnxAxis := -1
	switch {
	case first.flat && (axis == -1 || axis == 1):
		onnxAxis = 1
	case !first.flat && (axis == -1 || axis == 3):
		onnxAxis = 1
	case !first.flat && axis == 1:
		onnxAxis = 2
	case !first.flat && axis == 2:
		onnxAxis = 3
	}
	if onnxAxis < 0 {
		return fmt.Errorf("axis %d is not supported", axis)
	}
	v := first
	var names []string
	for i := range l.Inputs {
		x, err := c.input(l, i)
		if err != nil {
			return err
		}
		if x.flat != first.flat {
			return fmt.Errorf("mixes flat and spatial inputs")
		}
		names = append(names, x.name)
		if i == 0 {
			continue
		}
		same := [3]bool{x.c == first.c, x.h == first.h, x.w == first.w}
		same[onnxAxis-1] = true
		if !same[0] || !same[1] || !same[2] {
			return fmt.Errorf("input %q has shape %v, %q has %v", l.Inputs[i], x.shape(), l.Inputs[0], first.shape())
		}
		switch onnxAxis {
		case 1:
			v.c += x.c
		case 2:
			v.h += x.h
		case 3:
			v.w += x.w
		}
	}
	v.name = c.b.Op("Concat", l.Name, names, backbone.AttrInt("axis", int64(onnxAxis)))
	c.vals[l.Name] = v
	return nil
}

// pooling2D emits MaxPool or AveragePool with explicit pads.
func (c *converter) pooling2D(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.spatial(l)
	if err != nil {
		return err
	}
	k, err := intList(cfg, "pool_size", 2)
	if err != nil {
		return err
	}
	s := k
	if cfg["strides"] != nil {
		if s, err = intList(cfg, "strides", 2); err != nil {
			return err
		}
	}
	g, err := window(in, k, s, []int{1, 1}, strOr(cfg, "padding", "valid"))
	if err != nil {
		return err
	}
	attrs := []*onnxpb.AttributeProto{
		backbone.AttrInts("kernel_shape", int64(k[0]), int64(k[1])),
		backbone.AttrInts("strides", int64(s[0]), int64(s[1])),
		backbone.AttrInts("pads", g.pads[:]...),
	}
	op := "MaxPool"
	if l.ClassName == "AveragePooling2D" {
		op = "AveragePool"
		// Keras/TF average pooling with "same" padding divides by the
		// number of real (unpadded) pixels in each window.
		attrs = append(attrs, backbone.AttrInt("count_include_pad", 0))
	}
	c.vals[l.Name] = val{name: c.b.Op(op, l.Name, []string{in.name}, attrs...), c: in.c, h: g.oh, w: g.ow}
	return nil
}

// globalPooling2D emits global pooling, then Flatten to [N, C].
func (c *converter) globalPooling2D(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.spatial(l)
	if err != nil {
		return err
	}
	if kd, _ := cfg["keepdims"].(bool); kd {
		return fmt.Errorf("keepdims=true is not supported")
	}
	op := "GlobalAveragePool"
	if l.ClassName == "GlobalMaxPooling2D" {
		op = "GlobalMaxPool"
	}
	g := c.b.Op(op, l.Name+"_4d", []string{in.name})
	c.vals[l.Name] = val{name: c.b.Op("Flatten", l.Name, []string{g}, backbone.AttrInt("axis", 1)), c: in.c, flat: true}
	return nil
}

// flatten emits Flatten in Keras's NHWC order.
func (c *converter) flatten(l *KerasLayer) error {
	in, err := c.only(l)
	if err != nil {
		return err
	}
	if in.flat {
		c.vals[l.Name] = in
		return nil
	}
	x := in.name
	if in.h != 1 || in.w != 1 {
		// Keras flattens in NHWC order.
		x = c.b.Op("Transpose", l.Name+"_nhwc", []string{x}, backbone.AttrInts("perm", 0, 2, 3, 1))
	}
	c.vals[l.Name] = val{name: c.b.Op("Flatten", l.Name, []string{x}, backbone.AttrInt("axis", 1)), c: in.c * in.h * in.w, flat: true}
	return nil
}

// dense emits MatMul, the bias Add and the activation.
func (c *converter) dense(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.only(l)
	if err != nil {
		return err
	}
	if !in.flat {
		return fmt.Errorf("needs a flat [N, C] input (add Flatten or global pooling before it)")
	}
	units := int(numOr(cfg, "units", 0))
	k, err := c.weight(l.Name, "kernel", in.c, units)
	if err != nil {
		return err
	}
	x := c.b.Op("MatMul", l.Name+"_matmul", []string{in.name, c.b.Initializer(l.Name+"/kernel", []int64{int64(in.c), int64(units)}, k.Data)})
	if boolOr(cfg, "use_bias", true) {
		bias, err := c.weight(l.Name, "bias", units)
		if err != nil {
			return err
		}
		x = c.b.Op("Add", l.Name+"_bias", []string{x, c.b.Initializer(l.Name+"/bias", []int64{int64(units)}, bias.Data)})
	}
	v, err := c.activation(l.Name, strOr(cfg, "activation", "linear"), val{name: x, c: units, flat: true})
	if err != nil {
		return err
	}
	c.vals[l.Name] = v
	return nil
}

// bnAxisOK reports whether a BatchNormalization axis (absent, a number or
// a one-element list) is the channel axis of a flat or NHWC input.
func bnAxisOK(ax any, flat bool) bool {
	if ax == nil {
		return true
	}
	a, isNum := ax.(float64)
	if list, isList := ax.([]any); isList && len(list) == 1 {
		a, isNum = list[0].(float64)
	}
	return isNum && (a == -1 || (!flat && a == 3) || (flat && a == 1))
}

func (v val) shape() []int {
	if v.flat {
		return []int{v.c}
	}
	return []int{v.h, v.w, v.c}
}

// clip emits Clip(lo, hi) (opset 11+: bounds are inputs).
func (c *converter) clip(name, x string, lo, hi float32) string {
	l := c.b.Initializer(name+"/min", nil, []float32{lo})
	h := c.b.Initializer(name+"/max", nil, []float32{hi})
	return c.b.Op("Clip", name, []string{x, l, h})
}

// activation applies a Keras activation by name; "linear" emits nothing.
func (c *converter) activation(name, act string, in val) (val, error) {
	v := in
	switch act {
	case "linear", "":
		return in, nil
	case "relu":
		v.name = c.b.Op("Relu", name+"_relu", []string{in.name})
	case "relu6":
		v.name = c.clip(name+"_relu6", in.name, 0, 6)
	case "sigmoid":
		v.name = c.b.Op("Sigmoid", name+"_sigmoid", []string{in.name})
	case "tanh":
		v.name = c.b.Op("Tanh", name+"_tanh", []string{in.name})
	case "softmax":
		if !in.flat {
			return val{}, fmt.Errorf("softmax on a spatial tensor is not supported")
		}
		v.name = c.b.Op("Softmax", name+"_softmax", []string{in.name}, backbone.AttrInt("axis", 1))
	default:
		return val{}, fmt.Errorf("activation %q is not supported (want linear, relu, relu6, sigmoid, tanh or softmax)", act)
	}
	return v, nil
}

// batchNorm holds a BatchNormalization layer's per-channel parameters.
type batchNorm struct {
	gamma, beta, mean, variance []float32
	eps                         float64
}

// bnParams returns a BatchNormalization layer's parameters: gamma ones
// without scale, beta zeros without center.
func (c *converter) bnParams(l *KerasLayer, ch int) (batchNorm, error) {
	bn := batchNorm{eps: numOr(l.Config, "epsilon", 1e-3), gamma: make([]float32, ch), beta: make([]float32, ch)}
	for i := range bn.gamma {
		bn.gamma[i] = 1
	}
	if boolOr(l.Config, "scale", true) {
		t, err := c.weight(l.Name, "gamma", ch)
		if err != nil {
			return batchNorm{}, err
		}
		copy(bn.gamma, t.Data)
	}
	if boolOr(l.Config, "center", true) {
		t, err := c.weight(l.Name, "beta", ch)
		if err != nil {
			return batchNorm{}, err
		}
		copy(bn.beta, t.Data)
	}
	m, err := c.weight(l.Name, "moving_mean", ch)
	if err != nil {
		return batchNorm{}, err
	}
	v, err := c.weight(l.Name, "moving_variance", ch)
	if err != nil {
		return batchNorm{}, err
	}
	bn.mean, bn.variance = m.Data, v.Data
	return bn, nil
}

// bnAffine returns the per-channel scale and shift (float64) that a
// BatchNormalization layer applies: y = x*scale + shift.
func (c *converter) bnAffine(l *KerasLayer, ch int) (scale, shift []float64, err error) {
	bn, err := c.bnParams(l, ch)
	if err != nil {
		return nil, nil, err
	}
	scale = make([]float64, ch)
	shift = make([]float64, ch)
	for i := range ch {
		if bn.variance[i] < 0 {
			return nil, nil, fmt.Errorf("moving_variance[%d] = %v is negative", i, bn.variance[i])
		}
		scale[i] = float64(bn.gamma[i]) / math.Sqrt(float64(bn.variance[i])+bn.eps)
		shift[i] = float64(bn.beta[i]) - float64(bn.mean[i])*scale[i]
	}
	return scale, shift, nil
}

type windowGeom struct {
	oh, ow int
	pads   [4]int64 // ONNX order: top, left, bottom, right
}

// window computes the output size and explicit ONNX pads of a sliding
// window over in (whose owed padding is added), TensorFlow-style: "same"
// pads total max((ceil(n/s)-1)*s + eff - n, 0), the smaller half first.
func window(in val, k, s, d []int, padding string) (windowGeom, error) {
	var g windowGeom
	size := [2]int{in.h, in.w}
	var outs [2]int
	for i := range 2 {
		if k[i] <= 0 || s[i] <= 0 || d[i] <= 0 {
			return g, fmt.Errorf("kernel %v, strides %v and dilation %v must be positive", k, s, d)
		}
		eff := (k[i]-1)*d[i] + 1
		var before, after int
		switch padding {
		case "valid":
		case "same":
			total := max((ceilDiv(size[i], s[i])-1)*s[i]+eff-size[i], 0)
			before = total / 2
			after = total - before
		default:
			return g, fmt.Errorf("padding %q is not supported (want same or valid)", padding)
		}
		n := size[i] + before + after
		if n < eff {
			return g, fmt.Errorf("window %d (dilated) is larger than the %d-pixel input", eff, size[i])
		}
		outs[i] = (n-eff)/s[i] + 1
		g.pads[i] = int64(in.pad[i] + before)
		g.pads[i+2] = int64(in.pad[i+2] + after)
	}
	g.oh, g.ow = outs[0], outs[1]
	return g, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// conv emits Conv2D or DepthwiseConv2D, with a following BatchNormalization
// folded in when decided so.
func (c *converter) conv(l *KerasLayer) error {
	cfg := l.Config
	in, err := c.spatial(l)
	if err != nil {
		return err
	}
	k, err := intList(cfg, "kernel_size", 2)
	if err != nil {
		return err
	}
	s, err := intList(cfg, "strides", 2)
	if err != nil {
		return err
	}
	d := []int{1, 1}
	if cfg["dilation_rate"] != nil {
		if d, err = intList(cfg, "dilation_rate", 2); err != nil {
			return err
		}
	}
	if (d[0] > 1 || d[1] > 1) && (s[0] > 1 || s[1] > 1) {
		return fmt.Errorf("dilation %v with strides %v is not supported", d, s)
	}
	g, err := window(in, k, s, d, strOr(cfg, "padding", "valid"))
	if err != nil {
		return err
	}
	var outC, group int
	var w []float32 // ONNX layout [outC, in/group, kh, kw]
	kh, kw := k[0], k[1]
	if l.ClassName == "Conv2D" {
		outC = int(numOr(cfg, "filters", 0))
		if gr := numOr(cfg, "groups", 1); gr != 1 {
			return fmt.Errorf("groups=%v is not supported", gr)
		}
		t, err := c.weight(l.Name, "kernel", kh, kw, in.c, outC)
		if err != nil {
			return err
		}
		group = 1
		w = make([]float32, len(t.Data))
		// [kh, kw, in, out] -> [out, in, kh, kw]
		for y := range kh {
			for x := range kw {
				for i := range in.c {
					src := t.Data[((y*kw+x)*in.c+i)*outC:]
					for o := range outC {
						w[((o*in.c+i)*kh+y)*kw+x] = src[o]
					}
				}
			}
		}
	} else {
		mult := int(numOr(cfg, "depth_multiplier", 1))
		t, err := c.weight(l.Name, "depthwise_kernel", kh, kw, in.c, mult)
		if err != nil {
			return err
		}
		outC, group = in.c*mult, in.c
		w = make([]float32, len(t.Data))
		// [kh, kw, in, mult] -> [in*mult, 1, kh, kw]; output channel i*mult+m.
		for y := range kh {
			for x := range kw {
				for i := range in.c {
					for m := range mult {
						w[((i*mult+m)*kh+y)*kw+x] = t.Data[((y*kw+x)*in.c+i)*mult+m]
					}
				}
			}
		}
	}
	var bias []float32
	if boolOr(cfg, "use_bias", true) {
		t, err := c.weight(l.Name, "bias", outC)
		if err != nil {
			return err
		}
		bias = append([]float32(nil), t.Data...)
	}
	outName := l.Name
	if bn := c.foldedBN[l.Name]; bn != nil {
		scale, shift, err := c.bnAffine(bn, outC)
		if err != nil {
			return fmt.Errorf("folding %q: %w", bn.Name, err)
		}
		per := len(w) / outC
		for o := range outC {
			for j := o * per; j < (o+1)*per; j++ {
				w[j] = float32(float64(w[j]) * scale[o])
			}
		}
		nb := make([]float32, outC)
		for o := range outC {
			b0 := 0.0
			if bias != nil {
				b0 = float64(bias[o])
			}
			nb[o] = float32(b0*scale[o] + shift[o])
		}
		bias = nb
		outName = bn.Name
		c.bnDone[bn.Name] = true
	}
	ins := []string{in.name, c.b.Initializer(l.Name+"/W", []int64{int64(outC), int64(in.c / group), int64(kh), int64(kw)}, w)}
	if bias != nil {
		ins = append(ins, c.b.Initializer(l.Name+"/B", []int64{int64(outC)}, bias))
	}
	attrs := []*onnxpb.AttributeProto{
		backbone.AttrInts("kernel_shape", int64(kh), int64(kw)),
		backbone.AttrInts("strides", int64(s[0]), int64(s[1])),
		backbone.AttrInts("pads", g.pads[:]...),
		backbone.AttrInts("dilations", int64(d[0]), int64(d[1])),
	}
	if group != 1 {
		attrs = append(attrs, backbone.AttrInt("group", int64(group)))
	}
	v := val{name: c.b.Op("Conv", outName, ins, attrs...), c: outC, h: g.oh, w: g.ow}
	v, err = c.activation(l.Name, strOr(cfg, "activation", "linear"), v)
	if err != nil {
		return err
	}
	c.vals[l.Name] = v
	if bn := c.foldedBN[l.Name]; bn != nil {
		c.vals[bn.Name] = v
	}
	return nil
}

// zeroPadding reads ZeroPadding2D's padding (int, [sym_h, sym_w] or
// [[top, bottom], [left, right]]) as top, left, bottom, right.
func zeroPadding(p any) ([4]int, error) {
	bad := fmt.Errorf("padding %v is not understood", p)
	nonneg := func(f any) (int, bool) {
		x, ok := f.(float64)
		return int(x), ok && x >= 0 && x == math.Trunc(x) && x < 1<<20
	}
	if n, ok := nonneg(p); ok {
		return [4]int{n, n, n, n}, nil
	}
	list, ok := p.([]any)
	if !ok || len(list) != 2 {
		return [4]int{}, bad
	}
	var r [4]int
	for i, e := range list {
		if n, ok := nonneg(e); ok {
			r[i], r[i+2] = n, n
			continue
		}
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return [4]int{}, bad
		}
		a, ok1 := nonneg(pair[0])
		b, ok2 := nonneg(pair[1])
		if !ok1 || !ok2 {
			return [4]int{}, bad
		}
		r[i], r[i+2] = a, b
	}
	return r, nil
}

func strOr(cfg map[string]any, key, def string) string {
	if s, ok := cfg[key].(string); ok {
		return s
	}
	return def
}

func numOr(cfg map[string]any, key string, def float64) float64 {
	if f, ok := cfg[key].(float64); ok {
		return f
	}
	return def
}

func boolOr(cfg map[string]any, key string, def bool) bool {
	if b, ok := cfg[key].(bool); ok {
		return b
	}
	return def
}

// intList reads a list of n integers (null entries become -1); a single
// number stands for n copies.
func intList(cfg map[string]any, key string, n int) ([]int, error) {
	raw, ok := cfg[key]
	if !ok {
		return nil, fmt.Errorf("%s is missing", key)
	}
	if f, ok := raw.(float64); ok {
		out := make([]int, n)
		for i := range out {
			out[i] = int(f)
		}
		return out, nil
	}
	list, ok := raw.([]any)
	if !ok || len(list) != n {
		return nil, fmt.Errorf("%s = %v, want %d numbers", key, raw, n)
	}
	out := make([]int, n)
	for i, e := range list {
		switch x := e.(type) {
		case nil:
			out[i] = -1
		case float64:
			if x != math.Trunc(x) || x < 0 || x > 1<<24 {
				return nil, fmt.Errorf("%s = %v: %v is not a size", key, raw, x)
			}
			out[i] = int(x)
		default:
			return nil, fmt.Errorf("%s = %v, want %d numbers", key, raw, n)
		}
	}
	return out, nil
}
