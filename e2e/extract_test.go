package e2e

import (
	"context"
	"encoding/json"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
)

var initORT sync.Once

// directFeatures runs the model at modelPath cut at its detected feature
// tensor in this process, on spec.Load tensors of paths, batch images per
// ONNX Runtime call, and returns path -> features. It shares no code with
// the pipeline package beyond backbone and imaging.
func directFeatures(t *testing.T, modelPath string, spec imaging.Spec, paths []string, batch int) map[string][]float32 {
	t.Helper()
	var initErr error
	initORT.Do(func() { _, initErr = ort.Init(ortLib) })
	if initErr != nil {
		t.Fatalf("init ONNX Runtime %s: %v", ortLib, initErr)
	}
	m, err := backbone.ReadModelFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := backbone.ImageInput(m)
	if err != nil {
		t.Fatal(err)
	}
	in := img.Name
	choice, err := backbone.FindFeatureTensor(m, "")
	if err != nil {
		t.Fatal(err)
	}
	cut, err := backbone.CutAtFeature(m, choice)
	if err != nil {
		t.Fatal(err)
	}
	data, err := backbone.MarshalModel(cut)
	if err != nil {
		t.Fatal(err)
	}
	shape := spec.InputShape()
	dim := int(choice.Dim)
	s, err := ort.NewSession(data, ort.SessionSpec{Input: in, InputShape: shape, Outputs: []string{backbone.FeatureOutput}, OutputSizes: []int{dim}},
		ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := spec.TensorLen()
	input := make([]float32, batch*n)
	outs := make([]float32, batch*dim)
	var sc imaging.Scratch
	res := map[string][]float32{}
	for lo := 0; lo < len(paths); lo += batch {
		hi := min(lo+batch, len(paths))
		for i := lo; i < hi; i++ {
			if err := spec.Load(paths[i], input[(i-lo)*n:(i-lo+1)*n], &sc); err != nil {
				t.Fatal(err)
			}
		}
		k := hi - lo
		if err := s.Run(context.Background(), input[:k*n], k, outs[:k*dim]); err != nil {
			t.Fatal(err)
		}
		for i := lo; i < hi; i++ {
			res[paths[i]] = append([]float32(nil), outs[(i-lo)*dim:(i-lo+1)*dim]...)
		}
	}
	return res
}

// identityOf reads the identity a cache folder records.
func identityOf(t *testing.T, cacheDir string) featcache.Identity {
	t.Helper()
	r, err := featcache.OpenDir(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return r.Identity()
}

// TestExtractMatchesSession is issue 2's integration test: extract on a
// generated dataset with a generated CNN, and the cached features equal a
// direct session run on imaging.Spec.Load tensors: bit for bit for the same
// batch composition and any worker count, within 1e-5 across batch sizes.
func TestExtractMatchesSession(t *testing.T) {
	// A real network (the reference MobileNetV2 cut at block 10, beside
	// the checkout) shows how much ONNX Runtime's kernels differ across
	// batch sizes; the generated ones are too small to differ.
	shared := filepath.Join("..", "..", "shared", "models", "imagenet_mobilenet_v2_100_block10_224.onnx")
	for _, tc := range []struct{ kind, file, preset string }{
		{"resnet", "", "imagenet"}, {"keras", "", "imagenet"}, {"mobilenet", "", "imagenet"},
		{"shared-mobilenetv2-block10", shared, "unit"},
	} {
		kind := tc.kind
		t.Run(kind, func(t *testing.T) {
			c := newCLI(t)
			ds := filepath.Join(c.dir, "ds")
			// 26 images: with --batch 8 the last batch holds 2.
			writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: 13, Width: 45, Height: 30, Seed: 7})
			model := tc.file
			if model == "" {
				model = writeModel(t, c.dir, kind, 32)
			} else if abs, err := filepath.Abs(model); err != nil {
				t.Fatal(err)
			} else if _, err := os.Stat(abs); err != nil {
				testasset.Skip(t, "reference model not available: %v", err)
			} else {
				model = abs
			}
			dset, err := imaging.OpenDataset(ds)
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, s := range dset.Samples {
				paths = append(paths, s.Path)
			}

			runs := []struct {
				name                    string
				workers, batch, threads int
			}{{"w1b8", 1, 8, 1}, {"w3b8", 3, 8, 1}, {"w1b1", 1, 1, 1}, {"w2b1", 2, 1, 1}, {"w1b8t2", 1, 8, 2}}
			feats := map[string]map[string][]float32{}
			for _, r := range runs {
				cache := filepath.Join(c.dir, "cache-"+r.name)
				sum := parseExtract(t, c.ok("--threads", strconv.Itoa(r.threads), "extract", ds, "--model", model, "--preset", tc.preset, "--cache", cache, "--json", "--quiet",
					"--workers", strconv.Itoa(r.workers), "--batch", strconv.Itoa(r.batch)))
				if sum.Images != len(paths) || sum.Computed != len(paths) || sum.Skipped != 0 {
					t.Fatalf("%s: summary %+v, want %d computed", r.name, sum, len(paths))
				}
				id := identityOf(t, sum.CacheDir)
				raw, _ := os.ReadFile(model)
				if id.ModelHash != backbone.ModelHash(raw) {
					t.Errorf("%s: cache identity model hash %s, file hash %s", r.name, id.ModelHash, backbone.ModelHash(raw))
				}
				got, _ := cachedFeatures(t, sum.View)
				// Key the features by absolute path like the direct run.
				abs := map[string][]float32{}
				for p, v := range got {
					abs[filepath.Join(ds, p)] = v
				}
				feats[r.name] = abs
				if r.name == "w1b8" || r.name == "w1b1" {
					spec, err := imaging.ParseSpec(id.Preprocess)
					if err != nil {
						t.Fatalf("cache %s: recorded preprocessing: %v", sum.CacheDir, err)
					}
					direct := directFeatures(t, model, spec, paths, r.batch)
					for _, p := range paths {
						if d, same := maxAbsDiff(abs[p], direct[p]); !same {
							t.Errorf("%s %s: cached features differ from a direct session run with the same batches (max |diff| %.3g)", r.name, p, d)
						}
					}
				}
			}
			for _, pair := range [][2]string{{"w1b8", "w3b8"}, {"w1b1", "w2b1"}} {
				for _, p := range paths {
					if d, same := maxAbsDiff(feats[pair[0]][p], feats[pair[1]][p]); !same {
						t.Errorf("%s vs %s, %s: not bit for bit (max |diff| %.3g)", pair[0], pair[1], p, d)
					}
				}
			}
			for _, pair := range [][3]string{{"w1b8", "w1b1", "batch 8 vs batch 1"}, {"w1b8", "w1b8t2", "1 vs 2 ORT threads"}} {
				worst := 0.0
				for _, p := range paths {
					d, _ := maxAbsDiff(feats[pair[0]][p], feats[pair[1]][p])
					worst = max(worst, d)
				}
				t.Logf("%s: max |feature diff| %s: %.3g", kind, pair[2], worst)
				if worst > 1e-5 {
					t.Errorf("%s: features differ by %.3g > 1e-5 (%s)", kind, worst, pair[2])
				}
			}
		})
	}
}

