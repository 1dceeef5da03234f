package tfjs

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"slices"
	"strconv"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// GraphModelJSON is a TF.js graph model's model.json ("format":
// "graph-model"): a frozen TensorFlow GraphDef as JSON plus the weight
// manifest of its Const nodes.
type GraphModelJSON struct {
	Format        string `json:"format"`
	GeneratedBy   string `json:"generatedBy"`
	ConvertedBy   string `json:"convertedBy"`
	ModelTopology struct {
		Node []GraphNode `json:"node"`
	} `json:"modelTopology"`
	WeightsManifest []WeightGroup `json:"weightsManifest"`
}

// GraphNode is one node of a TF.js graph model. Inputs name other nodes
// ("name", "name:0"; "^name" is a control dependency and is ignored).
type GraphNode struct {
	Name  string               `json:"name"`
	Op    string               `json:"op"`
	Input []string             `json:"input"`
	Attr  map[string]graphAttr `json:"attr"`
}

// graphAttr is a TensorFlow AttrValue as TF.js's converter writes it:
// strings base64-encoded, integers as decimal strings.
type graphAttr struct {
	S    string          `json:"s"`
	I    json.RawMessage `json:"i"`
	F    float64         `json:"f"`
	B    bool            `json:"b"`
	List *struct {
		I []json.RawMessage `json:"i"`
		S []string          `json:"s"`
	} `json:"list"`
	Shape *struct {
		Dim []struct {
			Size json.RawMessage `json:"size"`
		} `json:"dim"`
	} `json:"shape"`
}

func rawInt(r json.RawMessage) (int, error) {
	s := strings.Trim(string(r), `"`)
	v, err := strconv.ParseInt(s, 10, 32)
	return int(v), err
}

func (n *GraphNode) str(name string) string {
	a, ok := n.Attr[name]
	if !ok {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(a.S)
	if err != nil {
		return a.S
	}
	return string(b)
}

func (n *GraphNode) ints(name string) ([]int, error) {
	a, ok := n.Attr[name]
	if !ok || a.List == nil {
		return nil, nil
	}
	out := make([]int, len(a.List.I))
	for i, r := range a.List.I {
		v, err := rawInt(r)
		if err != nil {
			return nil, fmt.Errorf("node %s: attribute %s: %w", n.Name, name, err)
		}
		out[i] = v
	}
	return out, nil
}

func (n *GraphNode) strs(name string) []string {
	a, ok := n.Attr[name]
	if !ok || a.List == nil {
		return nil
	}
	out := make([]string, len(a.List.S))
	for i, s := range a.List.S {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			out[i] = s
		} else {
			out[i] = string(b)
		}
	}
	return out
}

// GraphOutput names a tensor of a TF.js graph model that the ONNX graph
// outputs: TF is the node name, Name the ONNX output name; Pool averages a
// 4-D [N,H,W,C] tensor over H and W to [N,C] (global average pooling).
type GraphOutput struct {
	TF, Name string
	Pool     bool
}

// GraphOptions configure ConvertGraph.
type GraphOptions struct {
	// InputName is the ONNX image input, float32 [N,H,W,C] as the TF.js
	// model takes it.
	InputName string
	// GraphName names the ONNX graph.
	GraphName string
	// Outputs lists the outputs in order; at least one.
	Outputs []GraphOutput
}

// GraphConversion is ConvertGraph's result.
type GraphConversion struct {
	Builder *backbone.Builder
	// Width, Height and Channels are the image input's.
	Width, Height, Channels int
	// Shapes are the outputs' shapes, -1 for the batch.
	Shapes [][]int
}

