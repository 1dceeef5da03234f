package quantize_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/quantize"
)

// poolBranch describes an Inception-style pool branch for poolBranchModel:
// x [N,C,S,S] -> AveragePool -> Conv -> (Relu) -> Flatten -> feat.
type poolBranch struct {
	kernel, stride  int64
	pads            []int64 // nil: attribute absent
	autoPad         string  // "": attribute absent
	countIncludePad int64   // -1: attribute absent
	convK           int64
	group           int64
	relu            bool
	// second adds another 1x1 Conv reading the pool's output (its
	// Relu concatenated with the first branch's); poolOutput makes the
	// pool's output a graph output too.
	second, poolOutput bool
}

const branchC, branchM, branchS = 3, 6, 7

// poolBranchModel builds the model for pb and returns it with the conv
// weights ([M, C/group, k, k]) and bias.
func poolBranchModel(pb poolBranch) (*onnxpb.ModelProto, []float32, []float32) {
	b := backbone.NewBuilder("poolbranch")
	x := b.Input("x", -1, branchC, branchS, branchS)
	attrs := []*onnxpb.AttributeProto{backbone.AttrInts("kernel_shape", pb.kernel, pb.kernel)}
	if pb.stride != 0 {
		attrs = append(attrs, backbone.AttrInts("strides", pb.stride, pb.stride))
	}
	if pb.pads != nil {
		attrs = append(attrs, backbone.AttrInts("pads", pb.pads...))
	}
	if pb.autoPad != "" {
		attrs = append(attrs, backbone.AttrString("auto_pad", pb.autoPad))
	}
	if pb.countIncludePad >= 0 {
		attrs = append(attrs, backbone.AttrInt("count_include_pad", pb.countIncludePad))
	}
	pooled := b.Op("AveragePool", "pooled", []string{x}, attrs...)
	r := rand.New(rand.NewPCG(11, 3))
	group := max(pb.group, 1)
	conv := func(name string) (string, []float32, []float32) {
		w := make([]float32, branchM*branchC/int(group)*int(pb.convK*pb.convK))
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.4)
		}
		bias := make([]float32, branchM)
		for i := range bias {
			bias[i] = float32(r.NormFloat64() * 0.3)
		}
		ca := []*onnxpb.AttributeProto{backbone.AttrInts("kernel_shape", pb.convK, pb.convK)}
		if pb.convK > 1 {
			p := (pb.convK - 1) / 2
			ca = append(ca, backbone.AttrInts("pads", p, p, p, p))
		}
		if pb.group != 0 {
			ca = append(ca, backbone.AttrInt("group", pb.group))
		}
		y := b.Op("Conv", name, []string{pooled, b.Initializer(name+"_w", []int64{branchM, branchC / group, pb.convK, pb.convK}, w),
			b.Initializer(name+"_b", []int64{branchM}, bias)}, ca...)
		if pb.relu {
			y = b.Op("Relu", name+"_relu", []string{y})
		}
		return y, w, bias
	}
	y, w, bias := conv("proj")
	if pb.second {
		y2, _, _ := conv("proj2")
		y = b.Op("Concat", "branches", []string{y, y2}, backbone.AttrInt("axis", 1))
	}
	b.Node("Flatten", []string{y}, []string{"feat"}, backbone.AttrInt("axis", 1))
	b.Output("feat", -1, -1)
	if pb.poolOutput {
		b.Output(pooled, -1, branchC, -1, -1)
	}
	return b.Model(0), w, bias
}

// featLen is the per-sample length of feat for pb.
func (pb poolBranch) featLen() int {
	s := branchS
	if pb.stride > 1 {
		s = (branchS+int(pb.pads[0]+pb.pads[2])-int(pb.kernel))/int(pb.stride) + 1
	}
	m := branchM
	if pb.second {
		m *= 2
	}
	return m * s * s
}

// opOrder lists the op types of m's nodes.
func opOrder(m *onnxpb.ModelProto) []string {
	var ops []string
	for _, n := range m.Graph.Node {
		ops = append(ops, n.GetOpType())
	}
	return ops
}

