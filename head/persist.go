package head

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/headtune/headtune/internal/atomicfile"
)

// File layout (all integers little-endian):
//
//	magic      8 bytes  "HTHEAD\r\n"
//	version    uint32   FormatVersion
//	headerLen  uint32   length of the JSON header
//	payloadLen uint64   length of the float32 payload in bytes
//	header     JSON     the Model (without weights) and a tensor table
//	payload    float32  little-endian tensors, in table order
//	checksum   32 bytes SHA-256 of everything before it
//
// The JSON header makes the file self-describing (jq-readable after the
// 24-byte prefix); the binary payload keeps large heads small and fast.
var fileMagic = [8]byte{'H', 'T', 'H', 'E', 'A', 'D', '\r', '\n'}

const (
	prefixLen    = 24
	maxHeaderLen = 64 << 20
	maxFileSize  = 8 << 30
)

// tensorEntry describes one tensor of the payload.
type tensorEntry struct {
	Name  string `json:"name"`  // "mean", "std", "layers.<i>.weight", "layers.<i>.bias"
	Shape []int  `json:"shape"` // [Out, In] for weights, [n] otherwise
	Off   int64  `json:"offset"`
	Len   int64  `json:"length"` // float32 values
}

type fileHeader struct {
	Model   *Model        `json:"model"`
	Tensors []tensorEntry `json:"tensors"`
}

// Marshal encodes the model in the head file format.
func Marshal(m *Model) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode head: %w", err)
	}
	mc := *m
	mc.Version = PlainFormatVersion
	if len(m.ConvTail) > 0 {
		mc.Version = FormatVersion
	}
	mc.Metrics = make(map[string]float64, len(m.Metrics))
	for k, v := range m.Metrics { // JSON has no NaN or Inf
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			mc.Metrics[k] = v
		}
	}
	var tensors []tensorEntry
	var data [][]float32
	off := int64(0)
	add := func(name string, shape []int, v []float32) {
		tensors = append(tensors, tensorEntry{Name: name, Shape: shape, Off: off, Len: int64(len(v))})
		data = append(data, v)
		off += int64(len(v)) * 4
	}
	if m.Mean != nil {
		add("mean", []int{len(m.Mean)}, m.Mean)
		add("std", []int{len(m.Std)}, m.Std)
	}
	for i, l := range m.Layers {
		add(fmt.Sprintf("layers.%d.weight", i), []int{l.Out, l.In}, l.W)
		add(fmt.Sprintf("layers.%d.bias", i), []int{l.Out}, l.B)
	}
	for i, l := range m.ConvTail {
		add(fmt.Sprintf("conv_tail.%d.weight", i), []int{l.OutC, l.InC / l.Groups, l.K, l.K}, l.W)
		add(fmt.Sprintf("conv_tail.%d.bias", i), []int{l.OutC}, l.B)
	}
	hdr, err := json.Marshal(fileHeader{Model: &mc, Tensors: tensors})
	if err != nil {
		return nil, fmt.Errorf("encode head: %w", err)
	}
	if len(hdr) > maxHeaderLen {
		return nil, fmt.Errorf("encode head: header of %d bytes exceeds %d", len(hdr), maxHeaderLen)
	}
	buf := make([]byte, 0, prefixLen+len(hdr)+int(off)+sha256.Size)
	buf = append(buf, fileMagic[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(mc.Version))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(hdr)))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(off))
	buf = append(buf, hdr...)
	for _, v := range data {
		for _, x := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
	}
	sum := sha256.Sum256(buf)
	return append(buf, sum[:]...), nil
}

