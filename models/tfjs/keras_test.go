package tfjs

import (
	"encoding/json"
	"fmt"
	"github.com/headtune/headtune/backbone/ort/orttest"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/headtune/headtune/backbone"
)

// A synthetic Keras model exercising every supported layer class, with
// odd sizes so "same" padding is asymmetric, converted to ONNX and compared
// in ONNX Runtime with a direct NHWC implementation of Keras semantics.

type layerDef struct {
	name, class string
	cfg         map[string]any
	in          []string
}

func synthLayers() []layerDef {
	return []layerDef{
		{"input_1", "InputLayer", map[string]any{"batch_input_shape": []any{nil, 9, 9, 3}, "dtype": "float32"}, nil},
		{"zp", "ZeroPadding2D", map[string]any{"padding": []any{[]any{1, 2}, []any{0, 1}}}, []string{"input_1"}},
		{"c1", "Conv2D", map[string]any{"filters": 4, "kernel_size": []any{3, 3}, "strides": []any{2, 2}, "padding": "valid", "activation": "relu", "use_bias": true}, []string{"zp"}},
		{"dw", "DepthwiseConv2D", map[string]any{"kernel_size": []any{3, 3}, "strides": []any{1, 1}, "padding": "same", "depth_multiplier": 2, "activation": "linear", "use_bias": false}, []string{"c1"}},
		{"bn", "BatchNormalization", map[string]any{"axis": -1, "epsilon": 0.001, "center": true, "scale": true}, []string{"dw"}},
		{"r", "ReLU", map[string]any{"max_value": 6}, []string{"bn"}},
		{"ap", "AveragePooling2D", map[string]any{"pool_size": []any{3, 3}, "strides": []any{1, 1}, "padding": "same"}, []string{"r"}},
		{"mp", "MaxPooling2D", map[string]any{"pool_size": []any{2, 2}, "strides": []any{2, 2}, "padding": "same"}, []string{"r"}},
		{"cs", "Conv2D", map[string]any{"filters": 8, "kernel_size": []any{3, 3}, "strides": []any{2, 2}, "padding": "same", "activation": "linear", "use_bias": true}, []string{"r"}},
		{"add1", "Add", nil, []string{"mp", "cs"}},
		{"ca", "Conv2D", map[string]any{"filters": 8, "kernel_size": []any{1, 1}, "strides": []any{1, 1}, "padding": "valid", "activation": "linear", "use_bias": false}, []string{"r"}},
		{"cat", "Concatenate", map[string]any{"axis": -1}, []string{"ap", "ca"}},
		{"bn2", "BatchNormalization", map[string]any{"axis": 3, "epsilon": 0.01, "center": true, "scale": false}, []string{"cat"}},
		{"act", "Activation", map[string]any{"activation": "sigmoid"}, []string{"bn2"}},
		{"cd", "Conv2D", map[string]any{"filters": 8, "kernel_size": []any{3, 3}, "strides": []any{2, 2}, "padding": "same", "activation": "relu6", "use_bias": true}, []string{"act"}},
		{"add2", "Add", nil, []string{"add1", "cd", "mp"}},
		{"junk", "LSTM", map[string]any{"units": 3}, []string{"input_1"}}, // unreachable from the cuts: pruned
		{"cat2", "Concatenate", map[string]any{"axis": 3}, []string{"add2", "add1"}},
		{"drop", "Dropout", map[string]any{"rate": 0.5}, []string{"cat2"}},
		{"gap", "GlobalAveragePooling2D", nil, []string{"drop"}},
		{"dense", "Dense", map[string]any{"units": 5, "activation": "softmax", "use_bias": true}, []string{"gap"}},
	}
}

