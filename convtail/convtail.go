// Package convtail trains the last convolutional layers of a backbone
// (a "conv tail") in Go, on cached spatial feature maps: the layers run
// forward and backward here, their output is globally average pooled and
// fed to a softmax-regression head. It is the convolutional counterpart of
// the dense layers that --tune-layers fine-tunes.
//
// Like package dense it imports nothing of headtune: backbone decodes
// pretrained convolutions (batch norm folded) into Layer, and writes tuned
// ones back into ONNX graphs.
//
// Maps are float32 NCHW, one image at a time: C*H*W values, channel major.
package convtail

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Activations a Layer may apply.
const (
	ActNone  = ""      // identity
	ActReLU  = "relu"  // max(0, x)
	ActLeaky = "leaky" // x > 0 ? x : 0.1x (Darknet's leaky)
	ActReLU6 = "relu6" // min(max(0, x), 6)
)

// Layer is one 2-D convolution with bias and activation:
// y = act(conv(x, W) + B), square kernel, equal padding on every side.
type Layer struct {
	InC    int       `json:"in_c"` // input map: channels, height, width
	InH    int       `json:"in_h"`
	InW    int       `json:"in_w"`
	OutC   int       `json:"out_c"`
	K      int       `json:"kernel"` // kernel side
	Stride int       `json:"stride"`
	Pad    int       `json:"pad"`
	Groups int       `json:"groups"`
	Act    string    `json:"act,omitempty"`
	W      []float32 `json:"-"` // [OutC, InC/Groups, K, K]; files store weights apart from the geometry
	B      []float32 `json:"-"` // [OutC]
}

// OutH and OutW are the output map's sides.
func (l *Layer) OutH() int { return (l.InH+2*l.Pad-l.K)/l.Stride + 1 }

// OutW is the output map's width.
func (l *Layer) OutW() int { return (l.InW+2*l.Pad-l.K)/l.Stride + 1 }

// InLen and OutLen are the values per image of the input and output maps.
func (l *Layer) InLen() int { return l.InC * l.InH * l.InW }

// OutLen is OutC*OutH*OutW.
func (l *Layer) OutLen() int { return l.OutC * l.OutH() * l.OutW() }

// Validate checks the geometry and the weight counts.
func (l *Layer) Validate() error {
	switch {
	case l.InC <= 0 || l.InH <= 0 || l.InW <= 0 || l.OutC <= 0 || l.K <= 0 || l.Stride <= 0 || l.Pad < 0:
		return fmt.Errorf("conv layer %+v: sizes must be positive", *l)
	case l.Groups <= 0 || l.InC%l.Groups != 0 || l.OutC%l.Groups != 0:
		return fmt.Errorf("conv layer: %d groups for %d->%d channels", l.Groups, l.InC, l.OutC)
	case l.OutH() <= 0 || l.OutW() <= 0:
		return fmt.Errorf("conv layer: %dx%d kernel does not fit %dx%d", l.K, l.K, l.InW, l.InH)
	case len(l.W) != l.OutC*l.InC/l.Groups*l.K*l.K || len(l.B) != l.OutC:
		return fmt.Errorf("conv layer: %d weights and %d biases for %d->%d channels, kernel %d", len(l.W), len(l.B), l.InC, l.OutC, l.K)
	}
	switch l.Act {
	case ActNone, ActReLU, ActLeaky, ActReLU6:
	default:
		return fmt.Errorf("conv layer: unknown activation %q", l.Act)
	}
	return nil
}

// Clone returns a deep copy.
func (l Layer) Clone() Layer {
	l.W = append([]float32(nil), l.W...)
	l.B = append([]float32(nil), l.B...)
	return l
}

// colLen is the im2col matrix size of one group: (InC/G*K*K) x (OutH*OutW).
func (l *Layer) colRows() int { return l.InC / l.Groups * l.K * l.K }

// im2col writes the patches of group g of x into cols [colRows, OutH*OutW].
func (l *Layer) im2col(x []float32, g int, cols []float32) {
	oh, ow := l.OutH(), l.OutW()
	cg := l.InC / l.Groups
	r := 0
	for c := g * cg; c < (g+1)*cg; c++ {
		plane := x[c*l.InH*l.InW : (c+1)*l.InH*l.InW]
		for ky := 0; ky < l.K; ky++ {
			for kx := 0; kx < l.K; kx++ {
				row := cols[r*oh*ow : (r+1)*oh*ow]
				r++
				for oy := 0; oy < oh; oy++ {
					iy := oy*l.Stride - l.Pad + ky
					dst := row[oy*ow : (oy+1)*ow]
					if iy < 0 || iy >= l.InH {
						clear(dst)
						continue
					}
					src := plane[iy*l.InW : (iy+1)*l.InW]
					for ox := range dst {
						ix := ox*l.Stride - l.Pad + kx
						if ix < 0 || ix >= l.InW {
							dst[ox] = 0
						} else {
							dst[ox] = src[ix]
						}
					}
				}
			}
		}
	}
}

