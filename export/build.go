package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/dense"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
)

// Tensor names of the exported model's interface.
const (
	// OutputProbabilities is the calibrated class probabilities, float32
	// [N, classes], each row summing to 1, classes in Meta.Classes order.
	OutputProbabilities = "probabilities"
	// OutputFeatures is the backbone's feature vector, float32 [N, D]
	// (before standardisation), present with Options.WithFeatures.
	OutputFeatures = backbone.FeatureOutput
	// InputPixels is the name of the raw-pixel input that
	// Options.WithPreprocessing adds (InputPixels_N when the backbone
	// already uses the name; Meta.InputName has the name actually used).
	InputPixels = "pixels"
)

// MinOpset is the oldest ai.onnx opset Build accepts: the nodes it adds
// (Sub, Mul, Div with multidirectional broadcasting, Gemm with a broadcast
// bias, Relu, Softmax on a 2-D tensor) have the semantics it relies on from
// opset 7 on. Softmax(axis=1) on a rank-2 tensor means the same in every
// opset, so the model's opset is kept as it is.
const MinOpset = 7

// rewriteForConsumers is false only in benchmarks that measure the graph
// as the backbone wrote it.
var rewriteForConsumers = true

// Options controls what Build adds around the head.
type Options struct {
	// WithFeatures adds OutputFeatures [N, D] as a second graph output.
	WithFeatures bool
	// WithPreprocessing replaces the image input by InputPixels, float32 in
	// the same layout and channel order, holding raw 0..255 pixel values
	// (for a 1-channel spec, BT.601 luma 0..255); the spec's scale, mean
	// and std are applied in the graph.
	WithPreprocessing bool
	// Version is headtune's version, recorded as KeyVersion and
	// producer_version ("unknown" when empty).
	Version string
	// FP16 stores the weights and computes the activations inside the graph
	// in half precision (IEEE float16), keeping the input and outputs
	// float32: half the file size; ONNX Runtime's CPU provider runs a node
	// in float16 where it has such a kernel and casts around it otherwise.
	// Probabilities move by up to about 1e-3 (see the README).
	FP16 bool
	// ExtraMetadata is copied into metadata_props as given. Keys must not
	// start with "headtune." (that namespace is Build's own).
	ExtraMetadata map[string]string
}

