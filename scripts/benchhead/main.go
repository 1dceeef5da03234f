// Command benchhead trains headtune's heads on features exported as .npy
// files and prints one JSON line per head with test accuracy and wall time.
// scripts/bench_head.py runs it next to scikit-learn and PyTorch on exactly
// the same split.
//
// Usage:
//
//	go run ./scripts/benchhead -dir DIR [-kinds linear,mlp] [-seed 0] [-threads 0] [-v]
//
// DIR holds Xtrain.npy (float32 or float64 [N,D]), ytrain.npy (integer [N]),
// Xtest.npy, ytest.npy and optionally classes.txt (one name per line).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/headtune/headtune/head"
)

func main() {
	dir := flag.String("dir", "", "directory with Xtrain.npy, ytrain.npy, Xtest.npy, ytest.npy")
	kinds := flag.String("kinds", "linear,mlp", "comma-separated heads: linear (lbfgs), linear-adam, mlp")
	seed := flag.Int64("seed", 0, "training seed")
	threads := flag.Int("threads", 0, "worker goroutines (0: GOMAXPROCS)")
	valFrac := flag.Float64("val", 0.1, "validation fraction of the training rows for the mini-batch heads (early stopping)")
	verbose := flag.Bool("v", false, "training log on stderr")
	flag.Parse()
	if err := run(*dir, *kinds, *seed, *threads, *valFrac, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "benchhead:", err)
		os.Exit(1)
	}
}

type result struct {
	Name     string  `json:"name"`
	Accuracy float64 `json:"accuracy"`
	Seconds  float64 `json:"seconds"`
	CPU      float64 `json:"cpu_seconds"` // user+system CPU time of the process during training
	Iters    int     `json:"iterations"`
	Stopped  string  `json:"stopped"`
	Train    int     `json:"train_rows"`
	Test     int     `json:"test_rows"`
	Dim      int     `json:"dim"`
}

func run(dir, kinds string, seed int64, threads int, valFrac float64, verbose bool) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	Xtr, shTr, err := readNpyF32(filepath.Join(dir, "Xtrain.npy"))
	if err != nil {
		return err
	}
	ytr, err := readNpyLabels(filepath.Join(dir, "ytrain.npy"))
	if err != nil {
		return err
	}
	Xte, shTe, err := readNpyF32(filepath.Join(dir, "Xtest.npy"))
	if err != nil {
		return err
	}
	yte, err := readNpyLabels(filepath.Join(dir, "ytest.npy"))
	if err != nil {
		return err
	}
	if len(shTr) != 2 || len(shTe) != 2 || shTr[1] != shTe[1] || len(ytr) != shTr[0] || len(yte) != shTe[0] {
		return fmt.Errorf("shapes do not agree: Xtrain %v ytrain %d Xtest %v ytest %d", shTr, len(ytr), shTe, len(yte))
	}
	var classes []string
	if b, err := os.ReadFile(filepath.Join(dir, "classes.txt")); err == nil {
		classes = strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
	}
	train := head.Data{X: Xtr, N: shTr[0], D: shTr[1], Y: ytr}
	test := head.Data{X: Xte, N: shTe[0], D: shTe[1], Y: yte}
	var log io.Writer
	if verbose {
		log = os.Stderr
	}
	enc := json.NewEncoder(os.Stdout)
	for _, kind := range strings.Split(kinds, ",") {
		var cfg head.Config
		tr, va := train, head.Data{}
		name := "headtune " + kind
		switch kind {
		case "linear":
			cfg = head.DefaultConfig(head.KindLinear)
			name = "headtune linear (L-BFGS)"
		case "linear-adam":
			cfg = head.DefaultConfig(head.KindLinear)
			cfg.Optimizer = head.OptAdam
			cfg.Epochs, cfg.Patience = 30, 5
			name = "headtune linear (Adam)"
		case "mlp":
			cfg = head.DefaultConfig(head.KindMLP)
			name = fmt.Sprintf("headtune MLP %v (Adam)", cfg.Hidden)
		default:
			return fmt.Errorf("unknown head %q", kind)
		}
		if cfg.Optimizer != head.OptLBFGS && valFrac > 0 {
			a, b, _, err := head.StratifiedSplit(ytr, valFrac, 0, seed)
			if err != nil {
				return err
			}
			tr, va = train.Subset(a), train.Subset(b)
		}
		cfg.Seed, cfg.Threads = seed, threads
		if len(classes) > 0 {
			cfg.Classes = classes
		}
		c0 := cpuSeconds()
		t0 := time.Now()
		m, rep, err := head.Train(context.Background(), tr, va, cfg, log)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		secs := time.Since(t0).Seconds()
		cpu := cpuSeconds() - c0
		e, err := head.Evaluate(m, test)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		enc.Encode(result{Name: name, Accuracy: e.Accuracy, Seconds: secs, CPU: cpu, Iters: rep.Iters, Stopped: rep.Stopped,
			Train: tr.Rows(), Test: test.Rows(), Dim: train.D})
	}
	return nil
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