// ConvertGraph translates the part of a TF.js graph model that opt.Outputs
// need into ONNX (opset backbone.DefaultOpset) through backbone.Builder.
// It knows the operators of TF.js's converted CNNs: Placeholder (one NHWC
// image input), Const, Identity, Conv2D and _FusedConv2D,
// DepthwiseConv2dNative and FusedDepthwiseConv2dNative (fused BiasAdd,
// Relu, Relu6, Prelu, LeakyRelu), MatMul and _FusedMatMul, BiasAdd,
// Add/AddV2/Sub/Mul/RealDiv/Minimum/Maximum, Relu, Relu6, Sigmoid, Tanh,
// Abs, Square, Sqrt, Rsqrt, Softmax, MaxPool, AvgPool, Mean, Sum, Max,
// Squeeze, Pad/MirrorPad, ConcatV2 and Reshape. 4-D activations are kept
// NCHW inside the ONNX graph (one Transpose after the input), so every
// axis, padding and per-channel constant is translated; an operator or
// attribute it cannot translate exactly is an error naming the node.
func ConvertGraph(gm *GraphModelJSON, w *Weights, opt GraphOptions) (*GraphConversion, error) {
	if len(opt.Outputs) == 0 {
		return nil, fmt.Errorf("graph model: no outputs requested")
	}
	c := &graphConv{b: backbone.NewBuilder(opt.GraphName), w: w, nodes: map[string]*GraphNode{}, vals: map[string]*gval{}, inputName: opt.InputName}
	for i := range gm.ModelTopology.Node {
		n := &gm.ModelTopology.Node[i]
		c.nodes[n.Name] = n
	}
	res := &GraphConversion{Builder: c.b}
	for _, o := range opt.Outputs {
		v, err := c.val(o.TF, 0)
		if err != nil {
			return nil, err
		}
		name, shape := v.name, v.shape
		switch {
		case o.Pool && len(v.shape) == 4:
			if v.konst != nil {
				return nil, fmt.Errorf("graph output %s is a constant", o.TF)
			}
			g := c.b.Op("GlobalAveragePool", o.Name+"_gap", []string{v.name})
			c.b.Node("Flatten", []string{g}, []string{o.Name}, backbone.AttrInt("axis", 1))
			name, shape = o.Name, []int{-1, v.shape[3]}
		case len(v.shape) == 4:
			c.b.Node("Transpose", []string{v.name}, []string{o.Name}, backbone.AttrInts("perm", 0, 2, 3, 1))
			name = o.Name
		default:
			c.b.Node("Identity", []string{c.materialize(v)}, []string{o.Name})
			name = o.Name
		}
		_ = name
		dims := make([]int64, len(shape))
		for i, d := range shape {
			dims[i] = int64(d)
		}
		c.b.Output(o.Name, dims...)
		res.Shapes = append(res.Shapes, shape)
	}
	if c.input == nil {
		return nil, fmt.Errorf("graph model: the outputs depend on no Placeholder")
	}
	res.Height, res.Width, res.Channels = c.input[1], c.input[2], c.input[3]
	return res, nil
}

// gval is a translated TF tensor: its ONNX name, its shape in TF's order
// (NHWC for 4-D, -1 for the batch), and for constants the values (the
// ONNX initializer is made on first use, in the layout that use needs).
type gval struct {
	name  string
	shape []int
	konst *Tensor
}

type graphConv struct {
	b         *backbone.Builder
	w         *Weights
	nodes     map[string]*GraphNode
	vals      map[string]*gval
	inputName string
	input     []int // the Placeholder's NHWC shape
}

func (c *graphConv) val(ref string, depth int) (*gval, error) {
	name := strings.TrimSuffix(ref, ":0")
	if strings.Contains(name, ":") {
		return nil, fmt.Errorf("graph model: input %q: only the first output of a node can be translated", ref)
	}
	if v, ok := c.vals[name]; ok {
		return v, nil
	}
	if depth > 10000 {
		return nil, fmt.Errorf("graph model: graph deeper than 10000 nodes at %s", name)
	}
	n, ok := c.nodes[name]
	if !ok {
		return nil, fmt.Errorf("graph model: node %q not found", name)
	}
	var in []*gval
	for _, r := range n.Input {
		if strings.HasPrefix(r, "^") {
			continue
		}
		v, err := c.val(r, depth+1)
		if err != nil {
			return nil, err
		}
		in = append(in, v)
	}
	v, err := c.translate(n, in)
	if err != nil {
		return nil, fmt.Errorf("graph model node %s (%s): %w", n.Name, n.Op, err)
	}
	c.vals[name] = v
	return v, nil
}