// Build appends the head h to the cut backbone and returns the exported
// model. cut is a model whose graph output "features" is the float32
// feature matrix [N, D] the head was trained on (backbone.CutAtFeature's
// result; for a head with tuned layers, the cut at h.Backbone.TuneCut), and
// spec is the preprocessing the features were extracted with. h must be
// valid (head.Model.Validate) and take D features.
//
// The result is a new ModelProto built on a shallow copy of cut: the
// backbone's weight TensorProtos and nodes are shared with cut, not copied,
// and neither cut nor h is modified. The caller must therefore not mutate
// cut's messages while using the result (serialise it, or proto.Clone it,
// first). Head weights are copied into new initializers.
//
// Nodes, initializers, inputs and value_info entries that no output
// depends on are pruned, so a classifier left in cut never reaches the
// file. The ai.onnx opset is kept (it must be at least MinOpset); an IR
// version below 4 is raised to 4 so that the new initializers need no
// matching graph inputs. metadata_props keep cut's entries except those in
// the "headtune." namespace, which are replaced by the Key* entries.
//
// Errors name the problem in one line: a head that does not fit the
// features, a spec that contradicts the model's input or the head's
// recorded preprocessing, a missing "features" output, a reserved name.
func Build(cut *onnxpb.ModelProto, spec imaging.Spec, h *head.Model, opt Options) (*onnxpb.ModelProto, error) {
	if cut.GetGraph() == nil {
		return nil, errors.New("export: backbone model has no graph")
	}
	if h == nil {
		return nil, errors.New("export: no head")
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("export: head: %w", err)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := checkHeadSpec(h, spec); err != nil {
		return nil, err
	}
	for k := range opt.ExtraMetadata {
		if strings.HasPrefix(k, keyPrefix) {
			return nil, fmt.Errorf("export: extra metadata key %q is in the reserved %q namespace", k, keyPrefix)
		}
		if k == "" {
			return nil, errors.New("export: extra metadata has an empty key")
		}
	}
	opset, err := defaultOpset(cut)
	if err != nil {
		return nil, err
	}
	if opset < MinOpset {
		return nil, fmt.Errorf("export: backbone uses ai.onnx opset %d; export needs %d or newer (convert the model with onnx.version_converter)", opset, MinOpset)
	}

	src := cut.Graph
	featIdx := slices.IndexFunc(src.Output, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == OutputFeatures })
	if featIdx < 0 {
		return nil, fmt.Errorf("export: backbone model has no %q output: cut it at the feature tensor first (backbone.CutAtFeature)", OutputFeatures)
	}
	featInfo := src.Output[featIdx]
	batchDim, batchName, featDim, err := featureShape(featInfo)
	if err != nil {
		return nil, err
	}
	if featDim > 0 && featDim != int64(h.Dim()) {
		return nil, fmt.Errorf("export: the backbone gives %d features, the head takes %d: the head was trained on another backbone or feature tensor", featDim, h.Dim())
	}

	// Keep only what the features need before looking for the image input,
	// so extra inputs and outputs of the backbone do not get in the way.
	g := backbone.ShallowCopy(src)
	g.Output = []*onnxpb.ValueInfoProto{featInfo}
	if err := prune(g, ""); err != nil {
		return nil, err
	}
	out := backbone.ShallowCopy(cut)
	out.Graph = g
	in, err := backbone.ImageInput(out)
	if err != nil {
		return nil, fmt.Errorf("export: backbone: %w", err)
	}
	if in.Layout != spec.Layout || in.Channels != spec.Channels {
		return nil, fmt.Errorf("export: backbone input %s is %s with %d channels, the preprocessing spec says %s with %d", in.Name, in.Layout, in.Channels, spec.Layout, spec.Channels)
	}
	if (in.Height != 0 && in.Height != spec.Height) || (in.Width != 0 && in.Width != spec.Width) {
		return nil, fmt.Errorf("export: backbone input %s is %dx%d, the preprocessing spec says %dx%d", in.Name, in.Width, in.Height, spec.Width, spec.Height)
	}

	if out.GetIrVersion() < 4 {
		out.IrVersion = proto.Int64(4)
	}
	b := backbone.EditGraph(g)
	if b.Unique(OutputProbabilities) != OutputProbabilities {
		return nil, fmt.Errorf("export: the backbone already has a tensor named %q, the name of the exported output", OutputProbabilities)
	}

	feedName := in.Name
	if opt.WithPreprocessing {
		feedName = addPreprocessing(b, g, in.Name, spec)
	}
	k := len(h.Classes)
	addHead(b, h)
	if rewriteForConsumers {
		// out.OpsetImport is still cut's slice: portable replaces it.
		portable(b, out)
	}

	g.Output = []*onnxpb.ValueInfoProto{backbone.ValueInfo(OutputProbabilities, onnxpb.TensorProto_FLOAT, []int64{batchDim, int64(k)}, batchName)}
	if opt.WithFeatures {
		g.Output = append(g.Output, featInfo)
	}
	if opt.FP16 {
		if err := toFP16(b, out); err != nil {
			return nil, err
		}
	}
	if err := prune(g, feedName); err != nil {
		return nil, err
	}

	version := opt.Version
	if version == "" {
		version = "unknown"
	}
	props, err := metadataProps(cut.MetadataProps, h, spec, opt, version, feedName, featDim)
	if err != nil {
		return nil, err
	}
	out.MetadataProps = props
	out.ProducerName = proto.String("headtune")
	out.ProducerVersion = proto.String(version)
	out.DocString = proto.String(fmt.Sprintf("headtune export: %s head (%d classes) on backbone %s cut at %s",
		h.Kind, k, orDash(h.Backbone.ID), orDash(h.Backbone.FeatureTensor)))
	out.TrainingInfo = nil
	return out, nil
}

