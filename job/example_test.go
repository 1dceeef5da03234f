package job_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/e2e"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/predictions"
)

// workspace is what the examples start from: a labelled dataset of three
// generated classes (red, green, blue; 10 images each), a tiny generated
// ONNX backbone, and an Env whose feature cache and models folder are
// private temporary folders.
type workspace struct {
	dir, dataset, backbone string
	env                    job.Env
}

func newWorkspace() *workspace {
	dir, err := os.MkdirTemp("", "headtune-example-")
	if err != nil {
		log.Fatal(err)
	}
	w := &workspace{dir: dir, dataset: filepath.Join(dir, "images"), backbone: filepath.Join(dir, "backbone.onnx")}
	if _, err := e2e.WriteDataset(w.dataset, e2e.DatasetOptions{Classes: 3, PerClass: 10, Seed: 1}); err != nil {
		log.Fatal(err)
	}
	if err := e2e.WriteBackbone(w.backbone, "resnet", 32); err != nil {
		log.Fatal(err)
	}
	w.env = job.Env{CacheDir: filepath.Join(dir, "cache"), ModelsDir: filepath.Join(dir, "models")}
	w.env.Session.Threads = 1
	return w
}

func (w *workspace) close() { os.RemoveAll(w.dir) }

// extract runs Extract on the workspace's dataset and backbone.
func (w *workspace) extract(ctx context.Context) *job.ExtractResult {
	res, err := job.Extract(ctx, job.ExtractOptions{
		Env:      w.env,
		Dataset:  w.dataset,
		Backbone: job.BackboneOptions{Model: w.backbone, Preset: "imagenet"},
	})
	if err != nil {
		log.Fatal(err)
	}
	return res
}

// train runs Train after extract and returns the head's path.
func (w *workspace) train(ctx context.Context) string {
	w.extract(ctx)
	res, err := job.Train(ctx, job.TrainOptions{Env: w.env, Head: filepath.Join(w.dir, "colours.head"), Split: job.DefaultSplit})
	if err != nil {
		log.Fatal(err)
	}
	return res.Head
}