// TestPoolConvSwap: Prepare moves a count_include_pad=0, stride-1,
// size-keeping AveragePool after the 1x1 Conv it feeds, and the rewritten
// float model gives the original's outputs (within float rounding, border
// positions included, where the window is partly padding); where the
// identity does not hold, or the swap would not keep the Conv's work, the
// model is left as it was.
func TestPoolConvSwap(t *testing.T) {
	needORT(t)
	inception := poolBranch{kernel: 3, stride: 1, pads: []int64{1, 1, 1, 1}, countIncludePad: 0, convK: 1, relu: true}
	with := func(f func(*poolBranch)) poolBranch { pb := inception; f(&pb); return pb }
	cases := []struct {
		name string
		pb   poolBranch
		swap bool
	}{
		{"inception pool branch", inception, true},
		{"count_include_pad absent", with(func(pb *poolBranch) { pb.countIncludePad = -1 }), true},
		{"strides absent", with(func(pb *poolBranch) { pb.stride = 0 }), true},
		{"no relu", with(func(pb *poolBranch) { pb.relu = false }), true},
		{"5x5 asymmetric pads", with(func(pb *poolBranch) { pb.kernel, pb.pads = 5, []int64{1, 2, 3, 2} }), true},
		{"SAME_UPPER", with(func(pb *poolBranch) { pb.pads, pb.autoPad = nil, "SAME_UPPER" }), true},
		{"count_include_pad 1", with(func(pb *poolBranch) { pb.countIncludePad = 1 }), false},
		{"stride 2", with(func(pb *poolBranch) { pb.stride = 2 }), false},
		{"pads shrink the map", with(func(pb *poolBranch) { pb.pads = []int64{0, 0, 0, 0} }), false},
		{"pool with two consumers", with(func(pb *poolBranch) { pb.second = true }), false},
		{"pool output is a graph output", with(func(pb *poolBranch) { pb.poolOutput = true }), false},
		{"3x3 conv", with(func(pb *poolBranch) { pb.convK = 3 }), false},
		{"grouped conv", with(func(pb *poolBranch) { pb.group = 3 }), false},
	}
	shape := []int64{branchC, branchS, branchS}
	x := images(21, 3, shape)
	for i := range x {
		x[i] = 4*x[i] - 1 // negative inputs too: Relu must stay after the pool
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _ := poolBranchModel(tc.pb)
			p, err := quantize.Prepare(m, "feat", quantize.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := p.Model()
			if !tc.swap {
				if p.PoolConvSwaps != 0 {
					t.Errorf("PoolConvSwaps = %d, want 0", p.PoolConvSwaps)
				}
				if !bytes.Equal(mustMarshal(t, got), mustMarshal(t, m)) {
					t.Errorf("graph changed: %v -> %v", opOrder(m), opOrder(got))
				}
				return
			}
			if p.PoolConvSwaps != 1 {
				t.Fatalf("PoolConvSwaps = %d, want 1 (ops %v)", p.PoolConvSwaps, opOrder(got))
			}
			want := []string{"Conv", "AveragePool", "Flatten"}
			if tc.pb.relu {
				want = []string{"Conv", "AveragePool", "Relu", "Flatten"}
			}
			if ops := opOrder(got); !slices.Equal(ops, want) {
				t.Fatalf("ops %v, want %v", ops, want)
			}
			off, err := quantize.Prepare(m, "feat", quantize.Options{NoPoolSwap: true})
			if err != nil {
				t.Fatal(err)
			}
			if off.PoolConvSwaps != 0 || !bytes.Equal(mustMarshal(t, off.Model()), mustMarshal(t, m)) {
				t.Errorf("NoPoolSwap: %d swaps, ops %v", off.PoolConvSwaps, opOrder(off.Model()))
			}
			n := tc.pb.featLen()
			a := runModel(t, m, "x", shape, []string{"feat"}, []int{n}, x, 3)[0]
			b := runModel(t, got, "x", shape, []string{"feat"}, []int{n}, x, 3)[0]
			neg, zero := 0, 0
			for i := range a {
				if d := math.Abs(float64(a[i] - b[i])); d > 1e-5*(1+math.Abs(float64(a[i]))) {
					t.Fatalf("feat[%d]: original %g, swapped %g", i, a[i], b[i])
				}
				if a[i] < 0 {
					neg++
				}
				if a[i] == 0 {
					zero++
				}
			}
			// The Conv's outputs must take both signs, or a Relu moved to
			// before the pool would go unnoticed.
			if tc.pb.relu && zero == 0 || !tc.pb.relu && neg == 0 {
				t.Errorf("the test input gives %d negative and %d zero outputs: it does not exercise the Relu's place", neg, zero)
			}
		})
	}
}

