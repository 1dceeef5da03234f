package head

import (
	"context"
	"testing"
)

// BenchmarkTrainLinearLBFGS trains the default linear head (L-BFGS) on a
// 10,000 x 384, 10-class mixture. Baseline: BenchmarkTrainLinearLBFGS1, the
// same with one worker goroutine.
func BenchmarkTrainLinearLBFGS(b *testing.B) {
	d := mixture(10000, 384, 10, 0.12, 3)
	for _, th := range []int{1, 2} {
		b.Run(map[int]string{1: "threads1", 2: "threads2"}[th], func(b *testing.B) {
			cfg := DefaultConfig(KindLinear)
			cfg.Threads = th
			for i := 0; i < b.N; i++ {
				_, rep, err := Train(context.Background(), d, Data{}, cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(rep.Iters), "iters")
			}
		})
	}
}

// BenchmarkTrainMLP runs 3 epochs of the default MLP (512 hidden, Adam) on
// 10,000 x 384 features; sub-benchmarks compare 1 and 2 worker goroutines.
func BenchmarkTrainMLP(b *testing.B) {
	d := mixture(10000, 384, 10, 0.12, 3)
	for _, th := range []int{1, 2} {
		b.Run(map[int]string{1: "threads1", 2: "threads2"}[th], func(b *testing.B) {
			cfg := DefaultConfig(KindMLP)
			cfg.Threads, cfg.Epochs = th, 3
			for i := 0; i < b.N; i++ {
				if _, _, err := Train(context.Background(), d, Data{}, cfg, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