// materialize returns the ONNX name of v, adding a constant as an
// initializer in TF's layout.
func (c *graphConv) materialize(v *gval) string {
	if v.name == "" && v.konst != nil {
		dims := make([]int64, len(v.konst.Shape))
		for i, d := range v.konst.Shape {
			dims[i] = int64(d)
		}
		v.name = c.b.Initializer("const", dims, v.konst.Data)
	}
	return v.name
}

// asChannels returns a constant broadcast against a 4-D activation, moved
// from NHWC to NCHW order.
func (c *graphConv) asChannels(k *Tensor) (string, error) {
	s := slices.Clone(k.Shape)
	if len(s) > 4 {
		return "", fmt.Errorf("constant of rank %d against a 4-D tensor", len(s))
	}
	for len(s) < 4 {
		s = append([]int{1}, s...)
	}
	n, h, w, ch := s[0], s[1], s[2], s[3]
	data := make([]float32, len(k.Data))
	for a := range n {
		for y := range h {
			for x := range w {
				for z := range ch {
					data[((a*ch+z)*h+y)*w+x] = k.Data[((a*h+y)*w+x)*ch+z]
				}
			}
		}
	}
	return c.b.Initializer("const_nchw", []int64{int64(n), int64(ch), int64(h), int64(w)}, data), nil
}

// nchwAxis maps a TF axis of a 4-D NHWC tensor to the NCHW one.
func nchwAxis(a int) int {
	if a < 0 {
		a += 4
	}
	return [4]int{0, 2, 3, 1}[a]
}

func (c *graphConv) constInts(v *gval) ([]int, error) {
	if v.konst == nil {
		return nil, fmt.Errorf("expected a constant operand")
	}
	out := make([]int, len(v.konst.Data))
	for i, f := range v.konst.Data {
		out[i] = int(f)
	}
	return out, nil
}

