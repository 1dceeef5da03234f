package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/pipeline"
)

const defaultHead = "headtune.head"

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a new classification head on the cached features of the last extract",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "classes", Usage: "expected number of classes (checked against the dataset)"},
			&cli.StringFlag{Name: "view", Usage: "dataset view file to train on (default: the last extract's)"},
			&cli.StringFlag{Name: "head", Value: defaultHead, Usage: "where to write the trained head"},
			&cli.StringFlag{Name: "kind", Value: head.KindLinear, Usage: "linear (softmax regression) or mlp"},
			&cli.IntSliceFlag{Name: "hidden", Usage: "MLP hidden layer widths (default 512)"},
			&cli.Float64Flag{Name: "dropout", Value: -1, Usage: "MLP dropout probability"},
			&cli.StringFlag{Name: "optimizer", Usage: "lbfgs (linear default), adam (mlp default) or sgd"},
			&cli.Float64Flag{Name: "lr", Usage: "peak learning rate (adam, sgd)"},
			&cli.Float64Flag{Name: "weight-decay", Value: -1, Usage: "L2 strength (adam, sgd)"},
			&cli.Float64Flag{Name: "C", Usage: "lbfgs inverse regularisation, as scikit-learn's LogisticRegression (default 1)"},
			&cli.Float64Flag{Name: "label-smoothing"},
			&cli.IntFlag{Name: "epochs", Usage: "maximum epochs (adam, sgd)"},
			&cli.IntFlag{Name: "batch-size", Usage: "mini-batch size (adam, sgd)"},
			&cli.IntFlag{Name: "patience", Value: -1, Usage: "early stopping patience in epochs (0: off)"},
			&cli.StringFlag{Name: "schedule", Usage: "cosine or constant learning rate (after warm-up)"},
			&cli.BoolFlag{Name: "balance", Usage: "weight classes inversely to their frequency"},
			&cli.Float64Flag{Name: "val", Value: 0.1, Usage: "validation fraction when the dataset has no val/ folder"},
			&cli.Float64Flag{Name: "test", Value: 0.1, Usage: "test fraction when the dataset has no test/ folder"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed for splits, initialisation and shuffling (recorded)"},
		},
		Action: runTrain,
	}
}

// splitData divides the loaded features into train, validation and test
// sets: the dataset's own split folders when it has them, else a stratified
// split with the given fractions.
func splitData(f *pipeline.Features, valFrac, testFrac float64, seed int64) (train, val, test []int, err error) {
	bySplit := f.SplitRows()
	if len(bySplit["train"]) == 0 && len(bySplit["val"]) == 0 && len(bySplit["test"]) == 0 {
		return head.StratifiedSplit(f.Labels, valFrac, testFrac, seed)
	}
	test = bySplit["test"]
	val = bySplit["val"]
	pool := append(append([]int(nil), bySplit["train"]...), bySplit[""]...)
	if len(val) == 0 && valFrac > 0 {
		labels := make([]int32, len(pool))
		for i, r := range pool {
			labels[i] = f.Labels[r]
		}
		tr, va, _, err := head.StratifiedSplit(labels, valFrac, 0, seed)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, i := range va {
			val = append(val, pool[i])
		}
		kept := make([]int, 0, len(tr))
		for _, i := range tr {
			kept = append(kept, pool[i])
		}
		pool = kept
	}
	return pool, val, test, nil
}

