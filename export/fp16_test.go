package export

import (
	"math"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/models/tfjs"
)

// TestFloat32ToFloat16 checks the rounding against every half: each half
// comes back unchanged, the midpoint between two neighbours rounds to the
// even one, and a hair off the midpoint rounds to the nearer one.
func TestFloat32ToFloat16(t *testing.T) {
	for h := uint32(0); h < 0x7c00; h++ { // positive finite halves
		for _, sign := range []uint16{0, 0x8000} {
			x := backbone.Float16ToFloat32(uint16(h) | sign)
			if got := float32ToFloat16(x); got != uint16(h)|sign {
				t.Fatalf("half %#04x -> %g -> %#04x", uint16(h)|sign, x, got)
			}
		}
		if h == 0x7bff {
			break
		}
		a := float64(backbone.Float16ToFloat32(uint16(h)))
		b := float64(backbone.Float16ToFloat32(uint16(h + 1)))
		mid := float32((a + b) / 2) // exact in float32: halves have 11 significant bits
		even := uint16(h)
		if h&1 == 1 {
			even = uint16(h + 1)
		}
		if got := float32ToFloat16(mid); got != even {
			t.Fatalf("midpoint %g of %#04x and %#04x -> %#04x, want %#04x", mid, h, h+1, got, even)
		}
		if got := float32ToFloat16(math.Nextafter32(mid, float32(math.Inf(1)))); got != uint16(h+1) {
			t.Fatalf("just above the midpoint of %#04x -> %#04x", h, got)
		}
		if got := float32ToFloat16(math.Nextafter32(mid, 0)); got != uint16(h) {
			t.Fatalf("just below the midpoint of %#04x -> %#04x", h, got)
		}
	}
	for _, tc := range []struct {
		x    float32
		want uint16
	}{
		{65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7bff}, {1e9, 0x7bff}, {-1e9, 0xfbff},
		{float32(math.Inf(1)), 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
		{1e-9, 0}, {-1e-9, 0x8000}, {5.96e-8, 1}, // smallest subnormal 2^-24
	} {
		if got := float32ToFloat16(tc.x); got != tc.want {
			t.Errorf("%g -> %#04x, want %#04x", tc.x, got, tc.want)
		}
	}
	if got := float32ToFloat16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("NaN -> %#04x", got)
	}
}

// TestFP16Structure checks an --fp16 export: float32 input and outputs,
// every float initializer half, half the file size of the float32 export
// give or take the metadata, and its precision recorded.
func TestFP16Structure(t *testing.T) {
	f := getFixture(t, "vgg", 64, 1, 8, testClasses)
	h := handHead(f, []int{16}, 1.5)
	m32, err := Build(f.cut, f.spec, h, Options{WithFeatures: true})
	if err != nil {
		t.Fatal(err)
	}
	m16, err := Build(f.cut, f.spec, h, Options{WithFeatures: true, WithPreprocessing: true, FP16: true})
	if err != nil {
		t.Fatal(err)
	}
	checkNoDeadParts(t, m16)
	for _, v := range append(m16.Graph.Input, m16.Graph.Output...) {
		if et := v.GetType().GetTensorType().GetElemType(); et != int32(onnxpb.TensorProto_FLOAT) {
			t.Errorf("%s is %s, want float32", v.GetName(), backbone.ElemTypeName(et))
		}
	}
	for _, init := range m16.Graph.Initializer {
		if init.GetDataType() == int32(onnxpb.TensorProto_FLOAT) {
			t.Errorf("initializer %s is still float32", init.GetName())
		}
	}
	d32, _ := backbone.MarshalModel(m32)
	d16, _ := backbone.MarshalModel(m16)
	if r := float64(len(d16)) / float64(len(d32)); r < 0.45 || r > 0.55 {
		t.Errorf("fp16 file is %.2f of the float32 one (%d / %d bytes), want about half", r, len(d16), len(d32))
	}
	meta, err := ReadMetadata(m16)
	if err != nil {
		t.Fatal(err)
	}
	if !meta.FP16 {
		t.Error("metadata does not say float16")
	}
	if meta32, _ := ReadMetadata(m32); meta32.FP16 {
		t.Error("float32 export says float16")
	}
	if l := Limits(m16); len(l) != 1 || l[0][:len(LimitOpenCV)] != LimitOpenCV {
		t.Errorf("limits %q, want one OpenCV line", l)
	}
	// Build must not have touched the cut's float32 weights.
	for _, init := range f.cut.Graph.Initializer {
		if init.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			t.Fatalf("the cut's %s became %s", init.GetName(), backbone.ElemTypeName(init.GetDataType()))
		}
	}
}

// BenchmarkFP16 compares float32 and --fp16 exports in one run (batch 6,
// 2 threads, interleaved): file size, the fastest iteration's ms per image,
// and the largest probability difference between the two, on the
// registry-built backbones.
func BenchmarkFP16(b *testing.B) {
	const batch = registryImages
	ortReady(b)
	for _, arch := range []string{tfjs.ArchMobileNetV2, tfjs.ArchInceptionV3, tfjs.ArchFaceExpression} {
		b.Run(arch, func(b *testing.B) {
			f := registryFixture(b, arch)
			h := handHead(f, nil, 1.5)
			shape := f.spec.InputShape()
			var sessions [2]*ort.Session
			var outs [2][]float32
			var size [2]int
			for i, fp16 := range []bool{false, true} {
				m, err := Build(f.cut, f.spec, h, Options{FP16: fp16})
				if err != nil {
					b.Fatal(err)
				}
				data, err := backbone.MarshalModel(m)
				if err != nil {
					b.Fatal(err)
				}
				size[i] = len(data)
				s, err := ort.NewSession(data, ort.SessionSpec{Input: f.input, InputShape: shape, Outputs: []string{OutputProbabilities}, OutputSizes: []int{f.k}}, ort.SessionOptions{Threads: 2})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				sessions[i], outs[i] = s, make([]float32, batch*f.k)
			}
			x := f.norm[:batch*f.spec.TensorLen()]
			best := alternate(b, sessions, x, batch, outs)
			per := func(i int) float64 { return best[i].Seconds() * 1000 / batch }
			b.ReportMetric(float64(size[0]), "fp32_bytes")
			b.ReportMetric(float64(size[1]), "fp16_bytes")
			b.ReportMetric(per(0), "fp32_min_ms/image")
			b.ReportMetric(per(1), "fp16_min_ms/image")
			b.ReportMetric(maxAbsDiff(outs[0], outs[1]), "max_prob_diff")
		})
	}
}