func ExampleExtract() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()

	res, err := job.Extract(ctx, job.ExtractOptions{
		Env:      w.env,
		Dataset:  w.dataset, // images/red/*.png, images/green/*.png, images/blue/*.png
		Backbone: job.BackboneOptions{Model: w.backbone, Preset: "imagenet"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d images, %d computed, %d classes %v, %d-d features\n", res.Images, res.Computed, len(res.Classes), res.Classes, res.Dim)

	// A second run finds every image in the cache.
	again, err := job.Extract(ctx, job.ExtractOptions{Env: w.env, Dataset: w.dataset, Backbone: job.BackboneOptions{Model: w.backbone}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("again: %d computed, %d reused\n", again.Computed, again.Reused)
	// Output:
	// 30 images, 30 computed, 3 classes [blue green red], 8-d features
	// again: 0 computed, 30 reused
}

func ExampleTrain() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	w.extract(ctx)

	cfg := head.DefaultConfig(head.KindLinear)
	cfg.Optimizer = "" // let Train choose (L-BFGS here)
	res, err := job.Train(ctx, job.TrainOptions{
		Env:    w.env,
		Head:   filepath.Join(w.dir, "colours.head"),
		Config: cfg,
		Split:  job.SplitOptions{Val: 0.2, Test: 0.2, Seed: 1},
	})
	if err != nil {
		log.Fatal(err)
	}
	sp := res.Model.Train.Split
	fmt.Printf("%s head, %s: %d train, %d val, %d test rows\n", res.Model.Kind, res.Model.Train.Config.Optimizer, res.TrainRows, res.ValRows, res.TestRows)
	fmt.Printf("split recorded in the head: %s, seed %d, test rows %v\n", sp.Source, sp.Seed, len(sp.TestIndex))
	fmt.Printf("test accuracy at least 0.9: %v\n", res.Test.Accuracy >= 0.9)
	// Output:
	// linear head, lbfgs: 18 train, 6 val, 6 test rows
	// split recorded in the head: stratified, seed 1, test rows 6
	// test accuracy at least 0.9: true
}

func ExampleEval() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	headPath := w.train(ctx)

	// The head recorded its split: Eval finds the same test rows without
	// being told the fractions or the seed.
	res, err := job.Eval(ctx, job.EvalOptions{Env: w.env, Head: headPath, Split: "test"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d images of the %s split, accuracy at least 0.9: %v\n", res.Eval.N, res.Split, res.Eval.Accuracy >= 0.9)

	// A labelled folder is extracted with the head's own backbone and
	// evaluated in full.
	res, err = job.Eval(ctx, job.EvalOptions{Env: w.env, Head: headPath, Dataset: w.dataset})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d images of the %s split\n", res.Eval.N, res.Split)
	// Output:
	// 3 images of the test split, accuracy at least 0.9: true
	// 30 images of the all split
}

func ExamplePredict() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	headPath := w.train(ctx)

	// Rows go to any predictions.Writer: here JSON Lines in memory.
	var out bytes.Buffer
	res, err := job.Predict(ctx, job.PredictOptions{
		Env:    w.env,
		Head:   headPath,
		Inputs: []string{filepath.Join(w.dataset, "red")},
		TopK:   2,
		Out:    predictions.NewJSONL(&out, predictions.Options{}),
	})
	if err != nil {
		log.Fatal(err)
	}
	done, err := predictions.JSONLDone(&out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d images, %d failed, %d rows written\n", res.Images, res.Failed, len(done))
	// Output:
	// 10 images, 0 failed, 10 rows written
}

func ExampleExport() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	headPath := w.train(ctx)

	res, err := job.Export(ctx, job.ExportOptions{Env: w.env, Head: headPath, Out: filepath.Join(w.dir, "colours.onnx"), WithFeatures: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("classes %v, input %dx%d %s\n", res.Classes, res.Spec.Width, res.Spec.Height, res.Spec.Layout)

	// The export runs on its own, with the same rows as the head.
	var out bytes.Buffer
	if _, err := job.Predict(ctx, job.PredictOptions{Env: w.env, Export: res.Path, Inputs: []string{filepath.Join(w.dataset, "blue")},
		Out: predictions.NewText(&out, predictions.Options{})}); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d text rows\n", strings.Count(out.String(), "\n"))
	// Output:
	// classes [blue green red], input 32x32 NCHW
	// 10 text rows
}

func ExampleInspect() {
	w := newWorkspace()
	defer w.close()
	res, err := job.Inspect(context.Background(), job.InspectOptions{Env: w.env, Model: w.backbone})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("input %s, feature tensor found: %v, export: %v\n", res.Info.Inputs[0].Name, res.Info.Feature != nil, res.Export != nil)
	// Output:
	// input input, feature tensor found: true, export: false
}

func ExampleCacheCheck() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	w.extract(ctx)

	res, err := job.CacheCheck(ctx, job.CacheCheckOptions{Env: w.env})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d folder(s), %d damaged\n", len(res.Dirs), res.Damaged)
	// Output:
	// 1 folder(s), 0 damaged
}

func ExampleCacheExportNPY() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()
	headPath := w.train(ctx)

	// With Head, the files hold exactly the head's train/val/test rows.
	res, err := job.CacheExportNPY(ctx, job.NPYOptions{Env: w.env, Head: headPath, Out: filepath.Join(w.dir, "npy")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d/%d/%d rows, %d-d, classes %v\n", res.Train, res.Val, res.Test, res.Dim, res.Classes)
	// Output:
	// 24/3/3 rows, 8-d, classes [blue green red]
}

func ExampleModelsAdd() {
	w := newWorkspace()
	defer w.close()
	ctx := context.Background()

	// Register a local ONNX file under a name; extract can then use it by
	// name (Backbone.Model: "colours-net").
	inst, err := job.ModelsAdd(ctx, job.AddOptions{Env: w.env, File: w.backbone, Name: "colours-net", AddOptions: models.AddOptions{Preset: "imagenet"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("added %s: %d-d features\n", inst.Meta.Name, inst.Meta.FeatureDim)

	list, err := job.ModelsList(ctx, job.ModelsListOptions{Env: w.env})
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range list.Models {
		if l.Installed != nil {
			fmt.Println("installed:", l.Name)
		}
	}
	checks, err := job.ModelsVerify(ctx, job.ModelsVerifyOptions{Env: w.env})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("verified %d\n", len(checks))
	// Output:
	// added colours-net: 8-d features
	// installed: colours-net
	// verified 1
}
