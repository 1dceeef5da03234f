package job

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/headtune/headtune/convtail"
	"github.com/headtune/headtune/dense"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/pipeline"
)

// ConvTailOptions set the fine-tuning of a convolutional tail (train after
// extract --tune-layers K on a backbone whose features are a globally
// pooled conv map). Zero values take the defaults below.
type ConvTailOptions struct {
	Epochs    int     // 0: DefaultConvTailEpochs
	LR        float64 // Adam step of the tail and the head; 0: DefaultConvTailLR
	BatchSize int     // 0: DefaultConvTailBatch
}

// Defaults of the conv-tail fine-tuning: the settings of the README's
// measurements ("linear probe, then tail and head tuned together"), the
// best of the recipes tried there.
const (
	DefaultConvTailEpochs = 5
	DefaultConvTailLR     = 1e-4
	DefaultConvTailBatch  = 32
)

// trainConvTail trains a head together with the backbone's last
// convolutions on cached spatial maps: a linear probe (L-BFGS on the
// frozen tail's standardised pooled features) starts the head, then Adam
// tunes the convolutions and the head together (package convtail); the
// standardisation stays a separate step rather than being folded into the
// head's weights.
func trainConvTail(ctx context.Context, opt TrainOptions, cfg head.Config, f *pipeline.Features, bb *pipeline.Backbone,
	split *head.SplitInfo, trainRows, valRows, testRows []int) (*TrainResult, error) {
	if cfg.Kind != head.KindLinear {
		return nil, fmt.Errorf("train: --tune-layers on a convolutional tail trains a linear head (got --kind %s)", cfg.Kind)
	}
	if cfg.Optimizer != "" && cfg.Optimizer != head.OptAdam {
		return nil, fmt.Errorf("train: --tune-layers on a convolutional tail is trained with adam (after an L-BFGS linear probe); --optimizer %s cannot train the convolutions", cfg.Optimizer)
	}
	if want := bb.Choice.Tensor + pipeline.SpatialSuffix; f.Ident.FeatureTensor != want || f.D != int(bb.Choice.Dim) {
		return nil, fmt.Errorf("train: the cached features (%s, %d values) are not the spatial map %s the conv tail takes (%d values): extract again with --tune-layers", f.Ident.FeatureTensor, f.D, bb.Choice.Tensor, bb.Choice.Dim)
	}
	to := opt.ConvTail
	to.Epochs = cmpOr(to.Epochs, DefaultConvTailEpochs)
	to.BatchSize = cmpOr(to.BatchSize, DefaultConvTailBatch)
	if to.LR == 0 {
		to.LR = DefaultConvTailLR
	}
	var tail []convtail.Layer
	var convs []head.ConvLayer
	for _, c := range bb.TunedConv {
		tail = append(tail, c.Layer)
		convs = append(convs, head.ConvLayer{Conv: c.Conv, BatchNorm: c.BatchNorm})
	}
	if len(trainRows) == 0 {
		return nil, fmt.Errorf("train: no training rows")
	}
	k := len(f.Classes)
	frozen := &convtail.Model{Tail: tail}
	pooled := frozen.Features(convtail.Data{X: f.X, N: f.N}, cfg.Threads)
	c := tail[len(tail)-1].OutC
	all := head.Data{X: pooled, N: f.N, D: c, Y: f.Labels}
	probeCfg := head.DefaultConfig(head.KindLinear)
	probeCfg.Classes, probeCfg.Seed, probeCfg.Threads, probeCfg.Balance = f.Classes, cfg.Seed, cfg.Threads, cfg.Balance
	probe, _, err := head.Train(ctx, all.Subset(trainRows), all.Subset(valRows), probeCfg, opt.Log)
	if err != nil {
		return nil, fmt.Errorf("train: linear probe on the frozen conv tail: %w", err)
	}
	lin := probe.Layers[0]
	tuned, rep, err := convtail.Train(ctx, tail, k, convtail.Data{X: f.X, N: f.N, Y: f.Labels, Idx: trainRows}, convtail.Config{
		Epochs: to.Epochs, BatchSize: to.BatchSize, LR: to.LR, TailLRScale: 1, WeightDecay: cfg.WeightDecay,
		Seed: uint64(cfg.Seed), Threads: cfg.Threads, InitW: lin.W, InitB: lin.B, Mean: probe.Mean, Std: probe.Std,
	})
	if err != nil {
		return nil, fmt.Errorf("train: conv tail: %w", err)
	}
	for i := range convs {
		convs[i].Layer = tuned.Tail[i]
	}
	rec := probeCfg
	rec.Optimizer, rec.C, rec.LR, rec.Epochs, rec.BatchSize, rec.TunedLRScale = head.OptAdam, 0, to.LR, to.Epochs, to.BatchSize, 1
	rec.WeightDecay = cfg.WeightDecay
	m := &head.Model{
		Kind: head.KindLinear, Classes: probe.Classes, Mean: tuned.Mean, Std: tuned.Std,
		Layers:      []dense.Layer{{In: c, Out: k, W: tuned.HeadW, B: tuned.HeadB, Act: dense.ActNone}},
		Temperature: 1, ConvTail: convs,
		Backbone: head.BackboneRef{ID: f.Run.Model, ModelHash: f.Ident.ModelHash, FeatureTensor: bb.Pooled.Tensor,
			Preprocess: f.Ident.Preprocess, TuneCut: bb.Choice.Tensor},
		Train: head.TrainInfo{Config: rec, Seed: cfg.Seed, Threads: cfg.Threads, TrainRows: len(trainRows), ValRows: len(valRows),
			Epochs: rep.Epochs, Iterations: rep.Epochs * ((len(trainRows) + to.BatchSize - 1) / to.BatchSize), Stopped: "epochs",
			Seconds: rep.Seconds, Split: split},
		Metrics: map[string]float64{},
	}
	tf, err := m.ConvFeatures(f.X, f.N, cfg.Threads)
	if err != nil {
		return nil, err
	}
	tunedAll := head.Data{X: tf, N: f.N, D: c, Y: f.Labels}
	res := &TrainResult{Model: m, TrainRows: len(trainRows), ValRows: len(valRows), TestRows: len(testRows),
		Report: &head.Report{Epochs: rep.Epochs, Iters: m.Train.Iterations, Stopped: "epochs", TrainLoss: rep.TrainLoss, ValLoss: math.NaN(), ValAcc: math.NaN(), Seconds: rep.Seconds}}
	res.Notes = append(res.Notes, split.Skipped...)
	res.Notes = append(res.Notes, fmt.Sprintf("conv tail: %d convolution(s) (%s) tuned with the head: a linear probe (L-BFGS, standardised pooled features) starts the head, then Adam (lr %g, %d epochs, batch %d) tunes convolutions and head together",
		len(convs), convNames(convs), to.LR, to.Epochs, to.BatchSize))
	if err := calibrateConvHead(m, tunedAll.Subset(valRows), res); err != nil {
		return nil, err
	}
	if len(valRows) > 0 {
		pv, err := head.Evaluate(probe, all.Subset(valRows))
		if err != nil {
			return nil, err
		}
		if res.Val, err = head.Evaluate(m, tunedAll.Subset(valRows)); err != nil {
			return nil, err
		}
		res.Report.ValAcc = res.Val.Accuracy
		setMetrics(m.Metrics, "val", res.Val)
		m.Metrics["val_accuracy_frozen_tail"] = pv.Accuracy
		res.Notes = append(res.Notes, fmt.Sprintf("conv tail: validation accuracy %.4f frozen (linear probe), %.4f tuned", pv.Accuracy, res.Val.Accuracy))
	}
	if len(testRows) > 0 {
		if res.Test, err = head.Evaluate(m, tunedAll.Subset(testRows)); err != nil {
			return nil, err
		}
		setMetrics(m.Metrics, "test", res.Test)
	}
	return res, nil
}

