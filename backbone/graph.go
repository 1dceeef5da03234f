package backbone

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/headtune/headtune/backbone/onnxpb"
)

// This file holds the read-only view of an ONNX graph that inspection,
// feature detection and surgery share: who produces and who consumes each
// tensor, which tensors are constants, and statically known shapes.

// maxElements bounds element counts computed from untrusted dims so that
// products never overflow int64 and a hostile file cannot make headtune
// allocate absurd buffers.
const maxElements = 1 << 40

// ElemTypeName returns the short name of an ONNX tensor element type:
// "float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16",
// "uint16", "int32", "uint32", "int64", "uint64", "bool", "string",
// "complex64", "complex128", or "type(N)" for codes this version does not
// know (including 0, "undefined").
func ElemTypeName(t int32) string {
	switch onnxpb.TensorProto_DataType(t) {
	case onnxpb.TensorProto_FLOAT:
		return "float32"
	case onnxpb.TensorProto_FLOAT16:
		return "float16"
	case onnxpb.TensorProto_BFLOAT16:
		return "bfloat16"
	case onnxpb.TensorProto_DOUBLE:
		return "float64"
	case onnxpb.TensorProto_INT8:
		return "int8"
	case onnxpb.TensorProto_UINT8:
		return "uint8"
	case onnxpb.TensorProto_INT16:
		return "int16"
	case onnxpb.TensorProto_UINT16:
		return "uint16"
	case onnxpb.TensorProto_INT32:
		return "int32"
	case onnxpb.TensorProto_UINT32:
		return "uint32"
	case onnxpb.TensorProto_INT64:
		return "int64"
	case onnxpb.TensorProto_UINT64:
		return "uint64"
	case onnxpb.TensorProto_BOOL:
		return "bool"
	case onnxpb.TensorProto_STRING:
		return "string"
	case onnxpb.TensorProto_COMPLEX64:
		return "complex64"
	case onnxpb.TensorProto_COMPLEX128:
		return "complex128"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// TensorElements returns the number of elements a tensor of shape dims
// holds (1 for a scalar, dims empty). It errors on negative dims and on
// counts above 2^40.
func TensorElements(dims []int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", dims)
		}
		if d != 0 && n > maxElements/d {
			return 0, fmt.Errorf("shape %v holds more than 2^40 elements", dims)
		}
		n *= d
	}
	return n, nil
}

// InitializerFloats decodes the values of a numeric tensor as float32, in
// row-major order of t.Dims. It reads every encoding ONNX writers use:
// raw_data (little endian) for all numeric types, float_data (float32),
// double_data (float64), int64_data (int64, uint32), uint64_data,
// int32_data (int32, int16, int8, uint16, uint8, bool, and float16/bfloat16
// bit patterns in the low 16 bits). float16 and bfloat16 are widened
// exactly; int64 and float64 are rounded to the nearest float32.
//
// The returned slice is freshly allocated and owned by the caller; t is not
// modified. Errors name the tensor and say what is wrong: external data,
// string or complex types, or a value count that does not match the dims.
func InitializerFloats(t *onnxpb.TensorProto) ([]float32, error) {
	return AppendInitializerFloats(nil, t)
}