func (c *graphConv) translate(n *GraphNode, in []*gval) (*gval, error) {
	if df := n.str("data_format"); df != "" && df != "NHWC" {
		return nil, fmt.Errorf("data_format %s (only NHWC)", df)
	}
	need := func(k int) error {
		if len(in) < k {
			return fmt.Errorf("%d inputs, need %d", len(in), k)
		}
		if in[0].konst != nil && n.Op != "Identity" {
			return fmt.Errorf("constant data input")
		}
		return nil
	}
	switch n.Op {
	case "Placeholder":
		a := n.Attr["shape"]
		if a.Shape == nil || len(a.Shape.Dim) != 4 {
			return nil, fmt.Errorf("input must be [N,H,W,C]")
		}
		s := make([]int, 4)
		for i, d := range a.Shape.Dim {
			v, err := rawInt(d.Size)
			if err != nil {
				return nil, err
			}
			s[i] = v
		}
		if s[1] <= 0 || s[2] <= 0 || s[3] <= 0 {
			return nil, fmt.Errorf("input shape %v: height, width and channels must be fixed", s)
		}
		if c.input != nil {
			return nil, fmt.Errorf("a second Placeholder (one image input only)")
		}
		c.input = s
		c.b.Input(c.inputName, -1, int64(s[1]), int64(s[2]), int64(s[3]))
		x := c.b.Op("Transpose", "input_nchw", []string{c.inputName}, backbone.AttrInts("perm", 0, 3, 1, 2))
		return &gval{name: x, shape: []int{-1, s[1], s[2], s[3]}}, nil
	case "Const":
		t, err := c.w.Tensor(n.Name)
		if err != nil {
			return nil, err
		}
		return &gval{shape: slices.Clone(t.Shape), konst: t}, nil
	case "Identity", "StopGradient":
		if len(in) != 1 {
			return nil, fmt.Errorf("%d inputs", len(in))
		}
		return in[0], nil
	case "Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative":
		if err := need(2); err != nil {
			return nil, err
		}
		return c.conv(n, in)
	case "MaxPool", "AvgPool":
		if err := need(1); err != nil {
			return nil, err
		}
		return c.pool(n, in[0])
	case "MatMul", "_FusedMatMul":
		if err := need(2); err != nil {
			return nil, err
		}
		return c.matmul(n, in)
	case "BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Div", "Minimum", "Maximum":
		if len(in) != 2 {
			return nil, fmt.Errorf("%d inputs", len(in))
		}
		op := map[string]string{"BiasAdd": "Add", "Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div", "Div": "Div", "Minimum": "Min", "Maximum": "Max"}[n.Op]
		return c.binary(op, in[0], in[1])
	case "Relu", "Sigmoid", "Tanh", "Abs", "Sqrt", "Neg", "Exp", "Elu":
		if err := need(1); err != nil {
			return nil, err
		}
		return &gval{name: c.b.Op(n.Op, "t", []string{in[0].name}), shape: in[0].shape}, nil
	case "Relu6":
		if err := need(1); err != nil {
			return nil, err
		}
		return &gval{name: c.clip6(in[0].name), shape: in[0].shape}, nil
	case "LeakyRelu":
		if err := need(1); err != nil {
			return nil, err
		}
		return &gval{name: c.b.Op("LeakyRelu", "t", []string{in[0].name}, backbone.AttrFloat("alpha", float32(n.Attr["alpha"].F))), shape: in[0].shape}, nil
	case "Square":
		if err := need(1); err != nil {
			return nil, err
		}
		return &gval{name: c.b.Op("Mul", "t", []string{in[0].name, in[0].name}), shape: in[0].shape}, nil
	case "Rsqrt":
		if err := need(1); err != nil {
			return nil, err
		}
		return &gval{name: c.b.Op("Reciprocal", "t", []string{c.b.Op("Sqrt", "t", []string{in[0].name})}), shape: in[0].shape}, nil
	case "Softmax":
		if err := need(1); err != nil {
			return nil, err
		}
		if r := len(in[0].shape); r != 2 && r != 4 {
			return nil, fmt.Errorf("softmax over a rank-%d tensor", r)
		}
		return &gval{name: c.b.Op("Softmax", "t", []string{in[0].name}, backbone.AttrInt("axis", 1)), shape: in[0].shape}, nil
	case "Mean", "Sum", "Max":
		if err := need(2); err != nil {
			return nil, err
		}
		return c.reduce(n, in)
	case "Squeeze":
		if err := need(1); err != nil {
			return nil, err
		}
		axes, err := n.ints("squeeze_dims")
		if err != nil {
			return nil, err
		}
		return c.squeeze(in[0], axes)
	case "ConcatV2":
		if len(in) < 2 {
			return nil, fmt.Errorf("%d inputs", len(in))
		}
		return c.concat(in)
	case "Pad", "MirrorPad":
		if err := need(2); err != nil {
			return nil, err
		}
		return c.pad(n, in)
	case "Reshape":
		if err := need(2); err != nil {
			return nil, err
		}
		return c.reshape(in)
	}
	return nil, fmt.Errorf("operator %s is not supported", n.Op)
}

func (c *graphConv) clip6(x string) string {
	lo := c.b.Initializer("zero", nil, []float32{0})
	hi := c.b.Initializer("six", nil, []float32{6})
	return c.b.Op("Clip", "relu6", []string{x, lo, hi})
}

// window returns the output size and the pads (before, after) of one
// spatial axis under TF's padding rules.
func tfWindow(in, k, s, d int, padding string) (out, before, after int, err error) {
	eff := (k-1)*d + 1
	switch padding {
	case "VALID":
		if in < eff {
			return 0, 0, 0, fmt.Errorf("window %d larger than input %d", eff, in)
		}
		return (in-eff)/s + 1, 0, 0, nil
	case "SAME":
		out = (in + s - 1) / s
		total := max((out-1)*s+eff-in, 0)
		return out, total / 2, total - total/2, nil
	}
	return 0, 0, 0, fmt.Errorf("padding %q is not supported", padding)
}