// TestExtractIncremental: a re-run reuses everything, a renamed file reuses
// its features, a removed file drops out of the view, a changed file is
// recomputed.
func TestExtractIncremental(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	paths := writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 6, Seed: 3})
	model := writeModel(t, c.dir, "resnet", 32)
	extract := func() extractSummary {
		return parseExtract(t, c.ok("extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet", "--batch", "4"))
	}
	first := extract()
	if first.Computed != len(paths) {
		t.Fatalf("first run computed %d of %d", first.Computed, len(paths))
	}
	before, _ := cachedFeatures(t, first.View)

	renamedFrom, renamedTo := paths[0], filepath.Join(filepath.Dir(paths[0]), "renamed.png")
	removed := paths[1]
	changed := paths[2]
	steps := []struct {
		name             string
		do               func()
		computed, images int
		check            func(after map[string][]float32)
	}{
		{"rerun", func() {}, 0, len(paths), func(after map[string][]float32) {
			for p, v := range before {
				if _, same := maxAbsDiff(v, after[p]); !same {
					t.Errorf("rerun: features of %s changed", p)
				}
			}
		}},
		{"rename", func() {
			if err := os.Rename(renamedFrom, renamedTo); err != nil {
				t.Fatal(err)
			}
		}, 0, len(paths), func(after map[string][]float32) {
			oldRel, _ := filepath.Rel(ds, renamedFrom)
			newRel, _ := filepath.Rel(ds, renamedTo)
			if _, ok := after[oldRel]; ok {
				t.Errorf("rename: the view still lists %s", oldRel)
			}
			if _, same := maxAbsDiff(before[oldRel], after[newRel]); !same {
				t.Errorf("rename: %s does not carry the features of %s", newRel, oldRel)
			}
		}},
		{"remove", func() {
			if err := os.Remove(removed); err != nil {
				t.Fatal(err)
			}
		}, 0, len(paths) - 1, func(after map[string][]float32) {
			rel, _ := filepath.Rel(ds, removed)
			if _, ok := after[rel]; ok {
				t.Errorf("remove: the view still lists %s", rel)
			}
		}},
		{"change", func() {
			img := image.NewRGBA(image.Rect(0, 0, 40, 32))
			DrawClass(img, 3, rand.New(rand.NewPCG(99, 1)))
			f, err := os.Create(changed)
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(f, img)
			f.Close()
		}, 1, len(paths) - 1, func(after map[string][]float32) {
			rel, _ := filepath.Rel(ds, changed)
			if _, same := maxAbsDiff(before[rel], after[rel]); same {
				t.Errorf("change: %s still has its old features", rel)
			}
		}},
	}
	for _, st := range steps {
		st.do()
		sum := extract()
		if sum.Computed != st.computed || sum.Images != st.images || sum.Reused != st.images-st.computed {
			t.Errorf("%s: images %d computed %d reused %d; want images %d computed %d", st.name, sum.Images, sum.Computed, sum.Reused, st.images, st.computed)
		}
		after, entries := cachedFeatures(t, sum.View)
		if len(entries) != st.images {
			t.Errorf("%s: view lists %d images, want %d", st.name, len(entries), st.images)
		}
		st.check(after)
	}
	// The cache verifies and keeps one row per distinct content.
	r := c.ok("cache", "verify", "--json")
	var reps []featcache.VerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil || len(reps) != 1 {
		t.Fatalf("cache verify --json: %v %q", err, r.stdout)
	}
	if reps[0].Records != len(paths)+1 || reps[0].Duplicates != 0 {
		t.Errorf("cache holds %d records (%d duplicates), want %d distinct contents", reps[0].Records, reps[0].Duplicates, len(paths)+1)
	}
}