// AppendInitializerFloats is InitializerFloats appending to dst, so a
// caller decoding many tensors can reuse one buffer (fresh memory costs
// page faults). It returns the extended slice; on error dst is returned
// unchanged with the error.
func AppendInitializerFloats(dst []float32, t *onnxpb.TensorProto) ([]float32, error) {
	if t == nil {
		return dst, fmt.Errorf("nil tensor")
	}
	name := t.GetName()
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.ExternalData) > 0 {
		return dst, fmt.Errorf("tensor %q: external data is not supported", name)
	}
	if t.Segment != nil {
		return dst, fmt.Errorf("tensor %q: segmented tensors are not supported", name)
	}
	n64, err := TensorElements(t.Dims)
	if err != nil {
		return dst, fmt.Errorf("tensor %q: %w", name, err)
	}
	n := int(n64)
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	size := 0
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		size = 4
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		size = 2
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64:
		size = 8
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
		size = 1
	default:
		return dst, fmt.Errorf("tensor %q: element type %s cannot be read as float32", name, ElemTypeName(t.GetDataType()))
	}
	count := func(got int) error {
		if got != n {
			return fmt.Errorf("tensor %q: shape %v needs %d values, found %d", name, t.Dims, n, got)
		}
		return nil
	}
	if len(t.RawData) > 0 {
		if len(t.RawData) != n*size {
			return dst, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes of raw data, found %d", name, t.Dims, ElemTypeName(t.GetDataType()), n*size, len(t.RawData))
		}
		base := len(dst)
		dst = slices.Grow(dst, n)[:base+n]
		out := dst[base:]
		r := t.RawData
		switch dt {
		case onnxpb.TensorProto_FLOAT:
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(r[4*i:]))
			}
		case onnxpb.TensorProto_INT32:
			for i := range out {
				out[i] = float32(int32(binary.LittleEndian.Uint32(r[4*i:])))
			}
		case onnxpb.TensorProto_UINT32:
			for i := range out {
				out[i] = float32(binary.LittleEndian.Uint32(r[4*i:]))
			}
		case onnxpb.TensorProto_FLOAT16:
			for i := range out {
				out[i] = Float16ToFloat32(binary.LittleEndian.Uint16(r[2*i:]))
			}
		case onnxpb.TensorProto_BFLOAT16:
			for i := range out {
				out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(r[2*i:])) << 16)
			}
		case onnxpb.TensorProto_INT16:
			for i := range out {
				out[i] = float32(int16(binary.LittleEndian.Uint16(r[2*i:])))
			}
		case onnxpb.TensorProto_UINT16:
			for i := range out {
				out[i] = float32(binary.LittleEndian.Uint16(r[2*i:]))
			}
		case onnxpb.TensorProto_DOUBLE:
			for i := range out {
				out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(r[8*i:])))
			}
		case onnxpb.TensorProto_INT64:
			for i := range out {
				out[i] = float32(int64(binary.LittleEndian.Uint64(r[8*i:])))
			}
		case onnxpb.TensorProto_UINT64:
			for i := range out {
				out[i] = float32(binary.LittleEndian.Uint64(r[8*i:]))
			}
		case onnxpb.TensorProto_INT8:
			for i := range out {
				out[i] = float32(int8(r[i]))
			}
		case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
			for i := range out {
				out[i] = float32(r[i])
			}
		}
		return dst, nil
	}
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		if err := count(len(t.FloatData)); err != nil {
			return dst, err
		}
		return append(dst, t.FloatData...), nil
	case onnxpb.TensorProto_DOUBLE:
		if err := count(len(t.DoubleData)); err != nil {
			return dst, err
		}
		return appendAsFloat32(dst, t.DoubleData), nil
	case onnxpb.TensorProto_INT64:
		if err := count(len(t.Int64Data)); err != nil {
			return dst, err
		}
		return appendAsFloat32(dst, t.Int64Data), nil
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		if err := count(len(t.Uint64Data)); err != nil {
			return dst, err
		}
		return appendAsFloat32(dst, t.Uint64Data), nil
	default: // int32_data carries INT32, INT16, INT8, UINT16, UINT8, BOOL, FLOAT16, BFLOAT16
		if err := count(len(t.Int32Data)); err != nil {
			return dst, err
		}
		base := len(dst)
		dst = slices.Grow(dst, n)[:base+n]
		out := dst[base:]
		for i, v := range t.Int32Data {
			switch dt {
			case onnxpb.TensorProto_FLOAT16:
				out[i] = Float16ToFloat32(uint16(v))
			case onnxpb.TensorProto_BFLOAT16:
				out[i] = math.Float32frombits(uint32(uint16(v)) << 16)
			default:
				out[i] = float32(v)
			}
		}
		return dst, nil
	}
}

// appendAsFloat32 appends src converted to float32 to dst.
func appendAsFloat32[T float64 | int64 | uint64](dst []float32, src []T) []float32 {
	base := len(dst)
	dst = slices.Grow(dst, len(src))[:base+len(src)]
	for i, v := range src {
		dst[base+i] = float32(v)
	}
	return dst
}

// initializerInts decodes an integer tensor (int64 or int32, any encoding)
// such as a Reshape shape or Squeeze axes. Small tensors only.
func initializerInts(t *onnxpb.TensorProto) ([]int64, bool) {
	if t == nil || len(t.Dims) > 1 {
		return nil, false
	}
	n, err := TensorElements(t.Dims)
	if err != nil || n > 64 {
		return nil, false
	}
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_INT64:
		if len(t.RawData) > 0 {
			if int64(len(t.RawData)) != 8*n {
				return nil, false
			}
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(binary.LittleEndian.Uint64(t.RawData[8*i:]))
			}
			return out, true
		}
		if int64(len(t.Int64Data)) != n {
			return nil, false
		}
		return append([]int64(nil), t.Int64Data...), true
	case onnxpb.TensorProto_INT32:
		if len(t.RawData) > 0 {
			if int64(len(t.RawData)) != 4*n {
				return nil, false
			}
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(int32(binary.LittleEndian.Uint32(t.RawData[4*i:])))
			}
			return out, true
		}
		if int64(len(t.Int32Data)) != n {
			return nil, false
		}
		out := make([]int64, n)
		for i, v := range t.Int32Data {
			out[i] = int64(v)
		}
		return out, true
	}
	return nil, false
}

