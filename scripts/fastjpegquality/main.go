// Command fastjpegquality is the quality guard for FastJPEG (DCT-domain
// scaled JPEG decoding through libjpeg-turbo): it extracts backbone features
// of the same JPEGs with the exact path (image/jpeg at full size) and the
// fast path, and
//
//   - for every photo given with -photos, prints the cosine similarity of
//     the two feature vectors (minimum, mean, the worst files);
//   - for a folder-per-class data set given with -probe (train/<class>/ and
//     test/<class>/, as scripts/fashionmnist writes), writes the features of
//     both paths as raw little-endian float32 matrices plus labels into
//     -out, for probe.py (scikit-learn logistic regression) to compare.
//
// The backbone defaults to the offline default, MobileNetV2 blocks 0-10 with
// ImageNet weights (input_nhwc [N,224,224,3] in 0..1, squash resize,
// output gap_block_10_depthwise_relu [N,384]); the reference conversion in
// ../shared/models is used when present.
//
// usage: go run ./scripts/fastjpegquality -photos 'DIR/*.jpg' -probe FM_DIR -out OUT
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/imaging/turbojpeg"
)

func main() {
	model := flag.String("model", "../shared/models/imagenet_mobilenet_v2_100_block10_224.onnx", "backbone ONNX file")
	input := flag.String("input", "input_nhwc", "model input name")
	output := flag.String("output", "gap_block_10_depthwise_relu", "feature output name")
	dim := flag.Int("dim", 384, "feature length")
	ortLib := flag.String("ort-lib", "", "ONNX Runtime library (default: the project's search)")
	photos := flag.String("photos", "", "comma-separated globs of photos for the cosine check")
	probe := flag.String("probe", "", "folder-per-class data set (train/, test/) for the linear probe")
	out := flag.String("out", "fastjpegquality-out", "where the probe features go")
	batch := flag.Int("batch", 16, "images per ONNX Runtime call")
	flag.Parse()
	if err := run(*model, *input, *output, *dim, *ortLib, *photos, *probe, *out, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "fastjpegquality:", err)
		os.Exit(1)
	}
}

type extractor struct {
	sess  *ort.Session
	spec  imaging.Spec
	dim   int
	batch int
	sc    *imaging.Scratch
	in    []float32
	feats []float32
}

// features returns len(paths) x dim features of paths under spec.
func (e *extractor) features(paths []string, spec imaging.Spec) ([]float32, error) {
	n := spec.TensorLen()
	res := make([]float32, 0, len(paths)*e.dim)
	for i := 0; i < len(paths); i += e.batch {
		j := min(len(paths), i+e.batch)
		for k := i; k < j; k++ {
			if err := spec.Load(paths[k], e.in[(k-i)*n:(k-i+1)*n], e.sc); err != nil {
				return nil, err
			}
		}
		if err := e.sess.Run(context.Background(), e.in[:(j-i)*n], j-i, e.feats[:(j-i)*e.dim]); err != nil {
			return nil, fmt.Errorf("run backbone: %w", err)
		}
		res = append(res, e.feats[:(j-i)*e.dim]...)
	}
	return res, nil
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func run(modelPath, input, output string, dim int, ortLib, photos, probe, out string, batch int) error {
	if !turbojpeg.Available() {
		return fmt.Errorf("libturbojpeg not available: %v", turbojpeg.LoadError())
	}
	if _, err := ort.Init(ortLib); err != nil {
		return err
	}
	model, err := os.ReadFile(modelPath)
	if err != nil {
		return fmt.Errorf("read model: %w", err)
	}
	spec, err := imaging.Preset("unit")
	if err != nil {
		return err
	}
	spec = spec.WithInput(224, 224, 3, imaging.LayoutNHWC)
	spec.Resize, spec.ResizeShorter = imaging.ResizeSquash, 0
	fast := spec
	fast.FastJPEG = true
	sess, err := ort.NewSession(model, ort.SessionSpec{
		Input: input, InputShape: []int64{224, 224, 3},
		Outputs: []string{output}, OutputSizes: []int{dim},
	}, ort.SessionOptions{Threads: 2})
	if err != nil {
		return err
	}
	defer sess.Close()
	e := &extractor{sess: sess, spec: spec, dim: dim, batch: batch, sc: imaging.NewScratch(),
		in: make([]float32, batch*spec.TensorLen()), feats: make([]float32, batch*dim)}
	fmt.Printf("libturbojpeg %s; model %s\n", turbojpeg.Path(), modelPath)

	if photos != "" {
		var paths []string
		for _, g := range strings.Split(photos, ",") {
			m, err := filepath.Glob(g)
			if err != nil {
				return err
			}
			paths = append(paths, m...)
		}
		if len(paths) == 0 {
			return fmt.Errorf("no photos match %s", photos)
		}
		exact, err := e.features(paths, spec)
		if err != nil {
			return err
		}
		quick, err := e.features(paths, fast)
		if err != nil {
			return err
		}
		type res struct {
			path string
			cos  float64
		}
		rs := make([]res, len(paths))
		sum := 0.0
		scales := map[string]int{}
		for i, p := range paths {
			rs[i] = res{p, cosine(exact[i*dim:(i+1)*dim], quick[i*dim:(i+1)*dim])}
			sum += rs[i].cos
			if data, err := os.ReadFile(p); err == nil {
				if info, err := turbojpeg.DecodeInfo(data); err == nil {
					scales[turbojpeg.ScaleFor(info.Width, info.Height, 224, 224).String()]++
				}
			}
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].cos < rs[j].cos })
		fmt.Printf("photos: %d files (DCT scales used: %v); feature cosine fast vs exact: min %.5f, mean %.5f\n", len(rs), scales, rs[0].cos, sum/float64(len(rs)))
		for _, r := range rs[:min(3, len(rs))] {
			fmt.Printf("  lowest: %.5f %s\n", r.cos, r.path)
		}
	}

	if probe != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		for _, part := range []string{"train", "test"} {
			classes, err := os.ReadDir(filepath.Join(probe, part))
			if err != nil {
				return err
			}
			var paths []string
			var labels []int32
			for ci, c := range classes {
				m, _ := filepath.Glob(filepath.Join(probe, part, c.Name(), "*.jpg"))
				sort.Strings(m)
				paths = append(paths, m...)
				for range m {
					labels = append(labels, int32(ci))
				}
			}
			if len(paths) == 0 {
				return fmt.Errorf("no JPEGs under %s", filepath.Join(probe, part))
			}
			for _, v := range []struct {
				name string
				s    imaging.Spec
			}{{"exact", spec}, {"fast", fast}} {
				f, err := e.features(paths, v.s)
				if err != nil {
					return err
				}
				if err := writeF32(filepath.Join(out, part+"_"+v.name+".f32"), f); err != nil {
					return err
				}
			}
			lb := make([]byte, 4*len(labels))
			for i, l := range labels {
				binary.LittleEndian.PutUint32(lb[4*i:], uint32(l))
			}
			if err := os.WriteFile(filepath.Join(out, part+"_labels.i32"), lb, 0o644); err != nil {
				return err
			}
			fmt.Printf("probe %s: %d images, features written to %s\n", part, len(paths), out)
		}
		if err := os.WriteFile(filepath.Join(out, "dim"), []byte(fmt.Sprint(dim)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeF32(path string, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
