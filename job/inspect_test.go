package job_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
	"github.com/headtune/headtune/job"
	"github.com/headtune/headtune/models"
)

// TestInspectInstalledUsesRegisteredTensor: `inspect NAME` reports the
// tensor the model was registered with (what extract cuts at), not what
// detection would choose; and a class-names file reaches the model's meta.
func TestInspectInstalledUsesRegisteredTensor(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vgg.onnx")
	if err := backbone.WriteModelFile(file, testmodels.Model("vgg", 16)); err != nil {
		t.Fatal(err)
	}
	names := filepath.Join(dir, "classes.txt")
	if err := os.WriteFile(names, []byte("zero\none\n\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := job.Env{ModelsDir: filepath.Join(dir, "models"), CacheDir: filepath.Join(dir, "cache")}
	ctx := context.Background()
	inst, err := job.ModelsAdd(ctx, job.AddOptions{Env: env, File: file, Name: "mine", ClassesFile: names,
		AddOptions: models.AddOptions{Preset: "imagenet", FeatureTensor: "flatten"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.Meta.Classes) != 10 || inst.Meta.Classes[9] != "nine" {
		t.Errorf("classes %q", inst.Meta.Classes)
	}
	auto, err := job.Inspect(ctx, job.InspectOptions{Env: env, Model: file})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := job.Inspect(ctx, job.InspectOptions{Env: env, Model: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if auto.Info.Feature == nil || auto.Info.Feature.Tensor == "flatten" {
		t.Fatalf("the file's detected tensor %+v should not be flatten (the test needs them to differ)", auto.Info.Feature)
	}
	if f := reg.Info.Feature; f == nil || f.Tensor != "flatten" || f.Dim != 128 {
		t.Errorf("inspect mine: feature %+v (%s), want the registered flatten, 128-d", f, reg.Info.FeatureError)
	}

	// A names file with a duplicate, or the wrong count, is refused.
	if err := os.WriteFile(names, []byte("a\nb\na\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := job.ModelsAdd(ctx, job.AddOptions{Env: env, File: file, Name: "dup", ClassesFile: names, AddOptions: models.AddOptions{Preset: "imagenet"}}); err == nil {
		t.Error("a duplicate class name was accepted")
	}
}
