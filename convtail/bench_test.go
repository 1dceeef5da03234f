package convtail

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkYOLOv3Tail times one image forward and backward through the
// last convolutions before YOLOv3's first head at 416x416 (13x13 maps):
// K=1 is layer 79 (1x1, 1024->512), K=2 adds layer 78 (3x3, 512->1024).
// The frozen head alone costs nothing in comparison: this is the price of
// --tune-layers on a convolutional tail, per image and epoch.
func BenchmarkYOLOv3Tail(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	l78 := randLayer(rng, 512, 13, 13, 1024, 3, 1, 1, 1, ActLeaky)
	l79 := randLayer(rng, 1024, 13, 13, 512, 1, 1, 0, 1, ActLeaky)
	for _, bc := range []struct {
		name string
		tail []Layer
	}{{"K=1", []Layer{l79}}, {"K=2", []Layer{l78, l79}}} {
		b.Run(bc.name, func(b *testing.B) {
			m := &Model{Tail: bc.tail}
			w := newWork(bc.tail)
			x := make([]float32, bc.tail[0].InLen())
			for i := range x {
				x[i] = rng.Float32()
			}
			dW := make([][]float32, len(bc.tail))
			dB := make([][]float32, len(bc.tail))
			for i, l := range bc.tail {
				dW[i], dB[i] = make([]float32, len(l.W)), make([]float32, len(l.B))
			}
			// forward, weight gradient, and input gradient except for
			// the first layer (nothing below it to train)
			var macs int64
			for i, l := range bc.tail {
				per := int64(l.OutLen()) * int64(l.InC/l.Groups*l.K*l.K)
				macs += 2 * per
				if i > 0 {
					macs += per
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.forward(x, w)
				last := len(bc.tail)
				for j := range w.grad[last] {
					w.grad[last][j] = 1e-3
				}
				for li := last - 1; li >= 0; li-- {
					var dx []float32
					if li > 0 {
						dx = w.grad[li]
					}
					bc.tail[li].Backward(w.acts[li], w.acts[li+1], w.grad[li+1], dW[li], dB[li], dx, &w.s[li])
				}
			}
			b.ReportMetric(float64(2*macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