func (c *graphConv) spatialAttrs(n *GraphNode, x *gval, kh, kw int) (oh, ow int, attrs []*onnxpb.AttributeProto, err error) {
	if len(x.shape) != 4 || x.shape[1] <= 0 || x.shape[2] <= 0 {
		return 0, 0, nil, fmt.Errorf("input shape %v: height and width must be known", x.shape)
	}
	strides, err := n.ints("strides")
	if err != nil {
		return 0, 0, nil, err
	}
	if len(strides) == 0 {
		strides = []int{1, 1, 1, 1}
	}
	dil, err := n.ints("dilations")
	if err != nil {
		return 0, 0, nil, err
	}
	if len(dil) == 0 {
		dil = []int{1, 1, 1, 1}
	}
	if len(strides) != 4 || len(dil) != 4 || strides[0] != 1 || strides[3] != 1 || dil[0] != 1 || dil[3] != 1 ||
		strides[1] <= 0 || strides[2] <= 0 || dil[1] <= 0 || dil[2] <= 0 || kh <= 0 || kw <= 0 {
		return 0, 0, nil, fmt.Errorf("strides %v dilations %v kernel %dx%d", strides, dil, kh, kw)
	}
	pad := n.str("padding")
	var pads [4]int
	if pad == "EXPLICIT" {
		ep, err := n.ints("explicit_paddings")
		if err != nil || len(ep) != 8 {
			return 0, 0, nil, fmt.Errorf("explicit_paddings %v", ep)
		}
		pads = [4]int{ep[2], ep[4], ep[3], ep[5]}
		oh = (x.shape[1]+ep[2]+ep[3]-(kh-1)*dil[1]-1)/strides[1] + 1
		ow = (x.shape[2]+ep[4]+ep[5]-(kw-1)*dil[2]-1)/strides[2] + 1
		if oh <= 0 || ow <= 0 || min(ep[2], ep[3], ep[4], ep[5]) < 0 {
			return 0, 0, nil, fmt.Errorf("explicit_paddings %v leave no output", ep)
		}
	} else {
		var err error
		if oh, pads[0], pads[2], err = tfWindow(x.shape[1], kh, strides[1], dil[1], pad); err != nil {
			return 0, 0, nil, err
		}
		if ow, pads[1], pads[3], err = tfWindow(x.shape[2], kw, strides[2], dil[2], pad); err != nil {
			return 0, 0, nil, err
		}
	}
	return oh, ow, []*onnxpb.AttributeProto{
		backbone.AttrInts("kernel_shape", int64(kh), int64(kw)),
		backbone.AttrInts("strides", int64(strides[1]), int64(strides[2])),
		backbone.AttrInts("pads", int64(pads[0]), int64(pads[1]), int64(pads[2]), int64(pads[3])),
	}, nil
}

func (c *graphConv) conv(n *GraphNode, in []*gval) (*gval, error) {
	x, f := in[0], in[1]
	if len(x.shape) != 4 || f.konst == nil || len(f.shape) != 4 {
		return nil, fmt.Errorf("needs a 4-D input and a constant 4-D filter")
	}
	kh, kw, cin, m := f.shape[0], f.shape[1], f.shape[2], f.shape[3]
	if cin != x.shape[3] {
		return nil, fmt.Errorf("filter takes %d channels, input has %d", cin, x.shape[3])
	}
	depthwise := strings.Contains(n.Op, "Depthwise")
	cout, group := m, 1
	w := make([]float32, len(f.konst.Data))
	if depthwise {
		cout, group = cin*m, cin
		for y := range kh {
			for xx := range kw {
				for ch := range cin {
					for j := range m {
						w[((ch*m+j)*kh+y)*kw+xx] = f.konst.Data[((y*kw+xx)*cin+ch)*m+j]
					}
				}
			}
		}
	} else {
		for y := range kh {
			for xx := range kw {
				for i := range cin {
					for o := range m {
						w[((o*cin+i)*kh+y)*kw+xx] = f.konst.Data[((y*kw+xx)*cin+i)*m+o]
					}
				}
			}
		}
	}
	oh, ow, attrs, err := c.spatialAttrs(n, x, kh, kw)
	if err != nil {
		return nil, err
	}
	dil, _ := n.ints("dilations")
	if len(dil) == 4 && (dil[1] != 1 || dil[2] != 1) {
		attrs = append(attrs, backbone.AttrInts("dilations", int64(dil[1]), int64(dil[2])))
	}
	attrs = append(attrs, backbone.AttrInt("group", int64(group)))
	wdims := []int64{int64(cout), int64(cin / group), int64(kh), int64(kw)}
	inputs := []string{x.name, c.b.Initializer("conv_w", wdims, w)}
	fused := n.strs("fused_ops")
	rest := in[2:]
	if len(fused) > 0 && fused[0] == "BiasAdd" {
		if len(rest) == 0 || rest[0].konst == nil || rest[0].konst.Size() != cout {
			return nil, fmt.Errorf("fused BiasAdd needs a constant bias of %d values", cout)
		}
		inputs = append(inputs, c.b.Initializer("conv_b", []int64{int64(cout)}, rest[0].konst.Data))
		fused, rest = fused[1:], rest[1:]
	}
	y := c.b.Op("Conv", "conv", inputs, attrs...)
	out := &gval{name: y, shape: []int{x.shape[0], oh, ow, cout}}
	return c.activation(fused, out, rest)
}