// TestPoolConvSwapQuantizedWithinScaleBound quantizes the swapped pool
// branch (x -> 1x1 Conv -> AveragePool -> Relu, the Relu left float
// because its output is the feature map) and checks every output against
// a bound from the scales alone: the Conv's element bound of
// TestConvErrorWithinScaleBound (input, weight and bias rounding, output
// step sc/2), averaged over the pool window the way the pool averages
// the errors, plus the pool's own output step sp/2; the Relu does not
// increase an error.
func TestPoolConvSwapQuantizedWithinScaleBound(t *testing.T) {
	needORT(t)
	pb := poolBranch{kernel: 3, stride: 1, pads: []int64{1, 1, 1, 1}, countIncludePad: 0, convK: 1, relu: true}
	m, w, _ := poolBranchModel(pb)
	shape := []int64{branchC, branchS, branchS}
	p, r := calibrated(t, m, "feat", shape, quantize.Options{}, quantize.MinMax, 1, images(3, 16, shape), 16)
	if p.PoolConvSwaps != 1 {
		t.Fatalf("PoolConvSwaps = %d, want 1", p.PoolConvSwaps)
	}
	q, rep, err := p.Quantize(r)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PoolConvSwaps != 1 {
		t.Errorf("report: PoolConvSwaps = %d, want 1", rep.PoolConvSwaps)
	}
	var convOut, poolOut string
	for _, n := range p.Model().Graph.Node {
		switch n.GetOpType() {
		case "Conv":
			convOut = n.Output[0]
		case "AveragePool":
			poolOut = n.Output[0]
		}
	}
	sx, sc, sp := rep.Params["x"].Scale, rep.Params[convOut].Scale, rep.Params[poolOut].Scale
	if sx == 0 || sc == 0 || sp == 0 {
		t.Fatalf("missing parameters for x, %s, %s: %v", convOut, poolOut, rep.Params)
	}
	sw := quantize.WeightScales(w, []int64{branchM, branchC, 1, 1}, 0, false)
	const n = 4
	x := images(4, n, shape) // inside the calibrated range (same generator)
	per := pb.featLen()
	got := runModel(t, q, "x", shape, []string{"feat"}, []int{per}, x, n)[0]
	want := runModel(t, m, "x", shape, []string{"feat"}, []int{per}, x, n)[0]
	const s = branchS
	differ := false
	for img := 0; img < n; img++ {
		for c := 0; c < branchM; c++ {
			// Conv element bounds, per position.
			var e [s][s]float64
			for y := 0; y < s; y++ {
				for xx := 0; xx < s; xx++ {
					v := float64(sx)*float64(sw[c])/2 + float64(sc)/2
					for ci := 0; ci < branchC; ci++ {
						wk := math.Abs(float64(w[c*branchC+ci]))
						xk := math.Abs(float64(x[((img*branchC+ci)*s+y)*s+xx]))
						v += wk*float64(sx)/2 + xk*float64(sw[c])/2 + float64(sx)*float64(sw[c])/4
					}
					e[y][xx] = v
				}
			}
			for y := 0; y < s; y++ {
				for xx := 0; xx < s; xx++ {
					sum, cnt := 0.0, 0
					for dy := -1; dy <= 1; dy++ {
						for dx := -1; dx <= 1; dx++ {
							if yy, xk := y+dy, xx+dx; yy >= 0 && xk >= 0 && yy < s && xk < s {
								sum += e[yy][xk]
								cnt++
							}
						}
					}
					bound := sum/float64(cnt) + float64(sp)/2
					k := img*per + (c*s+y)*s + xx
					if d := math.Abs(float64(got[k] - want[k])); d > bound+1e-5 {
						t.Errorf("image %d channel %d (%d,%d): |%g - %g| = %g exceeds the scale bound %g", img, c, y, xx, got[k], want[k], d, bound)
					}
					differ = differ || got[k] != want[k]
				}
			}
		}
	}
	if !differ {
		t.Error("int8 outputs are identical to float ones: the model was not quantized")
	}
}
