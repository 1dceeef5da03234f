package backbone_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/convtail"
)

// convTailGraph: x [N,4,6,6] -> Conv 3x3 + BatchNormalization + Clip(0,6)
// -> Conv 1x1 (grouped, biased) + LeakyRelu(0.1) -> "feat".
func convTailGraph(rng *rand.Rand) []byte {
	b := backbone.NewBuilder("tail")
	x := b.Input("x", -1, 4, 6, 6)
	rnd := func(n int, scale float64, off float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = off + float32(rng.NormFloat64()*scale)
		}
		return v
	}
	w1 := b.Initializer("w1", []int64{8, 4, 3, 3}, rnd(8*4*9, 0.3, 0))
	c1 := b.Op("Conv", "c1", []string{x, w1}, backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("pads", 1, 1, 1, 1))
	bn := b.Op("BatchNormalization", "bn", []string{c1,
		b.Initializer("s", []int64{8}, rnd(8, 0.2, 1)), b.Initializer("bb", []int64{8}, rnd(8, 0.1, 0)),
		b.Initializer("m", []int64{8}, rnd(8, 0.1, 0)), b.Initializer("v", []int64{8}, rnd(8, 0.1, 1))},
		backbone.AttrFloat("epsilon", 1e-3))
	lo := b.Initializer("lo", nil, []float32{0})
	hi := b.Initializer("hi", nil, []float32{6})
	r6 := b.Op("Clip", "relu6", []string{bn, lo, hi})
	w2 := b.Initializer("w2", []int64{6, 4, 1, 1}, rnd(6*4, 0.5, 0))
	b2 := b.Initializer("b2", []int64{6}, rnd(6, 0.1, 0))
	c2 := b.Op("Conv", "c2", []string{r6, w2, b2}, backbone.AttrInts("kernel_shape", 1, 1), backbone.AttrInt("group", 2))
	b.Node("LeakyRelu", []string{c2}, []string{"feat"}, backbone.AttrFloat("alpha", 0.1))
	b.Output("feat", -1, 6, 6, 6)
	data, err := backbone.MarshalModel(b.Model(0))
	if err != nil {
		panic(err)
	}
	return data
}

func goTail(layers []convtail.Layer, x []float32) []float32 {
	var s convtail.Scratch
	for _, l := range layers {
		y := make([]float32, l.OutLen())
		l.Forward(x, y, &s)
		x = y
	}
	return x
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestConvChainDecodeAndWriteBack: the decoded tail (batch norm folded)
// computes what ONNX Runtime computes on the graph, and tuned weights
// written back make ONNX Runtime compute what the tuned tail computes.
func TestConvChainDecodeAndWriteBack(t *testing.T) {
	ortReadyForGraphTests(t)
	rng := rand.New(rand.NewPCG(7, 8))
	data := convTailGraph(rng)
	m, err := backbone.ParseModel(data)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := backbone.ConvChainN(m, "feat", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[0].BatchNorm == "" || chain[0].Layer.Act != convtail.ActReLU6 || chain[1].Layer.Act != convtail.ActLeaky || chain[1].Layer.Groups != 2 || chain[0].Input != "x" {
		t.Fatalf("chain %+v", chain)
	}
	if one, _ := backbone.ConvChainN(m, "feat", 1); len(one) != 1 || one[0].Conv != chain[1].Conv {
		t.Fatalf("k=1 gives %+v", one)
	}
	x := make([]float32, 4*6*6)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	layers := []convtail.Layer{chain[0].Layer, chain[1].Layer}
	want, _ := graphRunORT(t, data, "x", []int64{1, 4, 6, 6}, x, "feat")
	if d := maxDiff(goTail(layers, x), want[0]); d > 1e-5 {
		t.Fatalf("decoded tail differs from ONNX Runtime by %g", d)
	}

	for i := range layers {
		layers[i] = layers[i].Clone()
		for j := range layers[i].W {
			layers[i].W[j] += float32(rng.NormFloat64() * 0.1)
		}
		layers[i].B[0] += 0.5
	}
	tuned, err := backbone.WriteConvChain(m, chain, layers)
	if err != nil {
		t.Fatal(err)
	}
	tdata, err := backbone.MarshalModel(tuned)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := graphRunORT(t, tdata, "x", []int64{1, 4, 6, 6}, x, "feat")
	if d := maxDiff(goTail(layers, x), got[0]); d > 1e-5 {
		t.Fatalf("written-back graph differs from the tuned tail by %g", d)
	}
	if d := maxDiff(got[0], want[0]); d < 1e-3 {
		t.Fatal("written-back graph computes the old weights")
	}
	for _, n := range tuned.Graph.Node {
		if n.GetOpType() == "BatchNormalization" {
			t.Fatal("folded batch norm still in the graph")
		}
	}
	if len(m.Graph.Node) != 5 {
		t.Fatalf("the original model was modified: %d nodes", len(m.Graph.Node))
	}
}