var (
	reDescr = regexp.MustCompile(`'descr':\s*'([<>|=]?)([fiub])(\d+)'`)
	reOrder = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	reShape = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// npy is a decoded .npy array: raw little-endian data and its layout.
type npy struct {
	kind  byte // 'f', 'i', 'u', 'b'
	size  int  // bytes per element
	shape []int
	data  []byte
}

func readNpy(path string) (*npy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		return nil, fmt.Errorf("%s: not a .npy file", path)
	}
	var hl, off int
	switch b[6] {
	case 1:
		hl, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, fmt.Errorf("%s: truncated header", path)
		}
		hl, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return nil, fmt.Errorf("%s: unsupported .npy version %d", path, b[6])
	}
	if off+hl > len(b) {
		return nil, fmt.Errorf("%s: truncated header", path)
	}
	h := string(b[off : off+hl])
	d := reDescr.FindStringSubmatch(h)
	if d == nil || d[1] == ">" {
		return nil, fmt.Errorf("%s: unsupported dtype in header %q", path, h)
	}
	if o := reOrder.FindStringSubmatch(h); o == nil || o[1] == "True" {
		return nil, fmt.Errorf("%s: only C-order arrays are supported", path)
	}
	s := reShape.FindStringSubmatch(h)
	if s == nil {
		return nil, fmt.Errorf("%s: no shape in header", path)
	}
	a := &npy{kind: d[2][0]}
	a.size, _ = strconv.Atoi(d[3])
	count := 1
	for _, f := range strings.Split(s[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s: bad shape %q", path, s[1])
		}
		a.shape = append(a.shape, v)
		count *= v
	}
	a.data = b[off+hl:]
	if len(a.data) != count*a.size {
		return nil, fmt.Errorf("%s: %d data bytes for shape %v of %d-byte elements", path, len(a.data), a.shape, a.size)
	}
	return a, nil
}

func readNpyF32(path string) ([]float32, []int, error) {
	a, err := readNpy(path)
	if err != nil {
		return nil, nil, err
	}
	n := len(a.data) / a.size
	out := make([]float32, n)
	switch {
	case a.kind == 'f' && a.size == 4:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(a.data[4*i:]))
		}
	case a.kind == 'f' && a.size == 8:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(a.data[8*i:])))
		}
	default:
		return nil, nil, fmt.Errorf("%s: features must be float32 or float64", path)
	}
	return out, a.shape, nil
}

func readNpyLabels(path string) ([]int32, error) {
	a, err := readNpy(path)
	if err != nil {
		return nil, err
	}
	if a.kind != 'i' && a.kind != 'u' || len(a.shape) != 1 {
		return nil, fmt.Errorf("%s: labels must be a 1-D integer array", path)
	}
	out := make([]int32, a.shape[0])
	for i := range out {
		var v int64
		p := a.data[i*a.size:]
		switch a.size {
		case 1:
			v = int64(p[0])
		case 2:
			v = int64(binary.LittleEndian.Uint16(p))
		case 4:
			v = int64(int32(binary.LittleEndian.Uint32(p)))
		case 8:
			v = int64(binary.LittleEndian.Uint64(p))
		default:
			return nil, fmt.Errorf("%s: unsupported label size %d", path, a.size)
		}
		if a.kind == 'i' && a.size == 2 {
			v = int64(int16(v))
		}
		if v < 0 || v > math.MaxInt32 {
			return nil, fmt.Errorf("%s: label %d at row %d out of range", path, v, i)
		}
		out[i] = int32(v)
	}
	return out, nil
}