// activation applies the fused activation of a _Fused* node.
func (c *graphConv) activation(fused []string, v *gval, args []*gval) (*gval, error) {
	switch {
	case len(fused) == 0:
		return v, nil
	case len(fused) > 1:
		return nil, fmt.Errorf("fused operations %v are not supported", fused)
	}
	switch fused[0] {
	case "Relu":
		v.name = c.b.Op("Relu", "relu", []string{v.name})
	case "Relu6":
		v.name = c.clip6(v.name)
	case "Elu", "Sigmoid", "Tanh":
		v.name = c.b.Op(fused[0], "act", []string{v.name})
	case "Prelu":
		if len(args) == 0 || args[0].konst == nil {
			return nil, fmt.Errorf("fused Prelu without constant alpha")
		}
		alpha := c.materialize(args[0])
		if len(v.shape) == 4 {
			var err error
			if alpha, err = c.asChannels(args[0].konst); err != nil {
				return nil, err
			}
			// PRelu's slope must broadcast to the input unidirectionally:
			// drop the leading batch axis.
			alpha = c.b.Op("Squeeze", "alpha", []string{alpha, c.b.Int64Initializer("axes0", []int64{1}, []int64{0})})
		}
		v.name = c.b.Op("PRelu", "prelu", []string{v.name, alpha})
	default:
		return nil, fmt.Errorf("fused operation %s is not supported", fused[0])
	}
	return v, nil
}

func (c *graphConv) pool(n *GraphNode, x *gval) (*gval, error) {
	k, err := n.ints("ksize")
	if err != nil {
		return nil, err
	}
	if len(x.shape) != 4 || len(k) != 4 || k[0] != 1 || k[3] != 1 {
		return nil, fmt.Errorf("ksize %v on shape %v", k, x.shape)
	}
	oh, ow, attrs, err := c.spatialAttrs(n, x, k[1], k[2])
	if err != nil {
		return nil, err
	}
	op := "MaxPool"
	if n.Op == "AvgPool" {
		op = "AveragePool" // count_include_pad=0, as TF averages SAME windows
	}
	return &gval{name: c.b.Op(op, "pool", []string{x.name}, attrs...), shape: []int{x.shape[0], oh, ow, x.shape[3]}}, nil
}

func (c *graphConv) matmul(n *GraphNode, in []*gval) (*gval, error) {
	a, b := in[0], in[1]
	if len(a.shape) != 2 || b.konst == nil || len(b.shape) != 2 {
		return nil, fmt.Errorf("needs a 2-D input and a constant 2-D weight")
	}
	if n.Attr["transpose_a"].B {
		return nil, fmt.Errorf("transpose_a is not supported")
	}
	transB := n.Attr["transpose_b"].B
	k, out := b.shape[0], b.shape[1]
	if transB {
		k, out = out, k
	}
	if a.shape[1] >= 0 && a.shape[1] != k {
		return nil, fmt.Errorf("input width %d, weight takes %d", a.shape[1], k)
	}
	tb := int64(0)
	if transB {
		tb = 1
	}
	inputs := []string{a.name, c.materialize(b)}
	fused := n.strs("fused_ops")
	rest := in[2:]
	if len(fused) > 0 && fused[0] == "BiasAdd" {
		if len(rest) == 0 || rest[0].konst == nil || rest[0].konst.Size() != out {
			return nil, fmt.Errorf("fused BiasAdd needs a constant bias of %d values", out)
		}
		inputs = append(inputs, c.materialize(rest[0]))
		fused, rest = fused[1:], rest[1:]
	}
	y := c.b.Op("Gemm", "dense", inputs, backbone.AttrInt("transB", tb))
	return c.activation(fused, &gval{name: y, shape: []int{a.shape[0], out}}, rest)
}