// Float16ToFloat32 widens an IEEE 754 half-precision bit pattern exactly,
// including subnormals, infinities and NaN.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// graphIndex is a read-only index of one graph. It never modifies the graph.
type graphIndex struct {
	g         *onnxpb.GraphProto
	opset     int64                          // ai.onnx opset version, 0 if absent
	producer  map[string]int                 // tensor -> index of the node that outputs it
	consumers map[string][]int               // tensor -> indexes of nodes that read it (incl. subgraph references)
	consts    map[string]*onnxpb.TensorProto // initializers and Constant node values
	inits     map[string]*onnxpb.TensorProto // initializers only
	realIn    []*onnxpb.ValueInfoProto       // graph inputs that are not initializers
	typed     map[string]*onnxpb.ValueInfoProto
	shapes    map[string][]int64 // statically known shapes; nil slice = rank unknown, -1 = unknown dim
	types     map[string]int32   // element types inferred where nothing is declared (quantized graphs declare few)
}

func newGraphIndex(m *onnxpb.ModelProto) *graphIndex {
	g := m.GetGraph()
	ix := &graphIndex{
		g:         g,
		producer:  map[string]int{},
		consumers: map[string][]int{},
		consts:    map[string]*onnxpb.TensorProto{},
		inits:     map[string]*onnxpb.TensorProto{},
		typed:     map[string]*onnxpb.ValueInfoProto{},
		shapes:    map[string][]int64{},
		types:     map[string]int32{},
	}
	for _, o := range m.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			ix.opset = o.GetVersion()
		}
	}
	for _, t := range g.GetInitializer() {
		ix.inits[t.GetName()] = t
		ix.consts[t.GetName()] = t
	}
	for _, v := range g.GetInput() {
		if _, ok := ix.inits[v.GetName()]; !ok {
			ix.realIn = append(ix.realIn, v)
		}
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetValueInfo(), g.GetInput(), g.GetOutput()} {
		for _, v := range list {
			ix.typed[v.GetName()] = v
		}
	}
	for i, n := range g.GetNode() {
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			if _, dup := ix.producer[o]; !dup {
				ix.producer[o] = i
			}
		}
		for _, in := range nodeReads(n) {
			ix.consumers[in] = append(ix.consumers[in], i)
		}
		if standardDomain(n) && len(n.Output) == 1 {
			switch n.GetOpType() {
			case "Constant":
				for _, a := range n.Attribute {
					if a.GetName() == "value" && a.T != nil {
						ix.consts[n.Output[0]] = a.T
					}
				}
			case "Identity":
				// PyTorch's exporter deduplicates equal weights (VGG's zero
				// biases) by aliasing them through Identity.
				if c, ok := ix.consts[input(n, 0)]; ok {
					ix.consts[n.Output[0]] = c
				}
			}
		}
	}
	ix.inferShapes()
	return ix
}

// nodeReads lists the tensors a node reads: its inputs plus every name its
// subgraphs (If/Loop/Scan bodies) reference, which may be outer-scope
// tensors. The over-approximation is safe for liveness.
func nodeReads(n *onnxpb.NodeProto) []string {
	var out []string
	for _, in := range n.Input {
		if in != "" {
			out = append(out, in)
		}
	}
	for _, a := range n.Attribute {
		if a.G != nil {
			out = appendGraphReads(out, a.G, 0)
		}
		for _, sg := range a.Graphs {
			out = appendGraphReads(out, sg, 0)
		}
	}
	return out
}

func appendGraphReads(out []string, g *onnxpb.GraphProto, depth int) []string {
	if depth > 32 {
		return out
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			if in != "" {
				out = append(out, in)
			}
		}
		for _, a := range n.Attribute {
			if a.G != nil {
				out = appendGraphReads(out, a.G, depth+1)
			}
			for _, sg := range a.Graphs {
				out = appendGraphReads(out, sg, depth+1)
			}
		}
	}
	for _, o := range g.Output {
		out = append(out, o.GetName())
	}
	return out
}

