package head

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
)

// memBlocks serves a Data's rows as blocks of size rows, in row order, and
// counts the rows it hands out.
type memBlocks struct {
	d     Data
	size  int
	reads int
}

func (b *memBlocks) NumBlocks() int { return (b.d.N + b.size - 1) / b.size }

func (b *memBlocks) ReadBlock(ctx context.Context, i int, in func(int) bool, fn func(int, []float32) error) error {
	for r := i * b.size; r < min(b.d.N, (i+1)*b.size); r++ {
		if in != nil && !in(r) {
			continue
		}
		b.reads++
		if err := fn(r, b.d.X[r*b.d.D:(r+1)*b.d.D]); err != nil {
			return err
		}
	}
	return nil
}

// TestTrainStream: TrainStream reaches Train's accuracy on a mixture,
// repeats bit for bit whatever the thread count, reads only the rows in
// the set, counts its buffers, and refuses L-BFGS.
func TestTrainStream(t *testing.T) {
	all := mixture(3000, 12, 3, 1.2, 4)
	val := all.Subset(rangeRows(2400, 2700))
	test := all.Subset(rangeRows(2700, 3000))
	cfg := DefaultConfig(KindMLP)
	cfg.Hidden, cfg.Epochs, cfg.BatchSize, cfg.Seed, cfg.Classes = []int{16}, 6, 32, 3, []string{"a", "b", "c"}
	in := func(r int) bool { return r < 2400 }
	stream := func(threads int) (*Model, *memBlocks, *MemMeter) {
		t.Helper()
		c := cfg
		c.Threads = threads
		src := &memBlocks{d: all, size: 100}
		meter := &MemMeter{}
		m, _, err := TrainStream(context.Background(), StreamData{Src: src, N: all.N, D: all.D, Y: all.Y, In: in, Rows: 2400, BufferRows: 300, Meter: meter}, val, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m, src, meter
	}
	m1, src, meter := stream(1)
	m2, _, _ := stream(3)
	for l := range m1.Layers {
		if !slices.Equal(m1.Layers[l].W, m2.Layers[l].W) {
			t.Fatalf("layer %d differs between 1 and 3 threads", l)
		}
	}
	// 2 statistics passes + 6 epochs over the 2400 training rows.
	if want := 8 * 2400; src.reads != want {
		t.Errorf("%d rows read, want %d (no held-out row read)", src.reads, want)
	}
	if want := int64(4 * 12 * (300 + 32)); meter.Peak() != want {
		t.Errorf("peak %d bytes, want %d (buffer and batch)", meter.Peak(), want)
	}
	c := cfg
	c.Threads = 2
	ref, _, err := Train(context.Background(), all.Subset(rangeRows(0, 2400)), val, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := accuracy(m1, test), accuracy(ref, test); math.Abs(a-b) > 0.03 || b < 0.8 {
		t.Errorf("test accuracy streamed %.4f, in memory %.4f", a, b)
	}
	c.Optimizer, c.Kind, c.Hidden = OptLBFGS, KindLinear, nil
	_, _, err = TrainStream(context.Background(), StreamData{Src: src, N: all.N, D: all.D, Y: all.Y, Rows: all.N, BufferRows: 10}, val, c, nil)
	if err == nil || !strings.Contains(err.Error(), "subsample") {
		t.Errorf("L-BFGS streamed: %v, want a refusal pointing at the subsample", err)
	}
}

func rangeRows(a, b int) []int {
	r := make([]int, 0, b-a)
	for i := a; i < b; i++ {
		r = append(r, i)
	}
	return r
}
