// Command facesdemo writes the face dataset the README's face example and
// its figures use: one upright portrait (200x200 PNG) per face found in
// face-api's demo photos (npm @vladmandic/face-api@1.7.15, demo/sample1..6.jpg),
// in OUT/<label>/, where the label is face-api's own expression head's
// answer on the face's aligned crop, folded to "happy" or "other". These
// are pseudo-labels (a model's answers), not human labels: they exercise
// the flow, they do not measure expression accuracy.
//
//	go run ./scripts/facesdemo -models ~/.local/share/headtune/models -photos PHOTOS -out OUT
//
// It needs blazeface and face-expression installed (`headtune models pull`)
// and ONNX Runtime.
package main

import (
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models"
	"github.com/headtune/headtune/models/tfjs"
)

func main() {
	modelsDir := flag.String("models", "", "installed models folder (default: headtune's)")
	photos := flag.String("photos", "", "folder of photos")
	out := flag.String("out", "", "dataset folder to write")
	flag.Parse()
	if err := run(*modelsDir, *photos, *out); err != nil {
		fmt.Fprintln(os.Stderr, "facesdemo:", err)
		os.Exit(1)
	}
}

func run(modelsDir, photos, out string) error {
	if photos == "" || out == "" {
		return fmt.Errorf("-photos and -out are required")
	}
	if modelsDir == "" {
		var err error
		if modelsDir, err = models.DefaultDir(); err != nil {
			return err
		}
	}
	if _, err := ort.Init(""); err != nil {
		return err
	}
	store, err := models.OpenStore(modelsDir)
	if err != nil {
		return err
	}
	det, err := faces.OpenDetector(store, "blazeface", ort.SessionOptions{Threads: 1})
	if err != nil {
		return err
	}
	defer det.Close()
	expr, err := store.Get("face-expression")
	if err != nil {
		return err
	}
	model, err := os.ReadFile(expr.ModelPath())
	if err != nil {
		return err
	}
	sess, err := ort.NewSession(model, ort.SessionSpec{Input: "input_nhwc", InputShape: []int64{112, 112, 3}, Outputs: []string{"probs"}, OutputSizes: []int{7}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		return err
	}
	defer sess.Close()
	spec, err := expr.Meta.Spec()
	if err != nil {
		return err
	}
	spec.Faces = faces.DefaultSpec(det.SHA256())
	paths, err := faces.ListImages([]string{photos})
	if err != nil {
		return err
	}
	in := make([]float32, spec.TensorLen())
	probs := make([]float32, 7)
	n := 0
	for _, p := range paths {
		img, err := imaging.DecodeFile(p, imaging.DecodeOptions{})
		if err != nil {
			return err
		}
		found, err := det.Detect(context.Background(), img, spec.Faces)
		if err != nil {
			return err
		}
		for k, f := range found {
			crop, err := faces.Crop(img, faces.FrameOf(f, spec.Faces), spec.Width, nil)
			if err != nil {
				return err
			}
			if err := faces.Tensor(crop, spec, in); err != nil {
				return err
			}
			if err := sess.Run(context.Background(), in, 1, probs); err != nil {
				return err
			}
			best := 0
			for i := range probs {
				if probs[i] > probs[best] {
					best = i
				}
			}
			label := "other"
			if tfjs.FaceExpressionClasses[best] == "happy" {
				label = "happy"
			}
			pic, err := faces.CropRGB(img, faces.FrameOf(f, imaging.FaceSpec{Margin: 0.6, Align: imaging.AlignNone}), 200)
			if err != nil {
				return err
			}
			dir := filepath.Join(out, label)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			name := filepath.Join(dir, fmt.Sprintf("%s-%d.png", strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)), k))
			w, err := os.Create(name)
			if err != nil {
				return err
			}
			if err := png.Encode(w, pic.Image()); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
			fmt.Printf("%s\t%s\t(face-api: %s %.2f)\n", name, label, tfjs.FaceExpressionClasses[best], probs[best])
			n++
		}
	}
	fmt.Fprintf(os.Stderr, "facesdemo: %d portraits in %s\n", n, out)
	return nil
}
