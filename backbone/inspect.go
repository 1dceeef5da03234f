package backbone

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/internal/bytesize"
)

// TensorInfo describes a graph input or output.
type TensorInfo struct {
	Name string `json:"name"`
	// ElemType is the element type's short name ("float32", "uint8", see
	// ElemTypeName), or "" when the value is not a tensor.
	ElemType string `json:"elem_type"`
	// Shape holds one string per dimension: the size in decimal, the
	// symbolic name ("N", "batch"), or "?" when unnamed and unknown. nil
	// when the shape (even its rank) is not declared.
	Shape []string `json:"shape"`
}

// OpsetInfo is one imported operator set. Domain "" is ai.onnx.
type OpsetInfo struct {
	Domain  string `json:"domain"`
	Version int64  `json:"version"`
}

// ImageInfo describes the image input found by ImageInput. Layout is
// "NCHW" or "NHWC" and Channels 1 or 3. Height, Width and Batch are the
// declared sizes, 0 when dynamic (Batch 1 means the graph takes one image
// per run).
type ImageInfo struct {
	Name     string `json:"name"`
	Layout   string `json:"layout"`
	Channels int    `json:"channels"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
	Batch    int    `json:"batch,omitempty"`
	// Float16 is set when the model computes in half precision: headtune
	// feeds it float32 and runs it widened (see WidenFloat16).
	Float16 bool `json:"float16,omitempty"`
}

// ModelInfo is what `headtune inspect` reports about a model. JSON tags
// give the --json output; WriteText the human one.
type ModelInfo struct {
	IRVersion       int64             `json:"ir_version"`
	Opsets          []OpsetInfo       `json:"opsets"`
	ProducerName    string            `json:"producer_name,omitempty"`
	ProducerVersion string            `json:"producer_version,omitempty"`
	Domain          string            `json:"domain,omitempty"`
	ModelVersion    int64             `json:"model_version,omitempty"`
	DocString       string            `json:"doc_string,omitempty"`
	GraphName       string            `json:"graph_name,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	// Inputs are the graph inputs that are not initializers (the ones a
	// caller feeds); Outputs all graph outputs.
	Inputs  []TensorInfo `json:"inputs"`
	Outputs []TensorInfo `json:"outputs"`
	// Nodes is the number of top-level nodes, Ops their count per op type
	// (domain-qualified as "domain:Op" outside ai.onnx).
	Nodes int            `json:"nodes"`
	Ops   map[string]int `json:"ops"`
	// Initializers counts dense initializers. Parameters is the sum of
	// their element counts, all of them, including initializers that are
	// also listed as graph inputs (old PyTorch exports) and non-float ones
	// such as Reshape shapes; sparse initializers add their stored values.
	// ParameterBytes is the bytes those values take in the file's
	// encoding.
	Initializers   int   `json:"initializers"`
	Parameters     int64 `json:"parameters"`
	ParameterBytes int64 `json:"parameter_bytes"`
	// Image is the image input (nil with ImageError saying why not).
	Image      *ImageInfo `json:"image,omitempty"`
	ImageError string     `json:"image_error,omitempty"`
	// Feature is the automatically detected feature tensor (nil with
	// FeatureError saying why not).
	Feature      *FeatureChoice `json:"feature,omitempty"`
	FeatureError string         `json:"feature_error,omitempty"`
	// Candidates lists other tensors that could be chosen with
	// --feature-tensor.
	Candidates []Candidate `json:"candidates"`
}

