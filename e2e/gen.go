// Package e2e holds the end-to-end, crash and reliability tests of the
// headtune command: they build bin/headtune once (TestMain), run it as a
// child process on generated datasets and generated ONNX backbones, and
// check what it leaves on disk (feature cache, head, export, predictions)
// against direct library calls. This file holds the few generators the
// tests share; the package has no other non-test code.
//
// The tests, by file:
//
//   - extract_test.go: cached features equal a direct ONNX Runtime session
//     bit for bit (any worker count, same batches) and within 1e-5 across
//     batch sizes and thread counts; incremental re-runs, renames, removals
//     and changes.
//   - crash_test.go: extract and `predict --resume` SIGKILLed at seeded
//     random moments (HEADTUNE_CRASH_SEED, HEADTUNE_CRASH_KILLS; 50 extract
//     kills by default, 10 with -short).
//   - concurrency_test.go: two extracts on one cache; stale locks.
//   - repair_test.go: damaged rows found, refused by train, repaired and
//     recomputed; SIGINT; a --wait-lock extract taking over from a killed
//     holder.
//   - diskfull_test.go: a full 2 MiB tmpfs, a read-only file system (root
//     only; skipped otherwise), and train/export killed mid-write.
//   - hostile_test.go, hostile_model_test.go: broken images, special files,
//     broken models, heads, exports and manifests.
//   - flow_test.go: extract, train, eval, predict, export, predict with the
//     export.
//   - resource_test.go: peak RSS, open descriptors and threads for 200 vs
//     2,000 images; 1k/10k/100k with HEADTUNE_LONG=1.
//   - roughedges_test.go: what a new user tripped over (issue 12): the
//     --tune-layers path, recorded splits, flag meanings, unknown names,
//     head and ONNX Runtime errors, inspect on an export, output formats;
//     scripts/lib.sh.
//
// Bugs found in other packages are listed in BUGS.md. A test that meets
// the bug it tests fails (naming "BUGS.md #N"); it never skips.
package e2e

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/internal/testmodels"
)

// DatasetOptions describes a generated labelled image dataset.
type DatasetOptions struct {
	Classes  int    // number of class folders (at most len(ClassNames)); default 3
	PerClass int    // images per class; default 10
	Width    int    // image width in pixels; default 40
	Height   int    // image height in pixels; default 32
	Format   string // "png" (default) or "jpeg"
	Seed     uint64 // seeds the per-pixel noise; the same options give the same bytes
	// Splits, when set, puts the images under train/, val/ and test/ split
	// folders (60/20/20 by index within each class) instead of directly
	// under the class folders.
	Splits bool
	// LabelNoise is the fraction of images (0..1) drawn with a random other
	// class's pattern while filed under their own class, so that a trained
	// head gives probabilities well inside (0, 1) instead of saturating.
	LabelNoise float64
}

// ClassNames are the class folder names WriteDataset uses, in class order.
var ClassNames = []string{"red", "green", "blue", "stripes", "checks"}

// WriteDataset writes a dataset under root (created if needed) as
// root/[split/]class/img_NNNN.ext and returns the paths written, class by
// class. Class c is drawn by ClassImage, so a linear head on any
// reasonable backbone separates the classes.
func WriteDataset(root string, opt DatasetOptions) ([]string, error) {
	if opt.Classes <= 0 {
		opt.Classes = 3
	}
	if opt.Classes > len(ClassNames) {
		return nil, fmt.Errorf("write dataset %s: %d classes asked, at most %d", root, opt.Classes, len(ClassNames))
	}
	if opt.PerClass <= 0 {
		opt.PerClass = 10
	}
	if opt.Width <= 0 {
		opt.Width = 40
	}
	if opt.Height <= 0 {
		opt.Height = 32
	}
	ext := ".png"
	if opt.Format == "jpeg" || opt.Format == "jpg" {
		ext = ".jpg"
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x5eed))
	img := image.NewRGBA(image.Rect(0, 0, opt.Width, opt.Height))
	var buf bytes.Buffer
	var paths []string
	for c := 0; c < opt.Classes; c++ {
		for i := 0; i < opt.PerClass; i++ {
			dir := filepath.Join(root, ClassNames[c])
			if opt.Splits {
				split := "train"
				switch i % 5 {
				case 3:
					split = "val"
				case 4:
					split = "test"
				}
				dir = filepath.Join(root, split, ClassNames[c])
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("write dataset: %w", err)
			}
			drawn := c
			if opt.LabelNoise > 0 && opt.Classes > 1 && rng.Float64() < opt.LabelNoise {
				drawn = (c + 1 + rng.IntN(opt.Classes-1)) % opt.Classes
			}
			DrawClass(img, drawn, rng)
			buf.Reset()
			var err error
			if ext == ".jpg" {
				err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
			} else {
				err = png.Encode(&buf, img)
			}
			if err != nil {
				return nil, fmt.Errorf("write dataset: encode: %w", err)
			}
			p := filepath.Join(dir, fmt.Sprintf("img_%04d%s", i, ext))
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				return nil, fmt.Errorf("write dataset: %w", err)
			}
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// DrawClass paints img (any size) with the pattern of class c plus noise
// from rng: classes 0-2 are noisy red, green and blue fields, 3 is
// horizontal stripes, 4 a checkerboard. It writes img.Pix in place.
func DrawClass(img *image.RGBA, c int, rng *rand.Rand) {
	b := img.Bounds()
	base := [5]color.RGBA{{200, 40, 40, 255}, {40, 200, 40, 255}, {40, 40, 200, 255}, {128, 128, 128, 255}, {128, 128, 128, 255}}[c%5]
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := img.Pix[(y-b.Min.Y)*img.Stride:]
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl := int(base.R), int(base.G), int(base.B)
			switch c % 5 {
			case 3:
				if (y/3)%2 == 0 {
					r, g, bl = 230, 230, 230
				} else {
					r, g, bl = 20, 20, 20
				}
			case 4:
				if ((x/4)+(y/4))%2 == 0 {
					r, g, bl = 230, 230, 230
				} else {
					r, g, bl = 20, 20, 20
				}
			}
			n := rng.IntN(61) - 30
			o := (x - b.Min.X) * 4
			row[o] = clamp8(r + n)
			row[o+1] = clamp8(g + rng.IntN(61) - 30)
			row[o+2] = clamp8(bl + rng.IntN(61) - 30)
			row[o+3] = 255
		}
	}
}

func clamp8(v int) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// WriteBackbone writes testmodels.Model(kind, size) to path (atomically):
// a small generated CNN taking size x size RGB images, fast enough that the
// tests are bound by process start-up and decoding, not inference.
func WriteBackbone(path, kind string, size int) error {
	if err := backbone.WriteModelFile(path, testmodels.Model(kind, size)); err != nil {
		return fmt.Errorf("write test backbone %s: %w", path, err)
	}
	return nil
}
