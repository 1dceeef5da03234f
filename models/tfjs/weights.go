package tfjs

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// Tensor is a dense float32 array in row-major order. TF.js weights keep
// TensorFlow's layouts: convolution kernels are [kh, kw, in, out], depthwise
// kernels [kh, kw, in, multiplier], dense kernels [in, out].
type Tensor struct {
	Shape []int
	Data  []float32
}

// Size is the number of elements the shape holds.
func (t *Tensor) Size() int { return shapeSize(t.Shape) }

func shapeSize(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// WeightGroup is one entry of a TF.js weights manifest: the byte stream
// formed by concatenating the files in Paths holds Weights in order.
type WeightGroup struct {
	Paths   []string      `json:"paths"`
	Weights []WeightEntry `json:"weights"`
}

// WeightEntry describes one tensor in a weight group.
type WeightEntry struct {
	Name         string        `json:"name"`
	Shape        []int         `json:"shape"`
	DType        string        `json:"dtype"` // "float32" or "int32" after dequantisation
	Quantization *Quantization `json:"quantization,omitempty"`
}

// Quantization says how a weight is stored when it is not plain float32.
// For uint8/uint16, a stored q decodes as q*Scale + Min. For float16, each
// value is an IEEE 754 half.
type Quantization struct {
	DType string  `json:"dtype"` // "uint8", "uint16" or "float16"
	Scale float64 `json:"scale"`
	Min   float64 `json:"min"`
}

// maxWeightElems bounds one tensor's element count (1 G floats) so a corrupt
// manifest cannot request absurd allocations.
const maxWeightElems = 1 << 30

// DecodeWeights decodes every weight listed in groups. read returns the
// bytes of one path of a group (a shard); groups' shards are concatenated
// and consumed in manifest order. The result maps weight names to tensors
// that own their memory. Every byte of every group must be used.
func DecodeWeights(groups []WeightGroup, read func(path string) ([]byte, error)) (map[string]*Tensor, error) {
	out := map[string]*Tensor{}
	for gi, g := range groups {
		var buf []byte
		for _, p := range g.Paths {
			b, err := read(p)
			if err != nil {
				return nil, fmt.Errorf("weight group %d: %w", gi, err)
			}
			if buf == nil && len(g.Paths) == 1 {
				buf = b
			} else {
				buf = append(buf, b...)
			}
		}
		off := 0
		for _, w := range g.Weights {
			t, n, err := decodeWeight(w, buf[off:])
			if err != nil {
				return nil, fmt.Errorf("weight %q (group %d, byte %d): %w", w.Name, gi, off, err)
			}
			if _, dup := out[w.Name]; dup {
				return nil, fmt.Errorf("weight %q listed twice in the manifest", w.Name)
			}
			out[w.Name] = t
			off += n
		}
		if off != len(buf) {
			return nil, fmt.Errorf("weight group %d (%v): manifest uses %d bytes, shards hold %d", gi, g.Paths, off, len(buf))
		}
	}
	return out, nil
}

// decodeWeight decodes one weight from the start of b and returns how many
// bytes it used.
func decodeWeight(w WeightEntry, b []byte) (*Tensor, int, error) {
	n := 1
	for _, d := range w.Shape {
		if d < 0 || (d > 0 && n > maxWeightElems/d) {
			return nil, 0, fmt.Errorf("bad shape %v", w.Shape)
		}
		n *= d
	}
	t := &Tensor{Shape: append([]int(nil), w.Shape...), Data: nil}
	need := func(size int) error {
		if len(b) < n*size {
			return fmt.Errorf("needs %d bytes, only %d left in the shards", n*size, len(b))
		}
		t.Data = make([]float32, n)
		return nil
	}
	if q := w.Quantization; q != nil {
		switch q.DType {
		case "uint8":
			if err := need(1); err != nil {
				return nil, 0, err
			}
			for i := range n {
				t.Data[i] = float32(float64(b[i])*q.Scale + q.Min)
			}
			return t, n, nil
		case "uint16":
			if err := need(2); err != nil {
				return nil, 0, err
			}
			for i := range n {
				t.Data[i] = float32(float64(binary.LittleEndian.Uint16(b[2*i:]))*q.Scale + q.Min)
			}
			return t, 2 * n, nil
		case "float16":
			if err := need(2); err != nil {
				return nil, 0, err
			}
			for i := range n {
				t.Data[i] = HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
			}
			return t, 2 * n, nil
		}
		return nil, 0, fmt.Errorf("unsupported quantization dtype %q (want uint8, uint16 or float16)", q.DType)
	}
	switch w.DType {
	case "float32", "":
		if err := need(4); err != nil {
			return nil, 0, err
		}
		for i := range n {
			t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case "int32":
		if err := need(4); err != nil {
			return nil, 0, err
		}
		for i := range n {
			t.Data[i] = float32(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
	default:
		return nil, 0, fmt.Errorf("unsupported dtype %q (want float32 or int32)", w.DType)
	}
	return t, 4 * n, nil
}

// HalfToFloat32 converts an IEEE 754 binary16 value to float32 exactly,
// including subnormals, infinities and NaN.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// modelJSON is the part of a TF.js model.json that headtune reads.
type modelJSON struct {
	Format          string          `json:"format"`
	ModelTopology   json.RawMessage `json:"modelTopology"`
	WeightsManifest []WeightGroup   `json:"weightsManifest"`
}
