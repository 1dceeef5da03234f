package job

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/atomicfile"
	"github.com/headtune/headtune/pipeline"
)

// AugmentRecord is written beside a dataset's view by Extract with
// Augment > 0 and read by Train: where the augmented views of the training
// images are cached and which image each view was made from.
type AugmentRecord struct {
	Views int                 `json:"views"` // per training image
	Seed  int64               `json:"seed"`
	Spec  imaging.AugmentSpec `json:"spec"`
	View  string              `json:"view"` // the view file of the augmented images
	Dir   string              `json:"dir"`  // where the augmented images are
	// Sources maps an augmented file (relative to Dir) to the absolute path
	// of the image it was made from.
	Sources map[string]string `json:"sources"`
}

// augmentRecordPath is where the record of a dataset view lives.
func augmentRecordPath(view string) string { return strings.TrimSuffix(view, ".csv") + ".augment.json" }

// ReadAugmentRecord returns the augmentation record of a view, or nil when
// the view was extracted without --augment.
func ReadAugmentRecord(view string) (*AugmentRecord, error) {
	b, err := os.ReadFile(augmentRecordPath(view))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r AugmentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", augmentRecordPath(view), err)
	}
	return &r, nil
}

// augmentDataset writes n augmented views of every training image of ds
// (split "train" or none: val/ and test/ images never get views) as PNG
// files with a path,label,split manifest under dir. The views depend only
// on the source pixels, its path, n, seed and spec, so a second run writes
// the same bytes and their features come from the cache.
func augmentDataset(ds *imaging.Dataset, dir string, n int, seed int64, spec imaging.AugmentSpec) (manifest string, sources map[string]string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	sources = map[string]string{}
	var rows [][]string
	for _, s := range ds.Samples {
		if s.Split != "" && s.Split != "train" {
			continue
		}
		abs, err := filepath.Abs(s.Path)
		if err != nil {
			return "", nil, err
		}
		img, err := imaging.DecodeFile(s.Path, imaging.DecodeOptions{})
		if err != nil {
			continue // extract reports unreadable files itself
		}
		h := sha256.Sum256([]byte(abs))
		for k := 0; k < n; k++ {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(k)<<56^uint64(h[0])<<48^uint64(h[1])<<40^uint64(h[2])<<32^uint64(h[3])<<24))
			v := imaging.Augment(img, spec, rng)
			name := fmt.Sprintf("%s-%d.png", hex.EncodeToString(h[:8]), k)
			if err := writePNG(filepath.Join(dir, name), v); err != nil {
				return "", nil, err
			}
			sources[name] = abs
			rows = append(rows, []string{name, s.Label, "train"})
		}
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"path", "label", "split"})
	w.WriteAll(rows)
	manifest = filepath.Join(dir, "manifest.csv")
	if err := atomicfile.Write(manifest, b.Bytes()); err != nil {
		return "", nil, err
	}
	return manifest, sources, nil
}

func writePNG(path string, v *imaging.RGB) error {
	img := image.NewNRGBA(image.Rect(0, 0, v.W, v.H))
	for i := 0; i < v.W*v.H; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = v.Pix[3*i], v.Pix[3*i+1], v.Pix[3*i+2], 255
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	return atomicfile.Write(path, b.Bytes())
}

// extractAugmented writes and extracts the views of ds's training images
// and records them beside the dataset's view.
func (opt ExtractOptions) extractAugmented(ctx context.Context, bb *pipeline.Backbone, ds *imaging.Dataset, root, view string) (*pipeline.ExtractSummary, float64, error) {
	seed := opt.AugmentSeed
	dir := filepath.Join(root, "augment", fmt.Sprintf("%s-n%d-s%d", pipeline.ViewName(ds.Root), opt.Augment, seed))
	start := time.Now()
	manifest, sources, err := augmentDataset(ds, dir, opt.Augment, seed, imaging.DefaultAugment)
	if err != nil {
		return nil, 0, fmt.Errorf("augment %s: %w", ds.Root, err)
	}
	made := time.Since(start).Seconds()
	ads, err := imaging.OpenDataset(manifest)
	if err != nil {
		return nil, made, fmt.Errorf("augment %s: %w", ds.Root, err)
	}
	sum, err := pipeline.Extract(ctx, bb, ads, pipeline.ExtractOptions{
		CacheRoot: root, BatchSize: opt.BatchSize, Workers: opt.Workers, WaitLock: opt.WaitLock,
		KeepLastRun: true, Progress: opt.Progress, OnSkip: opt.OnSkip,
	})
	if err != nil {
		return sum, made, err
	}
	rec := AugmentRecord{Views: opt.Augment, Seed: seed, Spec: imaging.DefaultAugment, View: sum.View, Dir: dir, Sources: sources}
	b, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return sum, made, err
	}
	return sum, made, atomicfile.Write(augmentRecordPath(view), b)
}

// AugmentedFeatures loads the augmented views recorded for f's view and
// returns a feature matrix holding f's rows then the views', and for each
// view its row and its source's row. Views whose source is no longer in
// the view are dropped.
func AugmentedFeatures(root string, f *pipeline.Features) (X []float32, n int, views, viewOf []int, rec *AugmentRecord, err error) {
	rec, err = ReadAugmentRecord(f.Run.View)
	if err != nil || rec == nil {
		return f.X, f.N, nil, nil, nil, err
	}
	af, err := pipeline.LoadFeatures(root, rec.View)
	if err != nil {
		return nil, 0, nil, nil, nil, fmt.Errorf("augmented views of %s: %w (extract again with --augment)", f.Run.Dataset, err)
	}
	if af.D != f.D {
		return nil, 0, nil, nil, nil, fmt.Errorf("augmented views have %d features, the images %d: extract again with --augment", af.D, f.D)
	}
	byAbs := map[string]int{}
	for i, p := range f.Paths {
		for _, base := range []string{f.Run.Dataset, filepath.Dir(f.Run.Dataset)} {
			if a, err := filepath.Abs(filepath.Join(base, p)); err == nil {
				byAbs[a] = i
			}
		}
		if filepath.IsAbs(p) {
			byAbs[p] = i
		}
	}
	X = append(append([]float32(nil), f.X...), af.X...)
	for j, p := range af.Paths {
		src, ok := rec.Sources[filepath.ToSlash(filepath.Base(p))]
		if !ok {
			continue
		}
		i, ok := byAbs[src]
		if !ok {
			continue
		}
		views = append(views, f.N+j)
		viewOf = append(viewOf, i)
	}
	return X, f.N + af.N, views, viewOf, rec, nil
}