// col2im adds the patch gradients dcols of group g into dx.
func (l *Layer) col2im(dcols []float32, g int, dx []float32) {
	oh, ow := l.OutH(), l.OutW()
	cg := l.InC / l.Groups
	r := 0
	for c := g * cg; c < (g+1)*cg; c++ {
		plane := dx[c*l.InH*l.InW : (c+1)*l.InH*l.InW]
		for ky := 0; ky < l.K; ky++ {
			for kx := 0; kx < l.K; kx++ {
				row := dcols[r*oh*ow : (r+1)*oh*ow]
				r++
				for oy := 0; oy < oh; oy++ {
					iy := oy*l.Stride - l.Pad + ky
					if iy < 0 || iy >= l.InH {
						continue
					}
					dst := plane[iy*l.InW : (iy+1)*l.InW]
					for ox, v := range row[oy*ow : (oy+1)*ow] {
						ix := ox*l.Stride - l.Pad + kx
						if ix >= 0 && ix < l.InW {
							dst[ix] += v
						}
					}
				}
			}
		}
	}
}

// Scratch holds one goroutine's buffers for a Layer.
type Scratch struct {
	cols, dcols []float32
}

func (s *Scratch) grow(n int) {
	if cap(s.cols) < n {
		s.cols = make([]float32, n)
		s.dcols = make([]float32, n)
	}
	s.cols, s.dcols = s.cols[:n], s.dcols[:n]
}

func gemm(tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	blas32.Implementation().Sgemm(tA, tB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

// Forward computes y (OutLen values) from x (InLen values) and returns it;
// y is written in place.
func (l *Layer) Forward(x, y []float32, s *Scratch) {
	ohw := l.OutH() * l.OutW()
	rows := l.colRows()
	og := l.OutC / l.Groups
	s.grow(rows * ohw)
	for g := 0; g < l.Groups; g++ {
		if l.K == 1 && l.Stride == 1 && l.Pad == 0 {
			// A 1x1 convolution reads the map itself.
			xg := x[g*rows*ohw : (g+1)*rows*ohw]
			gemm(blas.NoTrans, blas.NoTrans, og, ohw, rows, l.W[g*og*rows:], rows, xg, ohw, 0, y[g*og*ohw:], ohw)
		} else {
			l.im2col(x, g, s.cols)
			gemm(blas.NoTrans, blas.NoTrans, og, ohw, rows, l.W[g*og*rows:], rows, s.cols, ohw, 0, y[g*og*ohw:], ohw)
		}
	}
	for o := 0; o < l.OutC; o++ {
		b := l.B[o]
		row := y[o*ohw : (o+1)*ohw]
		for i := range row {
			row[i] = act(l.Act, row[i]+b)
		}
	}
}

func act(a string, v float32) float32 {
	switch a {
	case ActReLU:
		return max(v, 0)
	case ActLeaky:
		if v < 0 {
			return 0.1 * v
		}
	case ActReLU6:
		return min(max(v, 0), 6)
	}
	return v
}

// actGrad is d act / d pre-activation, from the activation's output y.
func actGrad(a string, y float32) float32 {
	switch a {
	case ActReLU:
		if y <= 0 {
			return 0
		}
	case ActLeaky:
		if y < 0 {
			return 0.1
		}
	case ActReLU6:
		if y <= 0 || y >= 6 {
			return 0
		}
	}
	return 1
}

// Backward takes the layer's input x, its output y (from Forward) and
// dy = dLoss/dy, which it overwrites with dLoss/d(pre-activation). It adds
// the weight and bias gradients into dW and dB and, when dx is not nil,
// writes dLoss/dx into dx.
func (l *Layer) Backward(x, y, dy, dW, dB, dx []float32, s *Scratch) {
	ohw := l.OutH() * l.OutW()
	rows := l.colRows()
	og := l.OutC / l.Groups
	s.grow(rows * ohw)
	for o := 0; o < l.OutC; o++ {
		var sum float32
		for i := o * ohw; i < (o+1)*ohw; i++ {
			dy[i] *= actGrad(l.Act, y[i])
			sum += dy[i]
		}
		dB[o] += sum
	}
	if dx != nil {
		clear(dx)
	}
	for g := 0; g < l.Groups; g++ {
		cols := s.cols
		direct := l.K == 1 && l.Stride == 1 && l.Pad == 0
		if direct {
			cols = x[g*rows*ohw : (g+1)*rows*ohw]
		} else {
			l.im2col(x, g, cols)
		}
		dyg := dy[g*og*ohw : (g+1)*og*ohw]
		// dW_g += dy_g · cols_gᵀ
		gemm(blas.NoTrans, blas.Trans, og, rows, ohw, dyg, ohw, cols, ohw, 1, dW[g*og*rows:], rows)
		if dx == nil {
			continue
		}
		// dcols_g = W_gᵀ · dy_g
		if direct {
			gemm(blas.Trans, blas.NoTrans, rows, ohw, og, l.W[g*og*rows:], rows, dyg, ohw, 1, dx[g*rows*ohw:], ohw)
			continue
		}
		gemm(blas.Trans, blas.NoTrans, rows, ohw, og, l.W[g*og*rows:], rows, dyg, ohw, 0, s.dcols, ohw)
		l.col2im(s.dcols, g, dx)
	}
}

// Pool averages each channel of a C x HW map into out [C].
func Pool(y []float32, c, hw int, out []float32) {
	for o := 0; o < c; o++ {
		var s float64
		for _, v := range y[o*hw : (o+1)*hw] {
			s += float64(v)
		}
		out[o] = float32(s / float64(hw))
	}
}

func finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}