// checkHeadSpec refuses a spec that differs from the preprocessing the head
// recorded (when it recorded one).
func checkHeadSpec(h *head.Model, spec imaging.Spec) error {
	raw := bytes.TrimSpace(h.Backbone.Preprocess)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	want, err := imaging.ParseSpec(raw)
	if err != nil {
		return fmt.Errorf("export: head's recorded preprocessing: %w", err)
	}
	if want != spec {
		return fmt.Errorf("export: the head was trained with preprocessing %s, the export was given %s", want.Canonical(), spec.Canonical())
	}
	return nil
}

// defaultOpset returns the version of the ai.onnx operator set cut imports.
func defaultOpset(m *onnxpb.ModelProto) (int64, error) {
	for _, o := range m.OpsetImport {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			return o.GetVersion(), nil
		}
	}
	return 0, errors.New("export: backbone model imports no ai.onnx opset")
}

// featureShape reads the declared [N, D] shape of the features output:
// the batch dim (-1 when symbolic) with its name, and D (-1 when unknown).
func featureShape(v *onnxpb.ValueInfoProto) (batch int64, batchName string, dim int64, err error) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return 0, "", 0, fmt.Errorf("export: backbone output %q is not a tensor", OutputFeatures)
	}
	if et := tt.GetElemType(); et != int32(onnxpb.TensorProto_FLOAT) {
		return 0, "", 0, fmt.Errorf("export: backbone output %q is %s, want float32", OutputFeatures, backbone.ElemTypeName(et))
	}
	batch, batchName, dim = -1, "N", -1
	if tt.Shape == nil {
		return batch, batchName, dim, nil
	}
	dims := tt.Shape.Dim
	if len(dims) != 2 {
		return 0, "", 0, fmt.Errorf("export: backbone output %q has rank %d, want [N, D]", OutputFeatures, len(dims))
	}
	if dv, ok := dims[0].Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && dv.DimValue > 0 {
		batch = dv.DimValue
	} else if p := dims[0].GetDimParam(); p != "" {
		batchName = p
	}
	if dv, ok := dims[1].Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && dv.DimValue > 0 {
		dim = dv.DimValue
	}
	return batch, batchName, dim, nil
}