// Inspect summarises m. Problems with the image input or the feature
// tensor are reported in ImageError and FeatureError, not as errors: the
// point of inspecting is to see them. It errors only when m has no graph.
// m is not modified; the result shares nothing with it.
func Inspect(m *onnxpb.ModelProto) (*ModelInfo, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	g := m.Graph
	ix := newGraphIndex(m)
	info := &ModelInfo{
		IRVersion:       m.GetIrVersion(),
		ProducerName:    m.GetProducerName(),
		ProducerVersion: m.GetProducerVersion(),
		Domain:          m.GetDomain(),
		ModelVersion:    m.GetModelVersion(),
		DocString:       m.GetDocString(),
		GraphName:       g.GetName(),
		Ops:             map[string]int{},
		Nodes:           len(g.Node),
		Initializers:    len(g.Initializer),
		Inputs:          []TensorInfo{},
		Outputs:         []TensorInfo{},
	}
	for _, o := range m.OpsetImport {
		info.Opsets = append(info.Opsets, OpsetInfo{Domain: o.GetDomain(), Version: o.GetVersion()})
	}
	for _, p := range m.MetadataProps {
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[p.GetKey()] = p.GetValue()
	}
	for _, v := range ix.realIn {
		info.Inputs = append(info.Inputs, tensorInfo(v))
	}
	for _, v := range g.Output {
		info.Outputs = append(info.Outputs, tensorInfo(v))
	}
	for _, n := range g.Node {
		op := n.GetOpType()
		if !standardDomain(n) {
			op = n.GetDomain() + ":" + op
		}
		info.Ops[op]++
	}
	for _, t := range g.Initializer {
		n, size := tensorStorage(t)
		info.Parameters += n
		info.ParameterBytes += size
	}
	for _, sp := range g.SparseInitializer {
		n, size := tensorStorage(sp.GetValues())
		info.Parameters += n
		info.ParameterBytes += size
	}
	if in, err := ImageInput(m); err != nil {
		info.ImageError = err.Error()
	} else {
		info.Image = &in
	}
	if fc, err := FindFeatureTensor(m, ""); err != nil {
		info.FeatureError = err.Error()
	} else {
		info.Feature = fc
	}
	info.Candidates = ix.candidates()
	if f := info.Feature; f != nil && !slices.ContainsFunc(info.Candidates, func(c Candidate) bool { return c.Tensor == f.Tensor }) {
		op := ""
		if n := ix.node(f.Tensor); n != nil {
			op = n.GetOpType()
		}
		why := "detected feature tensor"
		if f.Rule == RuleConvHead {
			why = "input of 1x1 Conv classifier " + f.Classifier
		}
		info.Candidates = append([]Candidate{{Tensor: f.Tensor, Op: op, Shape: cloneDims(f.Shape), Dim: f.Dim, Why: why}}, info.Candidates...)
	}
	if info.Candidates == nil {
		info.Candidates = []Candidate{}
	}
	return info, nil
}

// tensorStorage returns a tensor's element count and the bytes its values
// take as stored (0 when the dims are invalid).
func tensorStorage(t *onnxpb.TensorProto) (n, size int64) {
	if t == nil {
		return 0, 0
	}
	n, err := TensorElements(t.Dims)
	if err != nil {
		return 0, 0
	}
	switch {
	case len(t.RawData) > 0:
		return n, int64(len(t.RawData))
	case len(t.FloatData) > 0 || len(t.Int32Data) > 0:
		return n, 4 * int64(len(t.FloatData)+len(t.Int32Data))
	case len(t.Int64Data) > 0 || len(t.DoubleData) > 0 || len(t.Uint64Data) > 0:
		return n, 8 * int64(len(t.Int64Data)+len(t.DoubleData)+len(t.Uint64Data))
	}
	return n, 0
}

func tensorInfo(v *onnxpb.ValueInfoProto) TensorInfo {
	ti := TensorInfo{Name: v.GetName()}
	if tt := v.GetType().GetTensorType(); tt != nil {
		ti.ElemType = ElemTypeName(tt.GetElemType())
		if _, names, ok := declaredShape(v); ok {
			ti.Shape = names
		}
	}
	return ti
}

func shapeString(names []string) string {
	if names == nil {
		return "[?]"
	}
	return "[" + strings.Join(names, ",") + "]"
}

