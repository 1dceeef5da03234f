package head_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/headtune/headtune/head"
)

// Example trains a linear probe on a split of cached features, evaluates it
// on the test split and stores it.
func Example() {
	// features: n rows of d float32 values, labels in [0, 3)
	const n, d = 300, 4
	X := make([]float32, n*d)
	Y := make([]int32, n)
	for i := range Y {
		Y[i] = int32(i % 3)
		X[i*d+int(Y[i])] = 1 + float32(i%7)/10
	}
	all := head.Data{X: X, N: n, D: d, Y: Y}
	train, val, test, err := head.StratifiedSplit(Y, 0.1, 0.2, 42)
	if err != nil {
		panic(err)
	}
	cfg := head.DefaultConfig(head.KindLinear)
	cfg.Classes = []string{"cat", "dog", "fox"}
	cfg.Seed = 42
	m, _, err := head.Train(context.Background(), all.Subset(train), all.Subset(val), cfg, nil)
	if err != nil {
		panic(err)
	}
	e, err := head.Evaluate(m, all.Subset(test))
	if err != nil {
		panic(err)
	}
	path := filepath.Join(os.TempDir(), "example.head")
	if err := head.Save(path, m); err != nil {
		panic(err)
	}
	defer os.Remove(path)
	fmt.Printf("accuracy %.2f\n", e.Accuracy)
	// Output: accuracy 1.00
}
