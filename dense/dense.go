// Package dense holds the fully connected layer type that backbone and head
// share: backbone decodes pretrained layers out of ONNX graphs into it
// (--tune-layers), head trains, saves and runs it, and export writes it back
// as ONNX nodes. One type means a layer moves between them without
// conversion. The package imports nothing of headtune, so every package may
// use it without bending the imaging -> backbone -> featcache -> head ->
// export flow.
package dense

import "fmt"

// Activation names accepted in Layer.Act.
const (
	ActNone = ""     // identity
	ActReLU = "relu" // max(0, x)
)

// MaxWidth bounds In and Out, and MaxWeights In*Out, so that a corrupt or
// hostile file cannot make a reader allocate without limit.
const (
	MaxWidth   = 1 << 24
	MaxWeights = 1 << 31
)

// Layer is one fully connected layer: y = act(W·x + B).
//
// W holds Out rows of In weights each, row-major (W[o*In+i]), the layout of
// an ONNX Gemm with transB=1. B holds Out biases. The slices belong to the
// layer: backbone returns fresh ones, and head's methods never retain
// caller memory.
type Layer struct {
	In  int       `json:"in"`
	Out int       `json:"out"`
	W   []float32 `json:"-"`             // [Out*In] row-major
	B   []float32 `json:"-"`             // [Out]
	Act string    `json:"act,omitempty"` // ActNone or ActReLU
}

// Clone returns a deep copy of the layer.
func (l Layer) Clone() Layer {
	l.W = append([]float32(nil), l.W...)
	l.B = append([]float32(nil), l.B...)
	return l
}

// ValidateShape checks In and Out alone: positive and within MaxWidth and
// MaxWeights. Readers call it before allocating the weights.
func (l Layer) ValidateShape() error {
	if l.In <= 0 || l.Out <= 0 {
		return fmt.Errorf("invalid shape %dx%d", l.Out, l.In)
	}
	if l.In > MaxWidth || l.Out > MaxWidth || int64(l.In)*int64(l.Out) > MaxWeights {
		return fmt.Errorf("shape %dx%d too large", l.Out, l.In)
	}
	return nil
}

// Validate checks the shape, that W and B have In*Out and Out values, and
// that Act is known.
func (l Layer) Validate() error {
	if err := l.ValidateShape(); err != nil {
		return err
	}
	if len(l.W) != l.In*l.Out {
		return fmt.Errorf("%d weights for shape %dx%d", len(l.W), l.Out, l.In)
	}
	if len(l.B) != l.Out {
		return fmt.Errorf("%d biases for %d outputs", len(l.B), l.Out)
	}
	if l.Act != ActNone && l.Act != ActReLU {
		return fmt.Errorf("unknown activation %q", l.Act)
	}
	return nil
}