// Unmarshal decodes a head file produced by Marshal. Any damage (truncation,
// flipped bits, a foreign file) gives an error, never a panic.
func Unmarshal(b []byte) (*Model, error) {
	if len(b) < prefixLen+sha256.Size {
		return nil, fmt.Errorf("not a head file: %d bytes is too short", len(b))
	}
	if !bytes.Equal(b[:8], fileMagic[:]) {
		return nil, errors.New("not a head file: bad magic")
	}
	ver := binary.LittleEndian.Uint32(b[8:])
	if ver == 0 || ver > FormatVersion {
		return nil, fmt.Errorf("head file format version %d is not supported (this build reads up to %d)", ver, FormatVersion)
	}
	hl := uint64(binary.LittleEndian.Uint32(b[12:]))
	pl := binary.LittleEndian.Uint64(b[16:])
	if hl > maxHeaderLen || pl > maxFileSize || uint64(len(b)) != prefixLen+hl+pl+sha256.Size {
		return nil, fmt.Errorf("damaged head file: sizes in the header (%d+%d) do not match the file length %d (truncated?)", hl, pl, len(b))
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, errors.New("damaged head file: checksum mismatch")
	}
	var h fileHeader
	dec := json.NewDecoder(bytes.NewReader(b[prefixLen : prefixLen+hl]))
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("damaged head file: header: %w", err)
	}
	if h.Model == nil {
		return nil, errors.New("damaged head file: header has no model")
	}
	m := h.Model
	payload := b[prefixLen+hl : prefixLen+hl+pl]
	get := func(name string, shape ...int) ([]float32, error) {
		for _, t := range h.Tensors {
			if t.Name != name {
				continue
			}
			want := int64(1)
			for _, s := range shape {
				want *= int64(s)
			}
			if len(t.Shape) != len(shape) || t.Len != want {
				return nil, fmt.Errorf("tensor %s has shape %v, want %v", name, t.Shape, shape)
			}
			for i, s := range shape {
				if t.Shape[i] != s {
					return nil, fmt.Errorf("tensor %s has shape %v, want %v", name, t.Shape, shape)
				}
			}
			if t.Off < 0 || t.Off%4 != 0 || t.Len < 0 || t.Off > int64(len(payload)) || t.Len > (int64(len(payload))-t.Off)/4 {
				return nil, fmt.Errorf("tensor %s lies outside the payload", name)
			}
			v := make([]float32, t.Len)
			p := payload[t.Off:]
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
			}
			return v, nil
		}
		return nil, fmt.Errorf("tensor %s missing", name)
	}
	if len(m.Layers) == 0 || len(m.Layers) > 1024 {
		return nil, fmt.Errorf("damaged head file: %d layers", len(m.Layers))
	}
	var err error
	for i := range m.Layers {
		l := &m.Layers[i]
		if err := l.ValidateShape(); err != nil { // before get allocates
			return nil, fmt.Errorf("damaged head file: layer %d: %w", i, err)
		}
		if l.W, err = get(fmt.Sprintf("layers.%d.weight", i), l.Out, l.In); err != nil {
			return nil, fmt.Errorf("damaged head file: %w", err)
		}
		if l.B, err = get(fmt.Sprintf("layers.%d.bias", i), l.Out); err != nil {
			return nil, fmt.Errorf("damaged head file: %w", err)
		}
	}
	if len(m.ConvTail) > 64 {
		return nil, fmt.Errorf("damaged head file: %d conv tail layers", len(m.ConvTail))
	}
	for i := range m.ConvTail {
		l := &m.ConvTail[i]
		// Geometry first, with room for the weights, so that get does not
		// allocate from a damaged header.
		if l.InC <= 0 || l.OutC <= 0 || l.K <= 0 || l.Groups <= 0 || l.InC%l.Groups != 0 ||
			int64(l.OutC)*int64(l.InC/l.Groups)*int64(l.K)*int64(l.K) > int64(len(payload))/4 {
			return nil, fmt.Errorf("damaged head file: conv tail layer %d: bad geometry", i)
		}
		if l.W, err = get(fmt.Sprintf("conv_tail.%d.weight", i), l.OutC, l.InC/l.Groups, l.K, l.K); err != nil {
			return nil, fmt.Errorf("damaged head file: %w", err)
		}
		if l.B, err = get(fmt.Sprintf("conv_tail.%d.bias", i), l.OutC); err != nil {
			return nil, fmt.Errorf("damaged head file: %w", err)
		}
	}
	for _, t := range h.Tensors {
		if t.Name == "mean" {
			if m.Mean, err = get("mean", m.Dim()); err != nil {
				return nil, fmt.Errorf("damaged head file: %w", err)
			}
			if m.Std, err = get("std", m.Dim()); err != nil {
				return nil, fmt.Errorf("damaged head file: %w", err)
			}
		}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid head file: %w", err)
	}
	return m, nil
}

// Save writes the model to path atomically: a temporary file in the same
// directory is written, synced and renamed over path, so an existing file is
// either left intact or fully replaced.
func Save(path string, m *Model) error {
	b, err := Marshal(m)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("save head: %w", err)
	}
	return nil
}

// Load reads a head file written by Save.
func Load(path string) (*Model, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load head: %w", err)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("load head %s: %d bytes is too large for a head file", path, fi.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load head: %w", err)
	}
	m, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("load head %s: %w", path, err)
	}
	return m, nil
}
