package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/headtune/headtune/head"
)

// TestLastExtractFromAnotherFolder: extract with a relative --cache, then
// train, eval and cache export-npy from another working folder with the
// same cache named by absolute path. The last-extract record must not hold
// paths relative to the folder extract ran in.
func TestLastExtractFromAnotherFolder(t *testing.T) {
	c := newCLI(t)
	writeDataset(t, filepath.Join(c.dir, "ds"), DatasetOptions{Classes: 2, PerClass: 8, Splits: true, Seed: 5})
	writeModel(t, c.dir, "resnet", 32)
	c.ok("--cache", "relcache", "extract", "ds", "--model", "resnet.onnx", "--preset", "imagenet", "--quiet")

	other := *c
	other.dir = filepath.Join(c.dir, "elsewhere")
	if err := os.MkdirAll(other.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(c.dir, "relcache")
	headFile := filepath.Join(c.dir, "h.head")
	if r := other.run("--cache", cache, "train", "--head", headFile, "--quiet"); r.code != 0 {
		t.Fatalf("train from another folder with the extract's cache: %v", r)
	}
	if r := other.run("--cache", cache, "eval", "--head", headFile, "--quiet"); r.code != 0 {
		t.Fatalf("eval from another folder with the extract's cache: %v", r)
	}
	out := filepath.Join(c.dir, "npy")
	if r := other.run("--cache", cache, "cache", "export-npy", "--out", out, "--quiet"); r.code != 0 {
		t.Fatalf("cache export-npy from another folder with the extract's cache: %v", r)
	}
	if ents, err := os.ReadDir(out); err != nil || len(ents) == 0 {
		t.Fatalf("cache export-npy wrote nothing to %s (%v)", out, err)
	}

	// Scripts read the record too: its paths must name existing files from
	// any folder.
	var rec struct {
		Dataset  string `json:"dataset"`
		CacheDir string `json:"cache_dir"`
		View     string `json:"view"`
	}
	data, err := os.ReadFile(filepath.Join(cache, "last-extract.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rec.Dataset, rec.CacheDir, rec.View} {
		if !filepath.IsAbs(p) {
			t.Errorf("last-extract.json records %q, relative to the folder extract ran in", p)
		}
	}
}

// TestTrainOnViewThenPredict: a head trained with --view names the backbone
// the view's features came from, so predict can run it.
func TestTrainOnViewThenPredict(t *testing.T) {
	c := newCLI(t)
	writeDataset(t, filepath.Join(c.dir, "ds"), DatasetOptions{Classes: 2, PerClass: 8, Seed: 6})
	model := writeModel(t, c.dir, "resnet", 32)
	sum := parseExtract(t, c.ok("extract", "ds", "--model", model, "--preset", "imagenet", "--json", "--quiet"))
	if sum.View == "" {
		t.Fatal("extract --json names no view")
	}
	c.ok("train", "--view", sum.View, "--head", "h.head", "--quiet")
	h, err := head.Load(filepath.Join(c.dir, "h.head"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Backbone.ID != model {
		t.Errorf("head trained on --view names backbone %q, want %q", h.Backbone.ID, model)
	}
	if r := c.run("predict", "--head", "h.head", "ds/red", "--quiet"); r.code != 0 {
		t.Fatalf("predict with a head trained on --view: %v", r)
	}
}

// TestTrainOnViewOldCache: a cache written before identity folders kept
// their extraction's record, whose root record names another backbone, still
// yields a head that names the view's backbone: the installed model with the
// features' model hash; and with no such model, train refuses in one line
// instead of writing a head nobody can run.
func TestTrainOnViewOldCache(t *testing.T) {
	c := newCLI(t)
	writeDataset(t, filepath.Join(c.dir, "ds"), DatasetOptions{Classes: 2, PerClass: 8, Seed: 7})
	c.ok("models", "add", writeModel(t, c.dir, "resnet", 32), "--name", "mine", "--preset", "imagenet")
	sum := parseExtract(t, c.ok("extract", "ds", "--model", "mine", "--json", "--quiet"))
	// Another backbone's extraction takes the root record.
	c.ok("extract", "ds", "--model", writeModel(t, c.dir, "mobilenet", 32), "--preset", "imagenet", "--quiet")
	if err := os.Remove(filepath.Join(filepath.Dir(filepath.Dir(sum.View)), "last-extract.json")); err != nil {
		t.Fatalf("the identity folder keeps no extraction record: %v", err)
	}
	c.ok("train", "--view", sum.View, "--head", "h.head", "--quiet")
	h, err := head.Load(filepath.Join(c.dir, "h.head"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Backbone.ID != "mine" {
		t.Errorf("head trained on an old cache's view names backbone %q, want the installed model with its hash, mine", h.Backbone.ID)
	}
	c.ok("predict", "--head", "h.head", "ds/red", "--quiet")

	c.ok("models", "remove", "mine")
	r := c.run("train", "--view", sum.View, "--head", "h2.head", "--quiet")
	if r.code == 0 {
		t.Fatalf("train on a view whose backbone nobody can name succeeded: %v", r)
	}
	oneLineError(t, r, "does not record which backbone")
	if _, err := os.Stat(filepath.Join(c.dir, "h2.head")); err == nil {
		t.Error("train wrote a head although it could not name its backbone")
	}
}
