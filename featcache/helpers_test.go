package featcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// testIdentity returns a valid identity of dimension dim.
func testIdentity(dim int) Identity {
	return Identity{
		ModelHash:     "sha256:0123456789abcdef",
		FeatureTensor: "gap_block_10",
		Preprocess:    []byte(`{"width":224,"height":224,"scale":0.003921569,"layout":"NHWC"}`),
		Dim:           dim,
	}
}

// itemKey is the content hash of synthetic image number i.
func itemKey(i int) Key {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return HashBytes(b[:])
}

// itemRow fills dst with the deterministic feature vector of item i,
// including awkward values (negative zero, subnormals, NaN payloads) whose
// bits must survive the round trip.
func itemRow(i int, dst []float32) {
	r := rand.New(rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15))
	for j := range dst {
		dst[j] = float32(r.NormFloat64())
	}
	if len(dst) >= 3 {
		dst[0] = math.Float32frombits(0x80000000)                    // -0
		dst[1] = math.Float32frombits(0x00000001)                    // smallest subnormal
		dst[2] = math.Float32frombits(0x7fc00000 | uint32(i)&0xffff) // NaN with payload
	}
}

// batch returns keys and rows of items [from, to).
func batch(from, to, dim int) ([]Key, []float32) {
	keys := make([]Key, 0, to-from)
	rows := make([]float32, (to-from)*dim)
	for i := from; i < to; i++ {
		keys = append(keys, itemKey(i))
		itemRow(i, rows[(i-from)*dim:(i-from+1)*dim])
	}
	return keys, rows
}

func mustWriter(t testing.TB, root string, id Identity) *Writer {
	t.Helper()
	w, err := OpenWriter(context.Background(), root, id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	return bytes.Equal(f32Bytes(a), f32Bytes(b))
}

// checkItems asserts that reader r holds exactly items [0, n) at rows
// [0, n) with bit-exact values.
func checkItems(t testing.TB, r *Reader, n int) {
	t.Helper()
	if r.Len() != n {
		t.Fatalf("Len = %d, want %d", r.Len(), n)
	}
	dim := r.Dim()
	got, want := make([]float32, dim), make([]float32, dim)
	for i := 0; i < n; i++ {
		row, ok := r.Lookup(itemKey(i))
		if !ok || row != i {
			t.Fatalf("item %d: Lookup = %d, %v; want %d, true", i, row, ok, i)
		}
		if err := r.Row(row, got); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		itemRow(i, want)
		if !sameBits(got, want) {
			t.Fatalf("item %d: features differ from what was written", i)
		}
	}
	if _, ok := r.Lookup(itemKey(n)); ok {
		t.Fatalf("item %d is cached but was never committed", n)
	}
}

func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
