// Command convtail measures fine-tuning a backbone's last convolutional
// layers (a conv tail) against keeping them frozen, on Fashion-MNIST
// (Debian dataset-fashion-mnist), with a Darknet backbone imported from a
// cfg and random weights written in Darknet's format (no pretrained
// Darknet weights exist offline; random-weight backbones show the
// mechanism, not pretrained accuracy).
//
// Steps: import the cfg (package darknet), find the feature tensor
// (backbone.FindFeatureTensor) and the last -k convolutions before it
// (backbone.ConvChainN), cut the graph at their input and cache the
// spatial maps of every image (ONNX Runtime), train the tail plus a
// softmax head in Go (package convtail) frozen and tuned, write the tuned
// weights back (backbone.WriteConvChain), append the head, and check that
// the exported ONNX model gives the Go model's probabilities.
//
//	go run ./scripts/convtail -cfg /usr/share/darknet/cfg/yolov3-tiny.cfg -size 96 -k 1
//	go run ./scripts/convtail -nsfwjs nsfwjs-4.4.0.tgz -k 2    # pretrained MobileNetV2 tail
//	go run ./scripts/convtail -size 96 -write-weights ytiny.weights  # for headtune models add --darknet
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/convtail"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models/darknet"
	"github.com/headtune/headtune/models/tfjs"
)