// ImageInput identifies the image input of m: its single non-initializer
// input, a float32 tensor of rank 4 whose channel axis has size 1 or 3.
// The layout is "NCHW" when dim 1 is 1 or 3, "NHWC" when the last dim is 1
// or 3 and dim 1 is not; when both are dynamic the first node reading the
// input decides (a Conv means NCHW with the weight's channel count, a
// Transpose with perm [0,3,1,2] means NHWC). On error the result holds the
// input's name when there is a single input.
//
// A float16 input is accepted (Float16 is set: headtune runs such models
// widened to float32, see WidenFloat16).
//
// Errors say what is wrong in one line: no or several inputs, a non-tensor
// or non-float input (uint8 inputs are named as such), or a shape that is
// not an image tensor.
func ImageInput(m *onnxpb.ModelProto) (ImageInfo, error) {
	if m.GetGraph() == nil {
		return ImageInfo{}, fmt.Errorf("model has no graph")
	}
	ix := newGraphIndex(m)
	switch len(ix.realIn) {
	case 0:
		return ImageInfo{}, fmt.Errorf("model has no inputs: expected one image input")
	case 1:
	default:
		names := make([]string, len(ix.realIn))
		for i, v := range ix.realIn {
			names[i] = v.GetName()
		}
		return ImageInfo{}, fmt.Errorf("model has %d inputs (%s): expected a single image input", len(names), strings.Join(names, ", "))
	}
	v := ix.realIn[0]
	name := v.GetName()
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return ImageInfo{Name: name}, fmt.Errorf("model input %s is not a tensor: expected an image tensor [N,3,H,W] or [N,H,W,3]", name)
	}
	half := false
	switch et := onnxpb.TensorProto_DataType(tt.GetElemType()); et {
	case onnxpb.TensorProto_FLOAT:
	case onnxpb.TensorProto_FLOAT16:
		half = true // run widened to float32 (WidenFloat16)
	case onnxpb.TensorProto_UINT8:
		return ImageInfo{Name: name}, fmt.Errorf("model input %s is uint8: only float32 image inputs are supported (this model expects raw pixels and preprocesses them itself)", name)
	default:
		return ImageInfo{Name: name}, fmt.Errorf("model input %s is %s: only float32 image inputs are supported", name, ElemTypeName(int32(et)))
	}
	dims, names, ok := declaredShape(v)
	if !ok {
		return ImageInfo{Name: name}, fmt.Errorf("model input %s has no declared shape: expected an image tensor [N,3,H,W] or [N,H,W,3]", name)
	}
	bad := fmt.Errorf("model input %s has shape %s: expected an image tensor [N,3,H,W] or [N,H,W,3]", name, shapeString(names))
	if len(dims) != 4 {
		return ImageInfo{Name: name}, bad
	}
	isCh := func(d int64) bool { return d == 1 || d == 3 }
	hw := func(d int64) int {
		if d < 0 {
			return 0
		}
		return int(d)
	}
	found := func(layout string, channels, height, width int) ImageInfo {
		return ImageInfo{Name: name, Layout: layout, Channels: channels, Height: height, Width: width, Batch: hw(dims[0]), Float16: half || HasFloat16(m)}
	}
	switch {
	case isCh(dims[1]):
		return found("NCHW", int(dims[1]), hw(dims[2]), hw(dims[3])), nil
	case isCh(dims[3]):
		return found("NHWC", int(dims[3]), hw(dims[1]), hw(dims[2])), nil
	case dims[1] >= 0 && dims[3] >= 0:
		return ImageInfo{Name: name}, bad
	}
	// Dynamic channel axis: look at what reads the input.
	for _, i := range ix.consumers[name] {
		n := ix.g.Node[i]
		if input(n, 0) != name || !standardDomain(n) {
			continue
		}
		switch n.GetOpType() {
		case "Conv":
			if w := ix.consts[input(n, 1)]; w != nil && len(w.Dims) == 4 && dims[1] < 0 {
				c := w.Dims[1] * attrI(n, "group", 1)
				if isCh(c) {
					return found("NCHW", int(c), hw(dims[2]), hw(dims[3])), nil
				}
			}
		case "Transpose":
			if perm, _ := attrIs(n, "perm"); fmt.Sprint(perm) == "[0 3 1 2]" && dims[3] < 0 {
				if s := ix.shape(n.Output[0]); len(s) == 4 {
					for _, j := range ix.consumers[n.Output[0]] {
						c := ix.g.Node[j]
						if c.GetOpType() == "Conv" && input(c, 0) == n.Output[0] {
							if w := ix.consts[input(c, 1)]; w != nil && len(w.Dims) == 4 {
								if ch := w.Dims[1] * attrI(c, "group", 1); isCh(ch) {
									return found("NHWC", int(ch), hw(dims[1]), hw(dims[2])), nil
								}
							}
						}
					}
				}
			}
		}
	}
	return ImageInfo{Name: name}, bad
}