// addPreprocessing replaces the graph input inName by a raw-pixel input and
// prepends Mul(scale), Sub(mean), Div(std) nodes that produce inName, so the
// backbone's nodes are untouched. Steps that are exact identities (scale 1,
// mean 0, std 1) are left out. It returns the new input's name.
func addPreprocessing(b *backbone.Builder, g *onnxpb.GraphProto, inName string, spec imaging.Spec) string {
	pix := b.Unique(InputPixels)
	first := len(g.Node)
	c := spec.Channels
	shape := []int64{1, int64(c), 1, 1}
	if spec.Layout == imaging.LayoutNHWC {
		shape = []int64{1, 1, 1, int64(c)}
	}
	var mean, std []float32
	zeroMean, unitStd := true, true
	for i := 0; i < c; i++ {
		mean = append(mean, spec.Mean[i])
		std = append(std, spec.Std[i])
		zeroMean = zeroMean && spec.Mean[i] == 0
		unitStd = unitStd && spec.Std[i] == 1
	}
	type step struct {
		op, name string
		init     func() string
	}
	var steps []step
	if spec.Scale != 1 {
		steps = append(steps, step{"Mul", "headtune/pre/scaled", func() string {
			return b.Initializer("headtune/pre/scale", nil, []float32{spec.Scale})
		}})
	}
	if !zeroMean {
		steps = append(steps, step{"Sub", "headtune/pre/centred", func() string {
			return b.Initializer("headtune/pre/mean", shape, mean)
		}})
	}
	if !unitStd {
		steps = append(steps, step{"Div", "headtune/pre/normalised", func() string {
			return b.Initializer("headtune/pre/std", shape, std)
		}})
	}
	if len(steps) == 0 {
		steps = append(steps, step{"Identity", "", nil})
	}
	x := pix
	for i, s := range steps {
		in := []string{x}
		if s.init != nil {
			in = append(in, s.init())
		}
		o := inName
		if i < len(steps)-1 {
			o = b.Unique(s.name)
		}
		n := b.Node(s.op, in, []string{o})
		n.Name = proto.String(b.Unique("headtune/pre/" + strings.ToLower(s.op)))
		x = o
	}
	// The new nodes run first: move them to the front, keeping order.
	added := slices.Clone(g.Node[first:])
	g.Node = append(added, g.Node[:first]...)

	for i, v := range g.Input {
		if v.GetName() == inName {
			nv := proto.Clone(v).(*onnxpb.ValueInfoProto)
			nv.Name = proto.String(pix)
			nv.DocString = proto.String(fmt.Sprintf("raw pixels 0..255, %s, %s, %dx%d (resize first: %s)", spec.Layout, spec.ChannelOrder, spec.Width, spec.Height, spec.Resize))
			inputs := slices.Clone(g.Input)
			inputs[i] = nv
			g.Input = inputs
			break
		}
	}
	return pix
}

// addHead appends standardisation, the dense layers, temperature and
// Softmax, reading OutputFeatures and writing OutputProbabilities.
func addHead(b *backbone.Builder, h *head.Model) {
	name := func(n *onnxpb.NodeProto, s string) { n.Name = proto.String(b.Unique("headtune/head/" + s)) }
	x := OutputFeatures
	d := int64(h.Dim())
	if h.Mean != nil {
		mean := b.Initializer("headtune/head/mean", []int64{d}, h.Mean)
		std := b.Initializer("headtune/head/std", []int64{d}, h.Std)
		c := b.Unique("headtune/head/centred")
		name(b.Node("Sub", []string{x, mean}, []string{c}), "sub_mean")
		s := b.Unique("headtune/head/standardised")
		name(b.Node("Div", []string{c, std}, []string{s}), "div_std")
		x = s
	}
	last := len(h.Layers) - 1
	for i, l := range h.Layers {
		role := "dense"
		if i < h.Tuned {
			role = "tuned"
		}
		p := fmt.Sprintf("headtune/head/%s%d", role, i)
		w := b.Initializer(p+"/weight", []int64{int64(l.Out), int64(l.In)}, l.W)
		bias := b.Initializer(p+"/bias", []int64{int64(l.Out)}, l.B)
		y := b.Unique(p + "/linear")
		if i == last {
			y = b.Unique("headtune/head/logits")
		}
		name(b.Node("Gemm", []string{x, w, bias}, []string{y}, backbone.AttrInt("transB", 1)), fmt.Sprintf("%s%d_gemm", role, i))
		x = y
		if l.Act == dense.ActReLU {
			r := b.Unique(p + "/relu")
			name(b.Node("Relu", []string{x}, []string{r}), fmt.Sprintf("%s%d_relu", role, i))
			x = r
		}
	}
	if h.Temperature != 1 {
		t := b.Initializer("headtune/head/temperature", nil, []float32{float32(h.Temperature)})
		s := b.Unique("headtune/head/scaled_logits")
		name(b.Node("Div", []string{x, t}, []string{s}), "div_temperature")
		x = s
	}
	name(b.Node("Softmax", []string{x}, []string{OutputProbabilities}, backbone.AttrInt("axis", 1)), "softmax")
}