func (c *graphConv) binary(op string, a, b *gval) (*gval, error) {
	if a.konst != nil && b.konst != nil {
		return nil, fmt.Errorf("constant folding is not supported")
	}
	name := func(v, other *gval) (string, error) {
		if v.konst != nil && len(other.shape) == 4 && v.konst.Size() > 1 {
			return c.asChannels(v.konst)
		}
		if v.konst == nil && len(v.shape) != len(other.shape) && other.konst == nil && (len(v.shape) == 4 || len(other.shape) == 4) {
			return "", fmt.Errorf("broadcasting a rank-%d tensor against a 4-D one", len(v.shape))
		}
		return c.materialize(v), nil
	}
	an, err := name(a, b)
	if err != nil {
		return nil, err
	}
	bn, err := name(b, a)
	if err != nil {
		return nil, err
	}
	shape := a.shape
	if b.konst == nil && len(b.shape) > len(a.shape) || a.konst != nil {
		shape = b.shape
	}
	return &gval{name: c.b.Op(op, strings.ToLower(op), []string{an, bn}), shape: slices.Clone(shape)}, nil
}

// reduce translates Mean/Sum/Max over constant axes.
func (c *graphConv) reduce(n *GraphNode, in []*gval) (*gval, error) {
	x := in[0]
	axes, err := c.constInts(in[1])
	if err != nil {
		return nil, err
	}
	keep := n.Attr["keep_dims"].B
	r := len(x.shape)
	red := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r {
			return nil, fmt.Errorf("axis %d of a rank-%d tensor", a, r)
		}
		red[a] = true
	}
	onnxAxes := make([]int64, 0, len(red))
	for a := range red {
		if r == 4 {
			onnxAxes = append(onnxAxes, int64(nchwAxis(a)))
		} else {
			onnxAxes = append(onnxAxes, int64(a))
		}
	}
	slices.Sort(onnxAxes)
	if r == 4 && !keep && !red[3] && !(red[1] && red[2]) {
		return nil, fmt.Errorf("reducing axes %v of an NHWC tensor without keep_dims changes its layout", axes)
	}
	var shape []int
	for i, d := range x.shape {
		switch {
		case !red[i]:
			shape = append(shape, d)
		case keep:
			shape = append(shape, 1)
		}
	}
	k := int64(0)
	if keep {
		k = 1
	}
	op := map[string]string{"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax"}[n.Op]
	var y string
	if op == "ReduceSum" { // axes became an input in opset 13
		y = c.b.Op(op, "reduce", []string{x.name, c.b.Int64Initializer("axes", []int64{int64(len(onnxAxes))}, onnxAxes)}, backbone.AttrInt("keepdims", k))
	} else {
		y = c.b.Op(op, "reduce", []string{x.name}, backbone.AttrInts("axes", onnxAxes...), backbone.AttrInt("keepdims", k))
	}
	return &gval{name: y, shape: shape}, nil
}

func (c *graphConv) squeeze(x *gval, axes []int) (*gval, error) {
	r := len(x.shape)
	red := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || x.shape[a] != 1 {
			return nil, fmt.Errorf("cannot squeeze axis %d of shape %v", a, x.shape)
		}
		red[a] = true
	}
	if len(axes) == 0 {
		return nil, fmt.Errorf("squeeze without squeeze_dims is not supported")
	}
	if r == 4 && !red[3] && !(red[1] && red[2]) {
		return nil, fmt.Errorf("squeezing axes %v of an NHWC tensor changes its layout", axes)
	}
	var onnxAxes []int64
	var shape []int
	for i, d := range x.shape {
		if red[i] {
			a := i
			if r == 4 {
				a = nchwAxis(i)
			}
			onnxAxes = append(onnxAxes, int64(a))
		} else {
			shape = append(shape, d)
		}
	}
	slices.Sort(onnxAxes)
	y := c.b.Op("Squeeze", "squeeze", []string{x.name, c.b.Int64Initializer("axes", []int64{int64(len(onnxAxes))}, onnxAxes)})
	return &gval{name: y, shape: shape}, nil
}

