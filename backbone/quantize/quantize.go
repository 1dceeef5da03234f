package quantize

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
)

// QParams are the uint8 quantization parameters of one activation tensor:
// q = clamp(round(x/Scale) + ZeroPoint, 0, 255), x' = (q - ZeroPoint)*Scale.
type QParams struct {
	Scale     float32 `json:"scale"`
	ZeroPoint uint8   `json:"zero_point"`
}

// ActivationParams maps a range to uint8 parameters: the 256 levels span
// [r.Min, r.Max] with zero exactly representable. A degenerate range
// ({0, 0}) gets scale 1.
func ActivationParams(r Range) QParams {
	lo, hi := min(r.Min, 0), max(r.Max, 0)
	scale := (hi - lo) / 255
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return QParams{Scale: 1}
	}
	zp := math.Round(float64(-lo / scale))
	return QParams{Scale: scale, ZeroPoint: uint8(min(max(zp, 0), 255))}
}

// WeightScales returns the symmetric int8 scales of w (max|w|/127) per
// channel along axis of dims, or one scale when perTensor. An all-zero
// channel gets scale 1.
func WeightScales(w []float32, dims []int64, axis int, perTensor bool) []float32 {
	channels, inner := channelLayout(dims, axis)
	if perTensor {
		m := float32(0)
		for _, v := range w {
			m = max(m, float32(math.Abs(float64(v))))
		}
		return []float32{scaleFor(m)}
	}
	s := make([]float32, channels)
	for i, v := range w {
		c := (i / inner) % channels
		s[c] = max(s[c], float32(math.Abs(float64(v))))
	}
	for c := range s {
		s[c] = scaleFor(s[c])
	}
	return s
}

func scaleFor(maxAbs float32) float32 {
	if !(maxAbs > 0) {
		return 1
	}
	return maxAbs / 127
}

// channelLayout returns the size of axis and the number of elements after
// it (the stride of one channel step).
func channelLayout(dims []int64, axis int) (channels, inner int) {
	channels, inner = int(dims[axis]), 1
	for _, d := range dims[axis+1:] {
		inner *= int(d)
	}
	return channels, inner
}

// quantizeWeights rounds w to int8 with scales (one per channel along
// axis, or a single one).
func quantizeWeights(w []float32, dims []int64, axis int, scales []float32) []byte {
	channels, inner := channelLayout(dims, axis)
	q := make([]byte, len(w))
	for i, v := range w {
		s := scales[0]
		if len(scales) > 1 {
			s = scales[(i/inner)%channels]
		}
		r := math.Round(float64(v / s))
		q[i] = byte(int8(min(max(r, -127), 127)))
	}
	return q
}

// Report says what Quantize did.
type Report struct {
	Nodes     int    `json:"quantized_nodes"`
	Tensors   int    `json:"quantized_tensors"`
	Fused     int    `json:"fused_activations"`
	Left      []Left `json:"left_float,omitempty"`
	PerTensor bool   `json:"per_tensor_weights,omitempty"`
	// PoolConvSwaps is Plan.PoolConvSwaps.
	PoolConvSwaps int                `json:"pool_conv_swaps"`
	Params        map[string]QParams `json:"-"`
	// WeightBytes and FloatWeightBytes are the initializer bytes after and
	// before quantization.
	WeightBytes, FloatWeightBytes int64 `json:"-"`
}

// Quantize writes the int8 QDQ model from calibrated ranges (one per
// Plan.Tensors entry). The plan's model is not modified; the result owns
// its graph.
func (p *Plan) Quantize(ranges map[string]Range) (*onnxpb.ModelProto, *Report, error) {
	qp := make(map[string]QParams, len(p.Tensors))
	for _, t := range p.Tensors {
		src := t
		for {
			s, ok := p.sameScale[src]
			if !ok {
				break
			}
			src = s
		}
		r, ok := ranges[src]
		if !ok {
			return nil, nil, fmt.Errorf("no calibrated range for tensor %s", src)
		}
		qp[t] = ActivationParams(r)
	}
	m := proto.Clone(p.model).(*onnxpb.ModelProto)
	g := m.Graph
	rep := &Report{Nodes: len(p.Nodes), Tensors: len(p.Tensors), Fused: p.Fused, Left: p.Left, PerTensor: p.PerTensor, PoolConvSwaps: p.PoolConvSwaps, Params: qp}
	for _, t := range g.Initializer {
		rep.FloatWeightBytes += int64(proto.Size(t))
	}
	ix := index(g)
	b := backbone.EditGraph(g)
	dq := map[string]string{} // tensor -> its dequantized name
	for _, t := range p.Tensors {
		dq[t] = b.Unique(t + "_dequantized")
	}
	var nodes []*onnxpb.NodeProto
	var inits []*onnxpb.TensorProto
	emitQDQ := func(t string) {
		q := qp[t]
		scale := b.Unique(t + "_scale")
		zp := b.Unique(t + "_zero_point")
		qt := b.Unique(t + "_quantized")
		inits = append(inits, backbone.Float32Tensor(scale, nil, []float32{q.Scale}),
			&onnxpb.TensorProto{Name: proto.String(zp), DataType: proto.Int32(int32(onnxpb.TensorProto_UINT8)), RawData: []byte{q.ZeroPoint}})
		nodes = append(nodes,
			&onnxpb.NodeProto{Name: proto.String(b.Unique(t + "_QuantizeLinear")), OpType: proto.String("QuantizeLinear"), Input: []string{t, scale, zp}, Output: []string{qt}},
			&onnxpb.NodeProto{Name: proto.String(b.Unique(t + "_DequantizeLinear")), OpType: proto.String("DequantizeLinear"), Input: []string{qt, scale, zp}, Output: []string{dq[t]}})
	}
	for _, v := range g.Input {
		if _, ok := dq[v.GetName()]; ok {
			emitQDQ(v.GetName())
		}
	}
	fusedInto := map[int]int{} // producer -> activation node
	for a, pi := range p.fuse {
		fusedInto[pi] = a
	}
	for i, n := range g.Node {
		if _, ok := p.fuse[i]; ok {
			continue // folded into its producer's output range
		}
		if a, ok := fusedInto[i]; ok {
			n.Output = []string{g.Node[a].Output[0]}
		}
		if p.quantized[i] && computeOps[n.GetOpType()] {
			var xq *QParams
			if q, ok := qp[n.Input[0]]; ok {
				xq = &q
			}
			pre, err := p.quantizeCompute(b, ix, n, xq, &inits)
			if err != nil {
				return nil, nil, err
			}
			nodes = append(nodes, pre...)
		}
		for k, x := range n.Input {
			if d, ok := dq[x]; ok {
				n.Input[k] = d
			}
		}
		nodes = append(nodes, n)
		for _, o := range n.Output {
			if _, ok := dq[o]; ok {
				emitQDQ(o)
			}
		}
	}
	g.Node = nodes
	g.Initializer = append(g.Initializer, inits...)
	g.ValueInfo = nil // pre-activation tensors are gone; ONNX Runtime infers the rest
	pruneInitializers(g)
	for _, t := range g.Initializer {
		rep.WeightBytes += int64(proto.Size(t))
	}
	return m, rep, nil
}

