package head

import (
	"context"
	"runtime"
	"testing"
)

// TestTrainMemoryDoesNotScaleWithFeatures checks that training never copies
// the feature matrix: doubling the rows adds only per-row bookkeeping (a
// shuffle index, validation logits), far less than the extra features.
func TestTrainMemoryDoesNotScaleWithFeatures(t *testing.T) {
	const d = 64
	all := mixture(40000, d, 5, 0.3, 2)
	for _, kind := range []string{KindLinear, KindMLP} {
		t.Run(kind, func(t *testing.T) {
			alloc := func(n int) uint64 {
				sub := all
				sub.X, sub.Y, sub.N = all.X[:n*d], all.Y[:n], n
				tr, va, _, _ := StratifiedSplit(sub.Y, 0.1, 0, 1)
				train, val := sub.Subset(tr), sub.Subset(va)
				cfg := DefaultConfig(kind)
				cfg.Epochs, cfg.MaxIter = 2, 20
				if kind == KindMLP {
					cfg.Hidden = []int{64}
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				if _, _, err := Train(context.Background(), train, val, cfg, nil); err != nil {
					t.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				return after.TotalAlloc - before.TotalAlloc
			}
			small, large := alloc(20000), alloc(40000)
			extra := uint64(20000 * d * 4)
			t.Logf("allocated %.2f MB for 20000 rows, %.2f MB for 40000 rows (+%.2f MB of features)",
				float64(small)/1e6, float64(large)/1e6, float64(extra)/1e6)
			if large > small+extra/10 {
				t.Errorf("allocation grows by %d bytes for %d extra bytes of features", large-small, extra)
			}
		})
	}
}