func kerasJSON(t testing.TB, layers []layerDef) []byte {
	var ls []any
	for _, l := range layers {
		cfg := map[string]any{"name": l.name, "data_format": "channels_last"}
		for k, v := range l.cfg {
			cfg[k] = v
		}
		var refs []any
		for _, in := range l.in {
			refs = append(refs, []any{in, 0, 0, map[string]any{}})
		}
		nodes := []any{}
		if refs != nil {
			nodes = []any{refs}
		}
		ls = append(ls, map[string]any{"name": l.name, "class_name": l.class, "config": cfg, "inbound_nodes": nodes})
	}
	b, err := json.Marshal(map[string]any{"keras_version": "2.2.4", "model_config": map[string]any{"class_name": "Model", "config": map[string]any{"name": "synth", "layers": ls}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func synthWeights(seed uint64) map[string]*Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	w := map[string]*Tensor{}
	add := func(name string, lo, hi float32, shape ...int) {
		t := &Tensor{Shape: shape, Data: make([]float32, shapeSize(shape))}
		for i := range t.Data {
			t.Data[i] = lo + (hi-lo)*r.Float32()
		}
		w[name] = t
	}
	add("c1/kernel", -0.5, 0.5, 3, 3, 3, 4)
	add("c1/bias", -0.2, 0.2, 4)
	add("dw/depthwise_kernel", -0.5, 0.5, 3, 3, 4, 2)
	add("bn/gamma", 0.5, 1.5, 8)
	add("bn/beta", -0.5, 0.5, 8)
	add("bn/moving_mean", -0.3, 0.3, 8)
	add("bn/moving_variance", 0.2, 2, 8)
	add("cs/kernel", -0.4, 0.4, 3, 3, 8, 8)
	add("cs/bias", -0.2, 0.2, 8)
	add("ca/kernel", -0.4, 0.4, 1, 1, 8, 8)
	add("bn2/beta", -0.5, 0.5, 16)
	add("bn2/moving_mean", -0.3, 0.3, 16)
	add("bn2/moving_variance", 0.2, 2, 16)
	add("cd/kernel", -0.6, 0.6, 3, 3, 16, 8)
	add("cd/bias", -0.2, 0.2, 8)
	add("dense/kernel", -1, 1, 16, 5)
	add("dense/bias", -0.5, 0.5, 5)
	return w
}

// --- direct NHWC reference (one image, float64) ---

type img struct {
	h, w, c int
	d       []float64
}

func newImg(h, w, c int) *img             { return &img{h, w, c, make([]float64, h*w*c)} }
func (m *img) at(y, x, c int) float64     { return m.d[(y*m.w+x)*m.c+c] }
func (m *img) set(y, x, c int, v float64) { m.d[(y*m.w+x)*m.c+c] = v }

func samePad(n, k, s int) (int, int, int) {
	out := (n + s - 1) / s
	total := max((out-1)*s+k-n, 0)
	return out, total / 2, total - total/2
}

func refPad(x *img, t, b, l, r int) *img {
	o := newImg(x.h+t+b, x.w+l+r, x.c)
	for y := range x.h {
		for xx := range x.w {
			for c := range x.c {
				o.set(y+t, xx+l, c, x.at(y, xx, c))
			}
		}
	}
	return o
}

// refConv is a Keras Conv2D (depthwise when mult > 0) on one image.
func refConv(x *img, k *Tensor, bias *Tensor, s int, same bool, mult int) *img {
	kh, kw := k.Shape[0], k.Shape[1]
	if same {
		_, t, b := samePad(x.h, kh, s)
		_, l, r := samePad(x.w, kw, s)
		x = refPad(x, t, b, l, r)
	}
	oh, ow := (x.h-kh)/s+1, (x.w-kw)/s+1
	outC := k.Shape[3]
	if mult > 0 {
		outC = x.c * mult
	}
	o := newImg(oh, ow, outC)
	for y := range oh {
		for xx := range ow {
			for oc := range outC {
				sum := 0.0
				for dy := range kh {
					for dx := range kw {
						if mult > 0 {
							ic, m := oc/mult, oc%mult
							sum += x.at(y*s+dy, xx*s+dx, ic) * float64(k.Data[((dy*kw+dx)*x.c+ic)*mult+m])
						} else {
							for ic := range x.c {
								sum += x.at(y*s+dy, xx*s+dx, ic) * float64(k.Data[((dy*kw+dx)*x.c+ic)*outC+oc])
							}
						}
					}
				}
				if bias != nil {
					sum += float64(bias.Data[oc])
				}
				o.set(y, xx, oc, sum)
			}
		}
	}
	return o
}

// refPool is Keras max/average pooling; average excludes padding.
func refPool(x *img, k, s int, same, isMax bool) *img {
	oh, ow, t, l := (x.h-k)/s+1, (x.w-k)/s+1, 0, 0
	if same {
		oh, t, _ = samePad(x.h, k, s)
		ow, l, _ = samePad(x.w, k, s)
	}
	o := newImg(oh, ow, x.c)
	for y := range oh {
		for xx := range ow {
			for c := range x.c {
				acc, n := 0.0, 0
				if isMax {
					acc = math.Inf(-1)
				}
				for dy := range k {
					for dx := range k {
						yy, xs := y*s+dy-t, xx*s+dx-l
						if yy < 0 || xs < 0 || yy >= x.h || xs >= x.w {
							continue
						}
						v := x.at(yy, xs, c)
						if isMax {
							acc = math.Max(acc, v)
						} else {
							acc += v
						}
						n++
					}
				}
				if !isMax {
					acc /= float64(n)
				}
				o.set(y, xx, c, acc)
			}
		}
	}
	return o
}

func refMap(x *img, f func(c int, v float64) float64) *img {
	o := newImg(x.h, x.w, x.c)
	for i, v := range x.d {
		o.d[i] = f(i%x.c, v)
	}
	return o
}

func refBN(x *img, w map[string]*Tensor, name string, eps float64, scale bool) *img {
	return refMap(x, func(c int, v float64) float64 {
		g := 1.0
		if scale {
			g = float64(w[name+"/gamma"].Data[c])
		}
		return (v-float64(w[name+"/moving_mean"].Data[c]))*g/math.Sqrt(float64(w[name+"/moving_variance"].Data[c])+eps) + float64(w[name+"/beta"].Data[c])
	})
}

func refAdd(xs ...*img) *img {
	o := newImg(xs[0].h, xs[0].w, xs[0].c)
	for _, x := range xs {
		for i, v := range x.d {
			o.d[i] += v
		}
	}
	return o
}

func refConcat(a, b *img) *img {
	o := newImg(a.h, a.w, a.c+b.c)
	for y := range a.h {
		for x := range a.w {
			for c := range a.c {
				o.set(y, x, c, a.at(y, x, c))
			}
			for c := range b.c {
				o.set(y, x, a.c+c, b.at(y, x, c))
			}
		}
	}
	return o
}

func refGAP(x *img) []float64 {
	o := make([]float64, x.c)
	for i, v := range x.d {
		o[i%x.c] += v
	}
	for i := range o {
		o[i] /= float64(x.h * x.w)
	}
	return o
}

// synthReference computes the synthetic model's GAP(add2) and dense output.
func synthReference(x *img, w map[string]*Tensor) (gapAdd2, dense []float64) {
	relu := func(_ int, v float64) float64 { return math.Max(v, 0) }
	zp := refPad(x, 1, 2, 0, 1)
	c1 := refMap(refConv(zp, w["c1/kernel"], w["c1/bias"], 2, false, 0), relu)
	dw := refConv(c1, w["dw/depthwise_kernel"], nil, 1, true, 2)
	r := refMap(refBN(dw, w, "bn", 0.001, true), func(_ int, v float64) float64 { return math.Min(math.Max(v, 0), 6) })
	ap := refPool(r, 3, 1, true, false)
	mp := refPool(r, 2, 2, true, true)
	cs := refConv(r, w["cs/kernel"], w["cs/bias"], 2, true, 0)
	add1 := refAdd(mp, cs)
	ca := refConv(r, w["ca/kernel"], nil, 1, false, 0)
	cat := refConcat(ap, ca)
	act := refMap(refBN(cat, w, "bn2", 0.01, false), func(_ int, v float64) float64 { return 1 / (1 + math.Exp(-v)) })
	cd := refMap(refConv(act, w["cd/kernel"], w["cd/bias"], 2, true, 0), func(_ int, v float64) float64 { return math.Min(math.Max(v, 0), 6) })
	add2 := refAdd(add1, cd, mp)
	g := refGAP(refConcat(add2, add1))
	units := 5
	logits := make([]float64, units)
	mx := math.Inf(-1)
	for o := range units {
		s := float64(w["dense/bias"].Data[o])
		for i, v := range g {
			s += v * float64(w["dense/kernel"].Data[i*units+o])
		}
		logits[o] = s
		mx = math.Max(mx, s)
	}
	sum := 0.0
	for o := range logits {
		logits[o] = math.Exp(logits[o] - mx)
		sum += logits[o]
	}
	for o := range logits {
		logits[o] /= sum
	}
	return refGAP(add2), logits
}

func TestConvertKerasMatchesDirectImplementation(t *testing.T) {
	orttest.Init(t)
	km, err := ParseKerasTopology(kerasJSON(t, synthLayers()))
	if err != nil {
		t.Fatal(err)
	}
	w := synthWeights(3)
	const n = 2
	x := randomInput(5, n*9*9*3, 2)
	var wantGap, wantDense []float64
	for i := range n {
		im := &img{9, 9, 3, make([]float64, 9*9*3)}
		for j := range im.d {
			im.d[j] = float64(x[i*9*9*3+j])
		}
		g, d := synthReference(im, w)
		wantGap, wantDense = append(wantGap, g...), append(wantDense, d...)
	}
	tests := []struct {
		cut      string
		keepBN   bool
		want     []float64
		wantName string
	}{
		{"dense", false, wantDense, "dense"},
		{"dense", true, wantDense, "dense"},
		{"add2", false, wantGap, "gap_add2"},
		{"add2", true, wantGap, "gap_add2"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/keepBN=%v", tc.cut, tc.keepBN), func(t *testing.T) {
			conv, err := ConvertKeras(km, WeightsFromTensors(w), ConvertOptions{Cut: tc.cut, GlobalPool: true, KeepBatchNorm: tc.keepBN})
			if err != nil {
				t.Fatal(err)
			}
			if conv.FeatureName != tc.wantName {
				t.Errorf("feature name %q, want %q", conv.FeatureName, tc.wantName)
			}
			bns := 0
			for _, nd := range conv.Builder.Graph.Node {
				if nd.GetOpType() == "BatchNormalization" {
					bns++
				}
				if nd.GetOpType() == "Pad" {
					t.Errorf("ZeroPadding2D before a convolution should fold into its pads")
				}
			}
			// bn follows a conv (folded unless kept); bn2 follows a concat.
			if wantBN := map[bool]int{false: 1, true: 2}[tc.keepBN]; bns != wantBN {
				t.Errorf("%d BatchNormalization nodes, want %d", bns, wantBN)
			}
			data, err := backbone.MarshalModel(conv.Builder.Model(0))
			if err != nil {
				t.Fatal(err)
			}
			d := len(tc.want) / n
			m := newORTModel(t, data, "input_nhwc", n, 9, 9, 3, 1, []string{conv.FeatureName}, []int{d})
			got := m.run(t, x)[0]
			worst := 0.0
			for i := range got {
				worst = math.Max(worst, math.Abs(float64(got[i])-tc.want[i]))
			}
			t.Logf("max |onnx - direct| = %.3g over %d values", worst, len(got))
			if worst > 2e-5 {
				t.Errorf("ONNX output differs from the direct Keras implementation by %.3g", worst)
			}
		})
	}
}

// TestConvertKerasRefuses checks that unsupported constructs are refused
// with the layer's class and name.
func TestConvertKerasRefuses(t *testing.T) {
	base := synthLayers()
	with := func(mod func([]layerDef) []layerDef) []layerDef {
		c := make([]layerDef, len(base))
		copy(c, base)
		return mod(c)
	}
	tests := []struct {
		name   string
		layers []layerDef
		cut    string
		want   []string
	}{
		{"unknown class on the path", with(func(l []layerDef) []layerDef {
			return append(l, layerDef{"recur", "LSTM", map[string]any{"units": 4}, []string{"dense"}})
		}), "recur", []string{`"LSTM"`, `"recur"`}},
		{"unknown class mid-graph", with(func(l []layerDef) []layerDef {
			for i := range l {
				if l[i].name == "ap" {
					l[i].class = "LocallyConnected2D"
				}
			}
			return l
		}), "dense", []string{`"LocallyConnected2D"`, `"ap"`}},
		{"unsupported activation", with(func(l []layerDef) []layerDef {
			for i := range l {
				if l[i].name == "act" {
					l[i].cfg = map[string]any{"activation": "selu"}
				}
			}
			return l
		}), "dense", []string{`"act"`, `"selu"`}},
		{"leaky ReLU", with(func(l []layerDef) []layerDef {
			for i := range l {
				if l[i].name == "r" {
					l[i].cfg = map[string]any{"negative_slope": 0.1}
				}
			}
			return l
		}), "dense", []string{`"r"`, "negative_slope"}},
		{"channels_first", with(func(l []layerDef) []layerDef {
			for i := range l {
				if l[i].name == "mp" {
					l[i].cfg = map[string]any{"pool_size": []any{2, 2}, "padding": "same", "data_format": "channels_first"}
				}
			}
			return l
		}), "dense", []string{`"mp"`, "channels_first"}},
		{"batch norm over rows", with(func(l []layerDef) []layerDef {
			for i := range l {
				if l[i].name == "bn" {
					l[i].cfg = map[string]any{"axis": 1}
				}
			}
			return l
		}), "dense", []string{`"bn"`, "axis 1"}},
		{"unknown cut", base, "nope", []string{`"nope"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := kerasJSON(t, tc.layers)
			km, err := ParseKerasTopology(raw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ConvertKeras(km, WeightsFromTensors(synthWeights(3)), ConvertOptions{Cut: tc.cut, GlobalPool: true})
			if err == nil {
				t.Fatal("converted, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestParseKerasTopologyErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"not json", `{`, "keras topology"},
		{"graph model", `{"node":[]}`, "no model class_name"},
		{"unknown model class", `{"class_name":"Weird","config":{}}`, `"Weird"`},
		{"no layers", `{"class_name":"Model","config":{"layers":[]}}`, "no layers"},
		{"shared layer", `{"class_name":"Model","config":{"layers":[{"name":"a","class_name":"InputLayer","config":{},"inbound_nodes":[]},{"name":"b","class_name":"ReLU","config":{},"inbound_nodes":[[["a",0,0,{}]],[["a",0,0,{}]]]}]}}`, "shared layers"},
		{"dangling input", `{"class_name":"Model","config":{"layers":[{"name":"b","class_name":"ReLU","config":{},"inbound_nodes":[[["zz",0,0,{}]]]}]}}`, `unknown layer "zz"`},
		{"duplicate", `{"class_name":"Model","config":{"layers":[{"name":"a","class_name":"InputLayer","config":{}},{"name":"a","class_name":"ReLU","config":{}}]}}`, "two layers"},
		{"keras 3 nodes", `{"class_name":"Functional","config":{"layers":[{"name":"b","class_name":"ReLU","config":{},"inbound_nodes":[{"args":[]}]}]}}`, "Keras 2 form"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKerasTopology([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// Sequential (Keras 2.2 list form) chains layers in order.
	m, err := ParseKerasTopology([]byte(`{"class_name":"Sequential","config":[{"class_name":"ReLU","config":{"name":"r","batch_input_shape":[null,2,2,1]}},{"class_name":"Flatten","config":{"name":"f"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 3 || m.Layer("f").Inputs[0] != "r" || m.Layer("r").Inputs[0] != "r_input" {
		t.Fatalf("sequential chaining: %+v", m.Layers)
	}
}

func TestWindowSamePadding(t *testing.T) {
	tests := []struct {
		n, k, s, d int
		padding    string
		out        int
		before     int64
		after      int64
	}{
		{112, 3, 2, 1, "same", 56, 0, 1}, // TF pads the extra pixel at the end
		{224, 3, 2, 1, "same", 112, 0, 1},
		{147, 3, 1, 1, "same", 147, 1, 1},
		{9, 2, 2, 1, "same", 5, 0, 1},
		{8, 2, 2, 1, "same", 4, 0, 0},
		{7, 1, 2, 1, "same", 4, 0, 0},
		{10, 3, 1, 2, "same", 10, 2, 2}, // dilated: effective kernel 5
		{299, 3, 2, 1, "valid", 149, 0, 0},
		{35, 3, 2, 1, "valid", 17, 0, 0},
	}
	for _, tc := range tests {
		g, err := window(val{h: tc.n, w: tc.n, c: 1}, []int{tc.k, tc.k}, []int{tc.s, tc.s}, []int{tc.d, tc.d}, tc.padding)
		if err != nil {
			t.Fatal(err)
		}
		if g.oh != tc.out || g.pads[0] != tc.before || g.pads[2] != tc.after {
			t.Errorf("n=%d k=%d s=%d d=%d %s: out %d pads %v, want out %d pads %d,%d", tc.n, tc.k, tc.s, tc.d, tc.padding, g.oh, g.pads, tc.out, tc.before, tc.after)
		}
		// Cross-check against the formula the reference implementation uses.
		if tc.padding == "same" {
			out, b, a := samePad(tc.n, (tc.k-1)*tc.d+1, tc.s)
			if out != g.oh || int64(b) != g.pads[0] || int64(a) != g.pads[2] {
				t.Errorf("window and samePad disagree for %+v", tc)
			}
		}
	}
	if _, err := window(val{h: 2, w: 2}, []int{3, 3}, []int{1, 1}, []int{1, 1}, "valid"); err == nil {
		t.Error("a window larger than the input must be refused")
	}
	if _, err := window(val{h: 4, w: 4}, []int{3, 3}, []int{1, 1}, []int{1, 1}, "full"); err == nil {
		t.Error("unknown padding must be refused")
	}
}

func TestZeroPadding(t *testing.T) {
	tests := []struct {
		in   string
		want [4]int
		bad  bool
	}{
		{`1`, [4]int{1, 1, 1, 1}, false},
		{`[1,2]`, [4]int{1, 2, 1, 2}, false},
		{`[[0,1],[2,3]]`, [4]int{0, 2, 1, 3}, false},
		{`[[0,1]]`, [4]int{}, true},
		{`-1`, [4]int{}, true},
		{`[[0,1.5],[0,0]]`, [4]int{}, true},
		{`"x"`, [4]int{}, true},
	}
	for _, tc := range tests {
		var v any
		json.Unmarshal([]byte(tc.in), &v)
		got, err := zeroPadding(v)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("zeroPadding(%s) = %v, %v; want %v bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// FuzzConvertKeras feeds arbitrary topologies (seeded with the synthetic
// model and variations) to the parser and converter with the synthetic
// weights: they must return an error or a graph, never panic.
func FuzzConvertKeras(f *testing.F) {
	f.Add(kerasJSON(f, synthLayers()[:5]), "bn")
	f.Add([]byte(`{"class_name":"Sequential","config":[{"class_name":"ReLU","config":{"name":"r","batch_input_shape":[null,2,2,1]}},{"class_name":"Flatten","config":{"name":"f"}}]}`), "f")
	w := WeightsFromTensors(synthWeights(3))
	f.Fuzz(func(t *testing.T, topo []byte, cut string) {
		m, err := ParseKerasTopology(topo)
		if err != nil {
			return
		}
		conv, err := ConvertKeras(m, w, ConvertOptions{Cut: cut, GlobalPool: len(cut)%2 == 0})
		if err != nil {
			return
		}
		if _, err := backbone.MarshalModel(conv.Builder.Model(0)); err != nil {
			t.Fatal(err)
		}
	})
}