// quantizeCompute replaces the weight (and bias) inputs of a Conv, Gemm or
// MatMul with DequantizeLinear outputs of int8 (int32) initializers it adds
// to inits, returning the DequantizeLinear nodes to place before n. xq are
// the input's parameters, nil when the input is not quantized (the bias
// then stays float).
func (p *Plan) quantizeCompute(b *backbone.Builder, ix *graph, n *onnxpb.NodeProto, xq *QParams, inits *[]*onnxpb.TensorProto) ([]*onnxpb.NodeProto, error) {
	wT := ix.constant(n.Input[1])
	w, err := backbone.InitializerFloats(wT)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", nodeName(n), err)
	}
	axis := 0
	switch {
	case n.GetOpType() == "MatMul", n.GetOpType() == "Gemm" && attrInt(n, "transB", 0) == 0:
		axis = 1
	}
	scales := WeightScales(w, wT.Dims, axis, p.PerTensor)
	var bias []float32
	if len(n.Input) > 2 && n.Input[2] != "" && xq != nil {
		if bias, err = backbone.InitializerFloats(ix.constant(n.Input[2])); err != nil {
			return nil, fmt.Errorf("quantize %s: %w", nodeName(n), err)
		}
	}
	name := nodeName(n)
	var out []*onnxpb.NodeProto
	dqNode := func(prefix string, x *onnxpb.TensorProto, scale []float32, zp *onnxpb.TensorProto) string {
		*inits = append(*inits, x)
		sName := b.Unique(prefix + "_scale")
		sDims := []int64{int64(len(scale))}
		if len(scale) == 1 && p.PerTensor {
			sDims = nil
		}
		*inits = append(*inits, backbone.Float32Tensor(sName, sDims, scale))
		in := []string{x.GetName(), sName}
		if zp != nil {
			*inits = append(*inits, zp)
			in = append(in, zp.GetName())
		}
		o := b.Unique(prefix + "_dequantized")
		node := &onnxpb.NodeProto{Name: proto.String(b.Unique(prefix + "_DequantizeLinear")), OpType: proto.String("DequantizeLinear"), Input: in, Output: []string{o}}
		if !p.PerTensor {
			node.Attribute = []*onnxpb.AttributeProto{backbone.AttrInt("axis", int64(axis))}
		}
		out = append(out, node)
		return o
	}
	wq := &onnxpb.TensorProto{Name: proto.String(b.Unique(name + "_weight_quantized")), Dims: wT.Dims,
		DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), RawData: quantizeWeights(w, wT.Dims, axis, scales)}
	zpDims := []int64{int64(len(scales))}
	if p.PerTensor {
		zpDims = nil
	}
	zp := &onnxpb.TensorProto{Name: proto.String(b.Unique(name + "_weight_zero_point")), Dims: zpDims,
		DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), RawData: make([]byte, len(scales))}
	n.Input[1] = dqNode(name+"_weight", wq, scales, zp)
	if bias != nil {
		bs := make([]float32, len(bias))
		raw := make([]byte, 4*len(bias))
		fits := true
		for c, v := range bias {
			s := scales[0]
			if len(scales) > 1 {
				s = scales[c]
			}
			bs[c] = xq.Scale * s
			r := math.Round(float64(v / bs[c]))
			if !(math.Abs(r) < math.MaxInt32) {
				fits = false
				break
			}
			binary.LittleEndian.PutUint32(raw[4*c:], uint32(int32(r)))
		}
		if fits {
			// The bias axis is 0 of a 1-D tensor whatever the weight's axis.
			saved := axis
			axis = 0
			bq := &onnxpb.TensorProto{Name: proto.String(b.Unique(name + "_bias_quantized")), Dims: []int64{int64(len(bias))},
				DataType: proto.Int32(int32(onnxpb.TensorProto_INT32)), RawData: raw}
			if p.PerTensor && len(scales) == 1 {
				// One weight scale: one bias scale.
				bs = bs[:1]
			}
			n.Input[2] = dqNode(name+"_bias", bq, bs, nil)
			axis = saved
		}
	}
	return out, nil
}
