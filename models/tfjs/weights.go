package tfjs

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/headtune/headtune/backbone"
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

// Weights is an index over the raw bytes of a TF.js weights manifest:
// sizes are checked up front, but each tensor is dequantised only when
// Tensor asks for it, so converting part of a model never materialises the
// float32 copies of the weights it drops. A Weights is safe for concurrent
// reads; it keeps the shard bytes it was given.
type Weights struct {
	refs  map[string]weightRef
	names []string // manifest order
}

type weightRef struct {
	entry  WeightEntry
	raw    []byte  // exactly the entry's bytes
	tensor *Tensor // set instead of raw by WeightsFromTensors
}

// IndexWeights lays out every weight listed in groups without decoding
// it. read returns the bytes of one path of a group (a shard); a group's
// shards are concatenated and consumed in manifest order. Every byte of
// every group must be used; names must be unique. The returned Weights
// keeps references to the bytes read returns.
func IndexWeights(groups []WeightGroup, read func(path string) ([]byte, error)) (*Weights, error) {
	w := &Weights{refs: map[string]weightRef{}}
	for gi, g := range groups {
		var parts [][]byte
		total := 0
		for _, p := range g.Paths {
			b, err := read(p)
			if err != nil {
				return nil, fmt.Errorf("weight group %d: %w", gi, err)
			}
			parts = append(parts, b)
			total += len(b)
		}
		var buf []byte
		if len(parts) == 1 {
			buf = parts[0]
		} else {
			buf = make([]byte, 0, total)
			for _, p := range parts {
				buf = append(buf, p...)
			}
		}
		off := 0
		for _, e := range g.Weights {
			n, err := weightBytes(e)
			if err != nil {
				return nil, fmt.Errorf("weight %q (group %d): %w", e.Name, gi, err)
			}
			if n > len(buf)-off {
				return nil, fmt.Errorf("weight %q (group %d, byte %d): needs %d bytes, only %d left in the shards", e.Name, gi, off, n, len(buf)-off)
			}
			if _, dup := w.refs[e.Name]; dup {
				return nil, fmt.Errorf("weight %q listed twice in the manifest", e.Name)
			}
			w.refs[e.Name] = weightRef{entry: e, raw: buf[off : off+n : off+n]}
			w.names = append(w.names, e.Name)
			off += n
		}
		if off != len(buf) {
			return nil, fmt.Errorf("weight group %d (%v): manifest uses %d bytes, shards hold %d", gi, g.Paths, off, len(buf))
		}
	}
	return w, nil
}

// WeightsFromTensors wraps already decoded tensors (tests, other loaders).
// The tensors are shared, not copied.
func WeightsFromTensors(m map[string]*Tensor) *Weights {
	w := &Weights{refs: map[string]weightRef{}}
	for name, t := range m {
		w.refs[name] = weightRef{tensor: t}
		w.names = append(w.names, name)
	}
	slices.Sort(w.names)
	return w
}

// Names lists the weights in manifest order (sorted for
// WeightsFromTensors). The slice is a copy.
func (w *Weights) Names() []string { return slices.Clone(w.names) }

// Has reports whether a weight called name exists.
func (w *Weights) Has(name string) bool { _, ok := w.refs[name]; return ok }

// Tensor dequantises the weight called name into a new float32 tensor
// that the caller owns (for WeightsFromTensors, the shared original).
func (w *Weights) Tensor(name string) (*Tensor, error) {
	r, ok := w.refs[name]
	if !ok {
		return nil, fmt.Errorf("weight %q not found in the manifest", name)
	}
	if r.tensor != nil {
		return r.tensor, nil
	}
	t, err := decodeWeight(r.entry, r.raw)
	if err != nil {
		return nil, fmt.Errorf("weight %q: %w", name, err)
	}
	return t, nil
}

// DecodeWeights decodes every weight listed in groups (see IndexWeights
// for the layout rules) and returns a map from weight names to tensors that
// own their memory.
func DecodeWeights(groups []WeightGroup, read func(path string) ([]byte, error)) (map[string]*Tensor, error) {
	w, err := IndexWeights(groups, read)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Tensor, len(w.names))
	for _, name := range w.names {
		if out[name], err = w.Tensor(name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// weightBytes is how many bytes a manifest entry occupies in its shards.
func weightBytes(e WeightEntry) (int, error) {
	n := 1
	for _, d := range e.Shape {
		if d < 0 || (d > 0 && n > maxWeightElems/d) {
			return 0, fmt.Errorf("bad shape %v", e.Shape)
		}
		n *= d
	}
	if q := e.Quantization; q != nil {
		switch q.DType {
		case "uint8":
			return n, nil
		case "uint16", "float16":
			return 2 * n, nil
		}
		return 0, fmt.Errorf("unsupported quantization dtype %q (want uint8, uint16 or float16)", q.DType)
	}
	switch e.DType {
	case "float32", "", "int32":
		return 4 * n, nil
	}
	return 0, fmt.Errorf("unsupported dtype %q (want float32 or int32)", e.DType)
}

// decodeWeight decodes one weight from b, which holds exactly its bytes
// (see weightBytes).
func decodeWeight(w WeightEntry, b []byte) (*Tensor, error) {
	size, err := weightBytes(w)
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("has %d bytes, needs %d", len(b), size)
	}
	n := shapeSize(w.Shape)
	t := &Tensor{Shape: append([]int(nil), w.Shape...), Data: make([]float32, n)}
	if q := w.Quantization; q != nil {
		switch q.DType {
		case "uint8":
			for i, v := range b {
				t.Data[i] = float32(float64(v)*q.Scale + q.Min)
			}
		case "uint16":
			for i := range n {
				t.Data[i] = float32(float64(binary.LittleEndian.Uint16(b[2*i:]))*q.Scale + q.Min)
			}
		case "float16":
			for i := range n {
				t.Data[i] = backbone.Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		}
		return t, nil
	}
	if w.DType == "int32" {
		for i := range n {
			t.Data[i] = float32(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return t, nil
	}
	for i := range n {
		t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return t, nil
}

// modelJSON is the part of a TF.js model.json that headtune reads.
type modelJSON struct {
	Format          string          `json:"format"`
	ModelTopology   json.RawMessage `json:"modelTopology"`
	WeightsManifest []WeightGroup   `json:"weightsManifest"`
}