// node returns the node producing tensor t, or nil.
func (ix *graphIndex) node(t string) *onnxpb.NodeProto {
	i, ok := ix.producer[t]
	if !ok {
		return nil
	}
	return ix.g.Node[i]
}

// exists reports whether t names a tensor of the graph.
func (ix *graphIndex) exists(t string) bool {
	if _, ok := ix.producer[t]; ok {
		return true
	}
	if _, ok := ix.consts[t]; ok {
		return true
	}
	for _, v := range ix.realIn {
		if v.GetName() == t {
			return true
		}
	}
	return false
}

// elemType returns the element type of t, declared or inferred (0 when
// unknown).
func (ix *graphIndex) elemType(t string) int32 {
	if c, ok := ix.consts[t]; ok {
		return c.GetDataType()
	}
	if v, ok := ix.typed[t]; ok {
		if tt := v.GetType().GetTensorType(); tt != nil && tt.GetElemType() != 0 {
			return tt.GetElemType()
		}
	}
	return ix.types[t]
}

// shape returns the statically known shape of t (nil if the rank is unknown).
func (ix *graphIndex) shape(t string) []int64 { return ix.shapes[t] }

// declaredShape converts a ValueInfo shape to dims (-1 for symbolic) and
// display strings. ok is false when the value has no tensor shape.
func declaredShape(v *onnxpb.ValueInfoProto) (dims []int64, names []string, ok bool) {
	tt := v.GetType().GetTensorType()
	if tt == nil || tt.Shape == nil {
		return nil, nil, false
	}
	dims = make([]int64, len(tt.Shape.Dim))
	names = make([]string, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		switch x := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			dims[i] = x.DimValue
			names[i] = strconv.FormatInt(x.DimValue, 10)
			if x.DimValue < 0 {
				dims[i] = -1
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			dims[i] = -1
			names[i] = x.DimParam
		default:
			dims[i] = -1
			names[i] = "?"
		}
	}
	return dims, names, true
}

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrI(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil && a.I != nil {
		return a.GetI()
	}
	return def
}

func attrF(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := attr(n, name); a != nil && a.F != nil {
		return a.GetF()
	}
	return def
}

func attrIs(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := attr(n, name); a != nil {
		return a.Ints, true
	}
	return nil, false
}

func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

// inferShapes propagates shapes forward in node order, seeded with
// declared value_info/inputs/outputs and constant dims. Declared shapes win
// over inferred ones. Only the ops that matter for locating and sizing a
// feature tensor in CNN classifiers are understood; anything else yields an
// unknown shape. It never fails: bad attributes just leave shapes unknown.
func (ix *graphIndex) inferShapes() {
	for name, v := range ix.typed {
		if d, _, ok := declaredShape(v); ok {
			ix.shapes[name] = d
		}
	}
	for name, t := range ix.consts {
		d := make([]int64, len(t.Dims))
		copy(d, t.Dims)
		ix.shapes[name] = d
	}
	for _, n := range ix.g.GetNode() {
		if len(n.Output) == 0 || !standardDomain(n) && n.GetDomain() != msDomain {
			continue
		}
		out := n.Output[0]
		if et := ix.inferType(n); et != 0 {
			ix.types[out] = et
		}
		if _, declared := ix.shapes[out]; declared {
			continue
		}
		if s := ix.inferNode(n); s != nil {
			ix.shapes[out] = s
		}
	}
}

// msDomain is ONNX Runtime's operator domain, home of the quantized
// operators (QLinearAdd, QLinearGlobalAveragePool, QGemm, ...) that its
// quantizer writes.
const msDomain = "com.microsoft"

// inferType returns the element type of n's first output: what quantizing
// operators produce (the type of their output zero point), float32 after
// DequantizeLinear, Cast's target, and otherwise the type of the first
// input. 0 when unknown.
func (ix *graphIndex) inferType(n *onnxpb.NodeProto) int32 {
	zp := func(i int) int32 {
		if t := ix.elemType(input(n, i)); t != 0 {
			return t
		}
		return int32(onnxpb.TensorProto_UINT8) // the default zero point is uint8
	}
	if i, ok := quantOutputZeroPoint(n); ok {
		return zp(i)
	}
	switch n.GetOpType() {
	case "DequantizeLinear":
		if t := ix.elemType(input(n, 1)); t != 0 {
			return t // the scale's type (float32, or float16 from opset 19)
		}
		return int32(onnxpb.TensorProto_FLOAT)
	case "Cast":
		return int32(attrI(n, "to", 0))
	case "Shape", "Size", "ArgMax", "ArgMin", "NonZero":
		return int32(onnxpb.TensorProto_INT64)
	case "QGemm":
		return int32(onnxpb.TensorProto_FLOAT) // without y_scale QGemm outputs float32
	}
	return ix.elemType(input(n, 0))
}