// WriteText writes the human-readable report of `headtune inspect`.
func (info *ModelInfo) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	var opsets []string
	for _, o := range info.Opsets {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		opsets = append(opsets, fmt.Sprintf("%s %d", d, o.Version))
	}
	p("format:\tONNX IR %d, opsets %s", info.IRVersion, strings.Join(opsets, ", "))
	if info.ProducerName != "" || info.ProducerVersion != "" {
		p("producer:\t%s", strings.TrimSpace(info.ProducerName+" "+info.ProducerVersion))
	}
	if info.GraphName != "" {
		p("graph:\t%s", info.GraphName)
	}
	if info.DocString != "" {
		p("doc:\t%s", firstLine(info.DocString, 100))
	}
	p("size:\t%d nodes, %d initializers, %s parameters (%s)", info.Nodes, info.Initializers, humanCount(info.Parameters), bytesize.Format(info.ParameterBytes))
	p("ops:\t%s", opSummary(info.Ops))
	for i, t := range info.Inputs {
		label := ""
		if i == 0 {
			label = "inputs:"
		}
		p("%s\t%s %s %s", label, t.Name, t.ElemType, shapeString(t.Shape))
	}
	for i, t := range info.Outputs {
		label := ""
		if i == 0 {
			label = "outputs:"
		}
		p("%s\t%s %s %s", label, t.Name, t.ElemType, shapeString(t.Shape))
	}
	if im := info.Image; im != nil {
		p("image input:\t%s %s, %d channels, %s x %s", im.Name, im.Layout, im.Channels, dimOrDynamic(im.Height), dimOrDynamic(im.Width))
		if im.Float16 {
			p("\tfloat16 model: headtune feeds float32 and runs it with its weights widened to float32")
		}
	} else {
		p("image input:\tnone: %s", info.ImageError)
	}
	if f := info.Feature; f != nil {
		how := map[string]string{
			RuleClassifier: "input of the classifier " + f.Classifier,
			RuleConvHead:   "input of the 1x1 Conv classifier " + f.Classifier,
			RuleOutput:     "the model output (already a feature extractor)",
			RuleDetector:   "detector: the deepest backbone map before the detection heads",
			RuleOverride:   "chosen by name",
		}[f.Rule]
		if f.Rule == RuleConvHead && f.Kernel > 1 {
			how = fmt.Sprintf("input of the %dx%d Conv classifier %s", f.Kernel, f.Kernel, f.Classifier)
		}
		if f.Classes > 0 {
			how += fmt.Sprintf(", %d classes", f.Classes)
		}
		p("feature tensor:\t%s %s -> [N,%s] (%s)", f.Tensor, formatDims(f.Shape), dimText(f.Dim), how)
		if q := f.Dequantize; q != nil {
			p("\tquantized: dequantized with scale %s, zero point %s", q.Scale, q.ZeroPoint)
		}
		if pool := poolText(f.Pool); pool != "" {
			p("\t%s", pool)
		}
		if len(f.Removed) > 0 {
			p("cut removes:\t%d nodes: %s", len(f.Removed), listText(f.Removed, 8))
		}
	} else {
		p("feature tensor:\tnone: %s", info.FeatureError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(info.Candidates) > 0 {
		fmt.Fprintf(w, "candidates (--feature-tensor NAME):\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  tensor\top\tshape\tdim\twhy\n")
		for _, c := range info.Candidates {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Tensor, c.Op, formatDims(c.Shape), dimText(c.Dim), c.Why)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(info.Metadata) > 0 {
		fmt.Fprintf(w, "metadata:\n")
		for _, k := range sortedKeys(info.Metadata) {
			fmt.Fprintf(w, "  %s = %s\n", k, firstLine(info.Metadata[k], 200))
		}
	}
	return nil
}

func poolText(p string) string {
	switch p {
	case PoolGlobalAvgNCHW:
		return "pooled by GlobalAveragePool + Flatten (NCHW)"
	case PoolGlobalAvgNHWC:
		return "pooled by ReduceMean over H,W (NHWC)"
	case PoolFlatten:
		return "flattened (shape unknown statically)"
	}
	return ""
}

func dimText(d int64) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprint(d)
}

func dimOrDynamic(d int) string {
	if d == 0 {
		return "dynamic"
	}
	return fmt.Sprint(d)
}

func firstLine(s string, max int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func listText(items []string, max int) string {
	if len(items) <= max {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:max], ", ") + fmt.Sprintf(", ... (%d more)", len(items)-max)
}

func opSummary(ops map[string]int) string {
	type kv struct {
		op string
		n  int
	}
	var list []kv
	for op, n := range ops {
		list = append(list, kv{op, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].op < list[j].op
	})
	parts := make([]string, len(list))
	for i, e := range list {
		parts[i] = fmt.Sprintf("%s %d", e.op, e.n)
	}
	return listText(parts, 12)
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