// prune drops every node that no graph output depends on, then every
// initializer, sparse initializer, input, value_info entry and quantization
// annotation that no kept node reads. The image input feed, when given,
// must survive.
func prune(g *onnxpb.GraphProto, feed string) error {
	need := map[string]bool{}
	for _, o := range g.Output {
		need[o.GetName()] = true
	}
	live := make([]bool, len(g.Node))
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		for _, o := range n.Output {
			if o != "" && need[o] {
				live[i] = true
				break
			}
		}
		if !live[i] {
			continue
		}
		for _, r := range nodeReads(n, nil) {
			need[r] = true
		}
	}
	produced := map[string]bool{}
	nodes := make([]*onnxpb.NodeProto, 0, len(g.Node))
	for i, n := range g.Node {
		if live[i] {
			nodes = append(nodes, n)
			for _, o := range n.Output {
				produced[o] = true
			}
		}
	}
	g.Node = nodes
	if feed != "" && !need[feed] {
		return fmt.Errorf("export: the features do not depend on the image input %s", feed)
	}
	g.Initializer = filter(g.Initializer, func(t *onnxpb.TensorProto) bool { return need[t.GetName()] })
	g.SparseInitializer = filter(g.SparseInitializer, func(t *onnxpb.SparseTensorProto) bool { return need[t.GetValues().GetName()] })
	g.Input = filter(g.Input, func(v *onnxpb.ValueInfoProto) bool { return need[v.GetName()] })
	isOutput := map[string]bool{}
	for _, o := range g.Output {
		isOutput[o.GetName()] = true
	}
	g.ValueInfo = filter(g.ValueInfo, func(v *onnxpb.ValueInfoProto) bool {
		return produced[v.GetName()] && !isOutput[v.GetName()]
	})
	g.QuantizationAnnotation = filter(g.QuantizationAnnotation, func(a *onnxpb.TensorAnnotation) bool {
		return need[a.GetTensorName()] || produced[a.GetTensorName()]
	})
	return nil
}