func convNames(c []head.ConvLayer) string {
	var s []string
	for _, l := range c {
		s = append(s, l.Conv)
	}
	return strings.Join(s, ", ")
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// convHeadRows turns the cached rows of f into what a head with a conv
// tail takes: spatial maps cached by extract --tune-layers are run through
// the head's tuned convolutions and pooled; features extracted through the
// tuned backbone (eval on a folder) are taken as they are. It returns the
// backbone ref the rows stand for, to check against the head's.
func convHeadRows(m *head.Model, f *pipeline.Features) (head.BackboneRef, error) {
	ref := head.BackboneRef{ID: f.Run.Model, ModelHash: f.Ident.ModelHash, FeatureTensor: f.Ident.FeatureTensor, Preprocess: f.Ident.Preprocess, TuneCut: m.Backbone.TuneCut}
	switch {
	case f.Ident.FeatureTensor == m.Backbone.TuneCut+pipeline.SpatialSuffix:
		x, err := m.ConvFeatures(f.X, f.N, 0)
		if err != nil {
			return ref, fmt.Errorf("run the head's conv tail on the cached maps: %w", err)
		}
		f.X, f.D = x, m.Dim()
		ref.FeatureTensor = m.Backbone.FeatureTensor
	case f.Ident.FeatureTensor == pipeline.TunedFeatureTensor(m.Backbone.FeatureTensor, convLayers(m)):
		ref.FeatureTensor = m.Backbone.FeatureTensor
	}
	return ref, nil
}

func convLayers(m *head.Model) []convtail.Layer {
	var out []convtail.Layer
	for _, c := range m.ConvTail {
		out = append(out, c.Layer)
	}
	return out
}

// calibrateConvHead fits the temperature and the prediction-set scores of
// a conv-tail head on its validation rows (pooled through the tuned tail),
// as head.Fit does for other heads without cross-validation (which would
// retrain the tail once per fold).
func calibrateConvHead(m *head.Model, val head.Data, res *TrainResult) error {
	n, k := val.Rows(), m.NumClasses()
	if n == 0 {
		m.Calibration = &head.Calibration{Source: head.CalibNone, Temperature: 1, Reason: "no validation images (a conv tail is not cross-validated)"}
		return nil
	}
	x := make([]float32, 0, n*val.D)
	labels := make([]int32, n)
	for i := 0; i < n; i++ {
		x = append(x, val.Row(i)...)
		labels[i] = val.Label(i)
	}
	logits := make([]float32, n*k)
	if err := m.LogitsBatch(x, n, logits); err != nil {
		return err
	}
	cal, err := head.Calibrate(logits, labels, k, head.CalibValidation)
	if err != nil {
		return fmt.Errorf("train: calibrate the conv-tail head: %w", err)
	}
	m.Temperature, m.Calibration = cal.Temperature, &cal
	probs := make([]float32, n*k)
	if err := m.PredictBatch(x, n, probs); err != nil {
		return err
	}
	if m.Conformal, err = head.NewConformal(probs, labels, k, head.CalibValidation); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if n < head.DefaultMinCalibRows {
		res.Notes = append(res.Notes, fmt.Sprintf("calibrated on only %d validation images", n))
	}
	return nil
}