// quantOutputZeroPoint returns the input index of the output zero point of
// a quantizing operator (QuantizeLinear and the QLinear family), whose
// scale is the input before it.
func quantOutputZeroPoint(n *onnxpb.NodeProto) (int, bool) {
	switch n.GetOpType() {
	case "QuantizeLinear":
		return 2, true
	case "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul":
		return 7, true
	case "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax":
		return 4, true
	case "QLinearConcat":
		return 1, true
	case "QGemm":
		if input(n, 7) != "" {
			return 8, true
		}
	}
	return 0, false
}

func dimsKnown(s []int64) bool {
	for _, d := range s {
		if d < 0 {
			return false
		}
	}
	return true
}

// normAxis maps a possibly negative axis into [0, rank); ok false if out of range.
func normAxis(a int64, rank int) (int, bool) {
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, false
	}
	return int(a), true
}

// spatial fills out[2:] for Conv and pooling from input x and kernel k.
func (ix *graphIndex) spatial(n *onnxpb.NodeProto, x, k []int64, out []int64) {
	r := len(k)
	strides, _ := attrIs(n, "strides")
	dil, _ := attrIs(n, "dilations")
	pads, _ := attrIs(n, "pads")
	autoPad := ""
	if a := attr(n, "auto_pad"); a != nil {
		autoPad = string(a.S)
	}
	ceil := attrI(n, "ceil_mode", 0) != 0
	for i := 0; i < r; i++ {
		in := x[2+i]
		s, d := int64(1), int64(1)
		if i < len(strides) {
			s = strides[i]
		}
		if i < len(dil) {
			d = dil[i]
		}
		if in < 0 || k[i] < 0 || s <= 0 || d <= 0 {
			out[2+i] = -1
			continue
		}
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[2+i] = (in + s - 1) / s
			continue
		case "VALID":
			eff := d*(k[i]-1) + 1
			if in < eff {
				out[2+i] = -1
			} else {
				out[2+i] = (in-eff)/s + 1
			}
			continue
		}
		var pb, pe int64
		if len(pads) == 2*r {
			pb, pe = pads[i], pads[r+i]
		}
		eff := d*(k[i]-1) + 1
		num := in + pb + pe - eff
		if num < 0 {
			out[2+i] = -1
			continue
		}
		o := num/s + 1
		if ceil && num%s != 0 {
			o++
		}
		out[2+i] = o
	}
}

func cloneDims(x []int64) []int64 {
	if x == nil {
		return nil
	}
	return append([]int64{}, x...)
}

// prodDims multiplies dims; -1 if any is unknown or the product overflows.
func prodDims(x []int64) int64 {
	p := int64(1)
	for _, d := range x {
		if d < 0 {
			return -1
		}
		if d != 0 && p > maxElements/d {
			return -1
		}
		p *= d
	}
	return p
}

// broadcast applies numpy broadcasting to two shapes (a nil a means "no
// shape yet" and returns b). Unknown dims stay unknown unless the other side
// is a known non-1 dim.
func broadcast(a, b []int64) []int64 {
	if a == nil {
		return cloneDims(b)
	}
	if len(b) > len(a) {
		a, b = b, a
	}
	out := cloneDims(a)
	off := len(a) - len(b)
	for i, d := range b {
		o := out[off+i]
		switch {
		case o == d:
		case o == 1:
			out[off+i] = d
		case d == 1:
		case o < 0 && d > 1:
			out[off+i] = d
		case d < 0 && o > 1:
		case o < 0 || d < 0:
			out[off+i] = -1
		default:
			return nil
		}
	}
	return out
}

// formatDims renders dims for messages: [N 3 224 224] style with "?" for
// unknown dims, or "unknown" for an unknown rank.
func formatDims(d []int64) string {
	if d == nil {
		return "unknown"
	}
	s := "["
	for i, v := range d {
		if i > 0 {
			s += ","
		}
		if v < 0 {
			s += "?"
		} else {
			s += strconv.FormatInt(v, 10)
		}
	}
	return s + "]"
}