func (c *graphConv) concat(in []*gval) (*gval, error) {
	axisV := in[len(in)-1]
	ax, err := c.constInts(axisV)
	if err != nil || len(ax) != 1 {
		return nil, fmt.Errorf("concat axis must be one constant")
	}
	parts := in[:len(in)-1]
	r := len(parts[0].shape)
	a := ax[0]
	if a < 0 {
		a += r
	}
	if a < 0 || a >= r {
		return nil, fmt.Errorf("axis %d of rank %d", ax[0], r)
	}
	onnxA := a
	if r == 4 {
		onnxA = nchwAxis(a)
	}
	shape := slices.Clone(parts[0].shape)
	shape[a] = 0
	var names []string
	for _, p := range parts {
		if len(p.shape) != r {
			return nil, fmt.Errorf("operands of different ranks")
		}
		name := c.materialize(p)
		if p.konst != nil && r == 4 {
			if name, err = c.asChannels(p.konst); err != nil {
				return nil, err
			}
		}
		names = append(names, name)
		if shape[a] >= 0 && p.shape[a] >= 0 {
			shape[a] += p.shape[a]
		} else {
			shape[a] = -1
		}
	}
	return &gval{name: c.b.Op("Concat", "concat", names, backbone.AttrInt("axis", int64(onnxA))), shape: shape}, nil
}

func (c *graphConv) pad(n *GraphNode, in []*gval) (*gval, error) {
	x := in[0]
	p, err := c.constInts(in[1])
	r := len(x.shape)
	if err != nil || len(p) != 2*r {
		return nil, fmt.Errorf("paddings must be a constant [%d,2]", r)
	}
	pads := make([]int64, 2*r)
	shape := slices.Clone(x.shape)
	for i := range r {
		o := i
		if r == 4 {
			o = nchwAxis(i)
		}
		pads[o], pads[r+o] = int64(p[2*i]), int64(p[2*i+1])
		if shape[i] >= 0 {
			shape[i] += p[2*i] + p[2*i+1]
		}
	}
	mode := "constant"
	if n.Op == "MirrorPad" {
		switch n.str("mode") {
		case "REFLECT":
			mode = "reflect"
		default:
			return nil, fmt.Errorf("MirrorPad mode %s is not supported", n.str("mode"))
		}
	}
	if len(in) > 2 {
		return nil, fmt.Errorf("PadV2 constant values are not supported")
	}
	y := c.b.Op("Pad", "pad", []string{x.name, c.b.Int64Initializer("pads", []int64{int64(len(pads))}, pads)}, backbone.AttrString("mode", mode))
	return &gval{name: y, shape: shape}, nil
}

func (c *graphConv) reshape(in []*gval) (*gval, error) {
	x := in[0]
	target, err := c.constInts(in[1])
	if err != nil {
		return nil, err
	}
	src := x.name
	if len(x.shape) == 4 { // reshape in TF's element order
		src = c.b.Op("Transpose", "to_nhwc", []string{src}, backbone.AttrInts("perm", 0, 2, 3, 1))
	}
	t64 := make([]int64, len(target))
	shape := make([]int, len(target))
	known, prod := 1, 1
	for _, d := range x.shape[1:] {
		known *= max(d, 0)
	}
	for i, d := range target {
		t64[i] = int64(d)
		shape[i] = d
		if i > 0 && d > 0 {
			prod *= d
		}
	}
	for i, d := range target {
		if d == -1 && i > 0 && prod > 0 && known%prod == 0 {
			shape[i] = known / prod
		}
	}
	if len(target) > 0 && target[0] != -1 {
		t64[0], shape[0] = 0, -1 // keep the batch
	}
	y := c.b.Op("Reshape", "reshape", []string{src, c.b.Int64Initializer("shape", []int64{int64(len(t64))}, t64)})
	if len(target) == 4 {
		y = c.b.Op("Transpose", "to_nchw", []string{y}, backbone.AttrInts("perm", 0, 3, 1, 2))
	}
	return &gval{name: y, shape: shape}, nil
}