func runTrain(c *cli.Context) error {
	root, err := cacheRoot(c)
	if err != nil {
		return err
	}
	f, err := pipeline.LoadFeatures(root, c.String("view"))
	if err != nil {
		return err
	}
	if err := head.CheckClasses(c.Int("classes"), f.Classes); err != nil {
		return err
	}
	trainRows, valRows, testRows, err := splitData(f, c.Float64("val"), c.Float64("test"), c.Int64("seed"))
	if err != nil {
		return err
	}
	cfg := head.DefaultConfig(c.String("kind"))
	applyTrainFlags(c, &cfg)
	cfg.Classes = f.Classes
	cfg.Threads = threads(c)

	ref := head.BackboneRef{
		ID:            f.Run.Model,
		ModelHash:     f.Ident.ModelHash,
		FeatureTensor: f.Ident.FeatureTensor,
		Preprocess:    f.Ident.Preprocess,
	}
	if f.Run.Options.TuneLayers > 0 {
		// Fine-tune the backbone's own dense layers: read their pretrained
		// weights from the ONNX initializers.
		bb, err := openBackboneForRun(c, f.Run, true)
		if err != nil {
			return err
		}
		for _, l := range bb.Tuned {
			cfg.InitLayers = append(cfg.InitLayers, l.Layer)
		}
		ref.TuneCut = bb.Choice.Tensor
	}

	all := head.Data{X: f.X, N: f.N, D: f.D, Y: f.Labels}
	trainSet, valSet := all.Subset(trainRows), all.Subset(valRows)
	var log io.Writer = os.Stderr
	if c.Bool("quiet") {
		log = nil
	}
	fmt.Fprintf(os.Stderr, "train: %s head on %d-d features: %d train, %d val, %d test images, %d classes\n",
		cfg.Kind, f.D, len(trainRows), len(valRows), len(testRows), len(f.Classes))
	m, rep, err := head.Train(c.Context, trainSet, valSet, cfg, log)
	if err != nil {
		return err
	}
	m.Backbone = ref
	summary := map[string]any{"head": absPath(c.String("head")), "kind": m.Kind, "classes": m.Classes, "train": map[string]any{
		"epochs": rep.Epochs, "iterations": rep.Iters, "best_epoch": rep.BestEpoch, "stopped": rep.Stopped,
		"train_loss": finite(rep.TrainLoss), "val_loss": finite(rep.ValLoss), "val_accuracy": finite(rep.ValAcc), "seconds": rep.Seconds},
		"train_rows": len(trainRows), "val_rows": len(valRows), "test_rows": len(testRows), "seed": cfg.Seed, "temperature": m.Temperature}
	if m.Metrics == nil {
		m.Metrics = map[string]float64{}
	}
	if len(valRows) > 0 {
		if ev, err := head.Evaluate(m, valSet); err == nil {
			m.Metrics["val_accuracy"] = ev.Accuracy
			m.Metrics["val_macro_f1"] = ev.MacroF1
			m.Metrics["val_ece"] = ev.ECE
		}
	}
	if len(testRows) > 0 {
		ev, err := head.Evaluate(m, all.Subset(testRows))
		if err != nil {
			return err
		}
		m.Metrics["test_accuracy"] = ev.Accuracy
		m.Metrics["test_macro_f1"] = ev.MacroF1
		m.Metrics["test_ece"] = ev.ECE
		summary["test"] = map[string]float64{"accuracy": ev.Accuracy, "macro_f1": ev.MacroF1, "ece": ev.ECE}
	}
	var summaryJSON []byte
	if c.Bool("json") {
		// Encode before saving, so a summary that cannot be written never
		// follows a silently replaced head.
		if summaryJSON, err = json.MarshalIndent(summary, "", "  "); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(absPath(c.String("head"))), 0o755); err != nil {
		return err
	}
	if err := head.Save(c.String("head"), m); err != nil {
		return err
	}
	if c.Bool("json") {
		_, err := os.Stdout.Write(append(summaryJSON, '\n'))
		return err
	}
	fmt.Fprintf(os.Stderr, "train: done in %.2fs (%s); temperature %.3f\n", rep.Seconds, rep.Stopped, m.Temperature)
	if v, ok := m.Metrics["val_accuracy"]; ok {
		fmt.Fprintf(os.Stderr, "train: validation accuracy %.4f\n", v)
	}
	if v, ok := m.Metrics["test_accuracy"]; ok {
		fmt.Fprintf(os.Stderr, "train: test accuracy %.4f (macro-F1 %.4f)\n", v, m.Metrics["test_macro_f1"])
	}
	fmt.Fprintf(os.Stderr, "train: head written to %s\n", c.String("head"))
	return nil
}

// finite maps NaN and infinities (no validation data) to JSON null.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func applyTrainFlags(c *cli.Context, cfg *head.Config) {
	if v := c.IntSlice("hidden"); len(v) > 0 {
		cfg.Hidden = v
	}
	if v := c.Float64("dropout"); v >= 0 {
		cfg.Dropout = v
	}
	if v := c.String("optimizer"); v != "" {
		cfg.Optimizer = v
		if v != head.OptLBFGS {
			cfg.C = 0
		}
	}
	if v := c.Float64("lr"); v > 0 {
		cfg.LR = v
	}
	if v := c.Float64("weight-decay"); v >= 0 {
		cfg.WeightDecay = v
	}
	if v := c.Float64("C"); v > 0 {
		cfg.C = v
	}
	if c.IsSet("label-smoothing") {
		cfg.LabelSmoothing = c.Float64("label-smoothing")
	}
	if v := c.Int("epochs"); v > 0 {
		cfg.Epochs = v
	}
	if v := c.Int("batch-size"); v > 0 {
		cfg.BatchSize = v
	}
	if v := c.Int("patience"); v >= 0 {
		cfg.Patience = v
	}
	if v := c.String("schedule"); v != "" {
		cfg.Schedule = v
	}
	// One L-BFGS log line per 50 iterations: 1000 iterations should not
	// print 100 lines.
	cfg.LogEvery = 50
	cfg.Balance = c.Bool("balance")
	cfg.Seed = c.Int64("seed")
}

// openBackboneForRun reopens the backbone an extract run used.
func openBackboneForRun(c *cli.Context, run *pipeline.LastRun, noSession bool) (*pipeline.Backbone, error) {
	store, err := openStore(c)
	if err != nil {
		return nil, err
	}
	return pipeline.OpenBackbone(run.Model, pipeline.BackboneOptions{
		Store: store, FeatureTensor: run.Options.FeatureTensor, TuneLayers: run.Options.TuneLayers, Spec: run.Options.Spec, NoSession: noSession,
		Session: sessionOptions(c),
	})
}