// filter returns the elements of s that keep accepts, in a new slice.
func filter[T any](s []T, keep func(T) bool) []T {
	var out []T
	for _, v := range s {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// nodeReads appends the tensors n reads: its inputs and, for control-flow
// nodes, every name their subgraphs read (outer-scope references included;
// names local to a subgraph are harmless extras).
func nodeReads(n *onnxpb.NodeProto, out []string) []string {
	for _, in := range n.Input {
		if in != "" {
			out = append(out, in)
		}
	}
	for _, a := range n.Attribute {
		if a.G != nil {
			out = graphReads(a.G, out)
		}
		for _, sg := range a.Graphs {
			out = graphReads(sg, out)
		}
	}
	return out
}

func graphReads(g *onnxpb.GraphProto, out []string) []string {
	for _, n := range g.Node {
		out = nodeReads(n, out)
	}
	for _, o := range g.Output {
		out = append(out, o.GetName())
	}
	return out
}

// metadataProps returns base's entries outside the headtune namespace, the
// extra entries and Build's own, sorted by key.
func metadataProps(base []*onnxpb.StringStringEntryProto, h *head.Model, spec imaging.Spec, opt Options, version, inName string, featDim int64) ([]*onnxpb.StringStringEntryProto, error) {
	kv := map[string]string{}
	for _, p := range base {
		if !strings.HasPrefix(p.GetKey(), keyPrefix) {
			kv[p.GetKey()] = p.GetValue()
		}
	}
	for k, v := range opt.ExtraMetadata {
		kv[k] = v
	}
	classes, err := json.Marshal(h.Classes)
	if err != nil {
		return nil, fmt.Errorf("export: encode class names: %w", err)
	}
	ref := h.Backbone
	ref.Preprocess = nil
	bb, err := json.Marshal(ref)
	if err != nil {
		return nil, fmt.Errorf("export: encode backbone identity: %w", err)
	}
	metrics, err := encodeMetrics(h.Metrics)
	if err != nil {
		return nil, err
	}
	layers := make([]headLayer, len(h.Layers))
	for i, l := range h.Layers {
		layers[i] = headLayer{In: l.In, Out: l.Out, Act: l.Act}
	}
	var convs []string
	for _, c := range h.ConvTail {
		convs = append(convs, c.Conv)
	}
	hd, err := json.Marshal(headInfo{Kind: h.Kind, Layers: layers, Tuned: h.Tuned, ConvTuned: convs, Standardized: h.Mean != nil, Temperature: h.Temperature})
	if err != nil {
		return nil, fmt.Errorf("export: encode head summary: %w", err)
	}
	outputs := OutputProbabilities
	if opt.WithFeatures {
		outputs += "," + OutputFeatures
	}
	dim := int64(h.Dim())
	if featDim > 0 {
		dim = featDim
	}
	kv[KeyFormat] = strconv.Itoa(FormatVersion)
	kv[KeyClasses] = string(classes)
	kv[KeyPreprocess] = string(spec.Canonical())
	kv[KeyBackbone] = string(bb)
	kv[KeyVersion] = version
	kv[KeyMetrics] = metrics
	kv[KeyHead] = string(hd)
	kv[KeyInputName] = inName
	kv[KeyInputLayout] = InputLayoutText(spec, opt.WithPreprocessing)
	kv[KeyWithPreprocessing] = strconv.FormatBool(opt.WithPreprocessing)
	kv[KeyFastJPEG] = strconv.FormatBool(spec.FastJPEG)
	kv[KeyOutputs] = outputs
	kv[KeyFeatureDim] = strconv.FormatInt(dim, 10)
	kv[KeyPrecision] = "float32"
	if opt.FP16 {
		kv[KeyPrecision] = "float16"
	}

	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	props := make([]*onnxpb.StringStringEntryProto, len(keys))
	for i, k := range keys {
		props[i] = &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(kv[k])}
	}
	return props, nil
}

// encodeMetrics writes metrics as a JSON object with sorted keys;
// non-finite values (which JSON cannot hold) become null.
func encodeMetrics(m map[string]float64) (string, error) {
	v := make(map[string]any, len(m))
	for k, x := range m {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			v[k] = nil
		} else {
			v[k] = x
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("export: encode metrics: %w", err)
	}
	return string(b), nil
}

// InputLayoutText describes, in one line, the tensor the exported model
// takes: for example
//
//	NCHW float32 [N,3,224,224], RGB, (x*0.003921569-mean)/std with mean [0.485 0.456 0.406] std [0.229 0.224 0.225]; resize: crop (shorter side 256) bilinear
//	NCHW float32 [N,3,224,224], RGB, raw 0..255 pixels (normalisation in the graph); resize: crop (shorter side 256) bilinear
func InputLayoutText(spec imaging.Spec, withPreprocessing bool) string {
	var dims string
	if spec.Layout == imaging.LayoutNHWC {
		dims = fmt.Sprintf("[N,%d,%d,%d]", spec.Height, spec.Width, spec.Channels)
	} else {
		dims = fmt.Sprintf("[N,%d,%d,%d]", spec.Channels, spec.Height, spec.Width)
	}
	order := spec.ChannelOrder
	if spec.Channels == 1 {
		order = "grey (BT.601 luma)"
	}
	c := spec.Channels
	var norm string
	if withPreprocessing {
		norm = "raw 0..255 pixels (normalisation in the graph)"
	} else {
		norm = fmt.Sprintf("(x*%g-mean)/std with mean %v std %v", spec.Scale, spec.Mean[:c], spec.Std[:c])
	}
	resize := string(spec.Resize)
	if spec.Resize == imaging.ResizeCrop && spec.ResizeShorter > 0 {
		resize += fmt.Sprintf(" (shorter side %d)", spec.ResizeShorter)
	}
	return fmt.Sprintf("%s float32 %s, %s, %s; resize: %s %s", spec.Layout, dims, order, norm, resize, spec.Interpolation)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