func main() {
	cfgPath := flag.String("cfg", "/usr/share/darknet/cfg/yolov3-tiny.cfg", "Darknet cfg")
	tarball := flag.String("nsfwjs", "", "use the registry-built MobileNetV2 (pretrained, blocks 0-10) from this nsfwjs@4.4.0 tarball instead of a Darknet cfg")
	size := flag.Int("size", 96, "network input side (multiple of 32)")
	k := flag.Int("k", 1, "convolutions to fine-tune")
	nTrain := flag.Int("train", 3000, "training images")
	nTest := flag.Int("test", 1000, "test images")
	epochs := flag.Int("epochs", 10, "epochs")
	lr := flag.Float64("lr", 1e-3, "Adam step of the head")
	tailScale := flag.Float64("tail-lr-scale", 0.1, "the tail's step relative to the head's")
	ftLR := flag.Float64("ft-lr", 1e-4, "step of tail and head when fine-tuning from the linear probe")
	skipZero := flag.Bool("skip-zero", false, "skip the run that tunes with a head started at zero")
	src := flag.String("src", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX folder")
	seed := flag.Uint64("seed", 1, "seed of the random weights and the training")
	writeWeights := flag.String("write-weights", "", "only write the cfg's random weights (Darknet format) to this file, for `headtune models add --darknet`, and exit")
	flag.Parse()
	if *writeWeights != "" {
		if err := writeRandomWeights(*cfgPath, *size, *seed, *writeWeights); err != nil {
			fmt.Fprintln(os.Stderr, "convtail:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*cfgPath, *tarball, *size, *k, *nTrain, *nTest, *epochs, *lr, *tailScale, *ftLR, *skipZero, *src, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "convtail:", err)
		os.Exit(1)
	}
}

// source is the backbone under test: the model, its recipe and input, and
// the spatial map whose pooled value is the feature.
type source struct {
	m       *onnxpb.ModelProto
	spec    imaging.Spec
	input   string
	mapName string
	what    string
}

func darknetSource(cfgPath string, size int, seed uint64) (*source, error) {
	f, err := os.Open(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, err := darknet.ParseConfig(f, filepath.Base(cfgPath))
	f.Close()
	if err != nil {
		return nil, err
	}
	opts := darknet.Options{Width: size, Height: size}
	weights, err := randomWeights(cfg, opts, seed)
	if err != nil {
		return nil, err
	}
	m, info, err := darknet.Build(cfg, bytes.NewReader(weights), "random.weights", opts)
	if err != nil {
		return nil, err
	}
	fc, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		return nil, err
	}
	return &source{m: m, spec: info.Spec(), input: info.Input, mapName: fc.Tensor,
		what: fmt.Sprintf("%s at %dx%d (random weights), features %s %v (%s)", cfg.Name, size, size, fc.Tensor, fc.Shape, fc.Rule)}, nil
}

// writeRandomWeights writes the random weights darknetSource uses.
func writeRandomWeights(cfgPath string, size int, seed uint64, out string) error {
	f, err := os.Open(cfgPath)
	if err != nil {
		return err
	}
	cfg, err := darknet.ParseConfig(f, filepath.Base(cfgPath))
	f.Close()
	if err != nil {
		return err
	}
	w, err := randomWeights(cfg, darknet.Options{Width: size, Height: size}, seed)
	if err != nil {
		return err
	}
	return os.WriteFile(out, w, 0o644)
}

// mobilenetSource is nsfwjs's MobileNetV2 through block 10 with its
// ImageNet weights; the map is block_10's depthwise ReLU6 before pooling.
func mobilenetSource(tarball string) (*source, error) {
	m, info, err := tfjs.Build(tfjs.ArchMobileNetV2, tarball)
	if err != nil {
		return nil, err
	}
	const mapName = "block_10_depthwise_relu"
	return &source{m: m, spec: info.Spec(), input: info.InputName, mapName: mapName,
		what: fmt.Sprintf("MobileNetV2 (nsfwjs, ImageNet weights) at %dx%d, features %s pooled", info.Width, info.Height, mapName)}, nil
}

func run(cfgPath, tarball string, size, k, nTrain, nTest, epochs int, lr, tailScale, ftLR float64, skipZero bool, src string, seed uint64) error {
	ctx := context.Background()
	var so *source
	var err error
	if tarball != "" {
		so, err = mobilenetSource(tarball)
	} else {
		so, err = darknetSource(cfgPath, size, seed)
	}
	if err != nil {
		return err
	}
	m, spec := so.m, so.spec
	chain, err := backbone.ConvChainN(m, so.mapName, k)
	if err != nil {
		return err
	}
	if len(chain) < k {
		return fmt.Errorf("only %d convolutions precede %s in a straight line", len(chain), so.mapName)
	}
	var tail []convtail.Layer
	for _, c := range chain {
		tail = append(tail, c.Layer)
	}
	l0 := tail[0]
	fmt.Printf("backbone %s; tail of %d convolutions from %s [%d,%d,%d]\n", so.what, k, chain[0].Input, l0.InC, l0.InH, l0.InW)
	var macs int64
	for _, l := range tail {
		macs += int64(l.OutLen()) * int64(l.InC/l.Groups*l.K*l.K)
	}
	fmt.Printf("tail: %.1f M multiply-adds per image forward\n", float64(macs)/1e6)

	if _, err := ort.Init(""); err != nil {
		return err
	}
	cut, err := backbone.CutAtFeature(m, &backbone.FeatureChoice{Tensor: chain[0].Input, Pool: backbone.PoolFlatten})
	if err != nil {
		return err
	}
	trainX, trainY, err := loadSplit(src, "train", nTrain)
	if err != nil {
		return err
	}
	testX, testY, err := loadSplit(src, "t10k", nTest)
	if err != nil {
		return err
	}
	t0 := time.Now()
	trainMaps, err := extract(cut, so.input, spec, trainX, l0.InLen())
	if err != nil {
		return err
	}
	testMaps, err := extract(cut, so.input, spec, testX, l0.InLen())
	if err != nil {
		return err
	}
	fmt.Printf("spatial cache: %d+%d images x %d floats = %.1f MB (%.1f KB per image; pooled features would take %d floats), extracted in %.1f s\n",
		nTrain, nTest, l0.InLen(), float64(4*l0.InLen()*(nTrain+nTest))/1e6, float64(4*l0.InLen())/1e3, tail[len(tail)-1].OutC, time.Since(t0).Seconds())

	train := convtail.Data{X: trainMaps, N: nTrain, Y: trainY}
	test := convtail.Data{X: testMaps, N: nTest, Y: testY}
	tc := convtail.Config{Epochs: epochs, BatchSize: 32, LR: lr, WeightDecay: 1e-4, Seed: seed, Threads: 0}
	frozen, frep, err := convtail.Train(ctx, tail, 10, train, tc)
	if err != nil {
		return err
	}
	fmt.Printf("frozen tail: test accuracy %.4f, train loss %.4f, %.1f s (same Adam head as the tuned run)\n", accuracy(frozen, test), frep.TrainLoss, frep.Seconds)
	// headtune's own frozen baseline: the linear head (L-BFGS on
	// standardised features, scikit-learn's convention) on the pooled maps.
	t1 := time.Now()
	trainF, testF := frozen.Features(train, 0), frozen.Features(test, 0)
	d := len(trainF) / nTrain
	lin, _, err := head.Train(ctx, head.Data{X: trainF, N: nTrain, D: d, Y: trainY}, head.Data{}, head.DefaultConfig(head.KindLinear), nil)
	if err != nil {
		return err
	}
	probsF := make([]float32, nTest*10)
	if err := lin.PredictBatch(testF, nTest, probsF); err != nil {
		return err
	}
	ok := 0
	for i := 0; i < nTest; i++ {
		best := 0
		for j := 1; j < 10; j++ {
			if probsF[i*10+j] > probsF[i*10+best] {
				best = j
			}
		}
		if int32(best) == testY[i] {
			ok++
		}
	}
	fmt.Printf("frozen tail, headtune's linear head (L-BFGS, standardised): test accuracy %.4f, %.1f s\n", float64(ok)/float64(nTest), time.Since(t1).Seconds())
	var tuned *convtail.Model
	var trep *convtail.Report
	if !skipZero {
		tc.TailLRScale = tailScale
		tuned, trep, err = convtail.Train(ctx, tail, 10, train, tc)
		if err != nil {
			return err
		}
		fmt.Printf("tuned tail, head from zero: test accuracy %.4f, train loss %.4f, %.1f s (%d epochs, head lr %.0e, tail lr %.0e)\n", accuracy(tuned, test), trep.TrainLoss, trep.Seconds, epochs, lr, lr*tailScale)
	}

	// Linear probe, then fine-tuning: start the head from the L-BFGS
	// solution (standardisation folded into its weights) and tune tail and
	// head together with a small step.
	w, b := foldStandardisation(lin)
	tc.InitW, tc.InitB = w, b
	tc.LR, tc.TailLRScale = ftLR, 1
	probe := tc
	probe.Epochs = 0
	if pm, _, err := convtail.Train(ctx, tail, 10, train, probe); err == nil {
		fmt.Printf("linear probe folded into the Go model, before tuning: test accuracy %.4f\n", accuracy(pm, test))
	}
	tuned, trep, err = convtail.Train(ctx, tail, 10, train, tc)
	if err != nil {
		return err
	}
	fmt.Printf("tuned tail, head from the linear probe: test accuracy %.4f, train loss %.4f, %.1f s (%d epochs, lr %.0e for both)\n", accuracy(tuned, test), trep.TrainLoss, trep.Seconds, epochs, ftLR)

	// Export: tuned weights written back, head appended, then parity.
	written, err := backbone.WriteConvChain(m, chain, tuned.Tail)
	if err != nil {
		return err
	}
	fc, err := backbone.FindFeatureTensor(written, so.mapName)
	if err != nil {
		return err
	}
	export, err := appendHead(written, fc, tuned)
	if err != nil {
		return err
	}
	probs, err := runExport(export, so.input, spec, testX, 10)
	if err != nil {
		return err
	}
	feats := tuned.Features(test, 0)
	c := len(feats) / nTest
	var worst float64
	agree := 0
	lg := make([]float32, 10)
	for i := 0; i < nTest; i++ {
		goProbs := softmax(tuned, feats[i*c:(i+1)*c], lg)
		a, b := 0, 0
		for j := 0; j < 10; j++ {
			worst = max(worst, math.Abs(goProbs[j]-float64(probs[i*10+j])))
			if goProbs[j] > goProbs[a] {
				a = j
			}
			if probs[i*10+j] > probs[i*10+b] {
				b = j
			}
		}
		if a == b {
			agree++
		}
	}
	fmt.Printf("export parity: max |probability difference| %.2g over %d test images, %d/%d same class\n", worst, nTest, agree, nTest)
	// The features alone: the written-back backbone in ONNX Runtime
	// against the tuned tail in Go.
	cutW, err := backbone.CutAtFeature(written, fc)
	if err != nil {
		return err
	}
	ortF, err := runModel(cutW, so.input, backbone.FeatureOutput, spec, testX, c)
	if err != nil {
		return err
	}
	var fd, fm, wmax float64
	for i, v := range feats {
		fd = max(fd, math.Abs(float64(v)-float64(ortF[i])))
		fm = max(fm, math.Abs(float64(v)))
	}
	for _, v := range tuned.HeadW {
		wmax = max(wmax, math.Abs(float64(v)))
	}
	fmt.Printf("feature parity: max |difference| %.2g, %.2g of the largest feature; largest head weight %.3g\n", fd, fd/fm, wmax)
	return nil
}

// foldStandardisation turns a one-layer head on standardised features into
// weights on raw features: W'[j,i] = W[j,i]/std[i], b'[j] = b[j] - sum_i
// W[j,i]*mean[i]/std[i].
func foldStandardisation(h *head.Model) ([]float32, []float32) {
	l := h.Layers[0]
	w := make([]float32, len(l.W))
	b := append([]float32(nil), l.B...)
	for j := 0; j < l.Out; j++ {
		var shift float64
		for i := 0; i < l.In; i++ {
			mean, std := float32(0), float32(1)
			if h.Mean != nil {
				mean, std = h.Mean[i], h.Std[i]
			}
			w[j*l.In+i] = l.W[j*l.In+i] / std
			shift += float64(l.W[j*l.In+i]) * float64(mean) / float64(std)
		}
		b[j] -= float32(shift)
	}
	return w, b
}

func softmax(m *convtail.Model, f []float32, lg []float32) []float64 {
	c := len(f)
	for j := 0; j < m.K; j++ {
		s := float64(m.HeadB[j])
		for i, v := range f {
			s += float64(m.HeadW[j*c+i]) * float64(v)
		}
		lg[j] = float32(s)
	}
	mx := lg[0]
	for _, v := range lg {
		mx = max(mx, v)
	}
	out := make([]float64, m.K)
	var z float64
	for j, v := range lg {
		out[j] = math.Exp(float64(v - mx))
		z += out[j]
	}
	for j := range out {
		out[j] /= z
	}
	return out
}

// appendHead cuts the written-back backbone at its (pooled) feature tensor
// and appends Gemm + Softmax with the head's weights: output "probs".
func appendHead(m *onnxpb.ModelProto, fc *backbone.FeatureChoice, tuned *convtail.Model) (*onnxpb.ModelProto, error) {
	cut, err := backbone.CutAtFeature(m, fc)
	if err != nil {
		return nil, err
	}
	g := cut.Graph
	b := backbone.EditGraph(g)
	c := len(tuned.HeadW) / tuned.K
	w := b.Initializer("head_w", []int64{int64(tuned.K), int64(c)}, tuned.HeadW)
	bias := b.Initializer("head_b", []int64{int64(tuned.K)}, tuned.HeadB)
	logits := b.Op("Gemm", "logits", []string{backbone.FeatureOutput, w, bias}, backbone.AttrInt("transB", 1))
	b.Node("Softmax", []string{logits}, []string{"probs"}, backbone.AttrInt("axis", 1))
	g.Output = []*onnxpb.ValueInfoProto{backbone.ValueInfo("probs", onnxpb.TensorProto_FLOAT, []int64{-1, int64(tuned.K)})}
	return cut, nil
}

func accuracy(m *convtail.Model, d convtail.Data) float64 {
	p := m.Predict(d, 0)
	ok := 0
	for i := range p {
		if p[i] == d.Y[i] {
			ok++
		}
	}
	return float64(ok) / float64(d.N)
}

// extract runs the cut backbone on every image and returns the flattened
// maps, n x per.
func extract(cut *onnxpb.ModelProto, input string, spec imaging.Spec, imgs [][]byte, per int) ([]float32, error) {
	return runModel(cut, input, backbone.FeatureOutput, spec, imgs, per)
}

func runExport(m *onnxpb.ModelProto, input string, spec imaging.Spec, imgs [][]byte, k int) ([]float32, error) {
	return runModel(m, input, "probs", spec, imgs, k)
}

func runModel(m *onnxpb.ModelProto, input, output string, spec imaging.Spec, imgs [][]byte, per int) ([]float32, error) {
	data, err := backbone.MarshalModel(m)
	if err != nil {
		return nil, err
	}
	shape := []int64{3, int64(spec.Height), int64(spec.Width)}
	if spec.Layout == imaging.LayoutNHWC {
		shape = []int64{int64(spec.Height), int64(spec.Width), 3}
	}
	s, err := ort.NewSession(data, ort.SessionSpec{Input: input, InputShape: shape,
		Outputs: []string{output}, OutputSizes: []int{per}}, ort.SessionOptions{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	const batch = 32
	out := make([]float32, len(imgs)*per)
	in := make([]float32, batch*s.InputLen())
	sc := imaging.NewScratch()
	for b0 := 0; b0 < len(imgs); b0 += batch {
		n := min(batch, len(imgs)-b0)
		for i := 0; i < n; i++ {
			img := &imaging.RGB{W: 28, H: 28, Pix: make([]uint8, 28*28*3)}
			for p, v := range imgs[b0+i] {
				img.Pix[3*p], img.Pix[3*p+1], img.Pix[3*p+2] = v, v, v
			}
			if err := spec.Fill(img, in[i*s.InputLen():(i+1)*s.InputLen()], sc); err != nil {
				return nil, err
			}
		}
		if err := s.Run(context.Background(), in[:n*s.InputLen()], n, out[b0*per:(b0+n)*per]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func loadSplit(dir, prefix string, n int) ([][]byte, []int32, error) {
	raw, err := gunzip(filepath.Join(dir, prefix+"-images-idx3-ubyte.gz"))
	if err != nil {
		return nil, nil, err
	}
	lab, err := gunzip(filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz"))
	if err != nil {
		return nil, nil, err
	}
	if len(raw) < 16+n*784 || len(lab) < 8+n {
		return nil, nil, fmt.Errorf("%s: fewer than %d images", prefix, n)
	}
	imgs := make([][]byte, n)
	ys := make([]int32, n)
	for i := range imgs {
		imgs[i] = raw[16+i*784 : 16+(i+1)*784]
		ys[i] = int32(lab[8+i])
	}
	return imgs, ys, nil
}

func gunzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(z)
}

// randomWeights writes a .weights file for cfg: biases and batch-norm
// means in [-0.1, 0.1], scales and variances in [0.5, 1.5], weights
// uniform with variance 2/fan-in.
func randomWeights(cfg *darknet.Config, opts darknet.Options, seed uint64) ([]byte, error) {
	blobs, err := darknet.Layout(cfg, opts)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := darknet.WriteHeader(w, darknet.Header{Major: 0, Minor: 2}); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	outs := 1
	var b4 [4]byte
	for _, b := range blobs {
		lo, hi := float32(-0.1), float32(0.1)
		switch b.Kind {
		case "bias":
			outs = b.N
		case "scale", "variance":
			lo, hi = 0.5, 1.5
		case "weight":
			a := float32(math.Sqrt(6 / (float64(b.N) / float64(outs))))
			lo, hi = -a, a
		}
		for i := 0; i < b.N; i++ {
			binary.LittleEndian.PutUint32(b4[:], math.Float32bits(lo+(hi-lo)*rng.Float32()))
			w.Write(b4[:])
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
