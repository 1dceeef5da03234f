package faces

import (
	"context"
	"testing"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
)

// BenchmarkFaces measures, in one run on face-api's six sample photos
// (1920 px wide JPEGs, 21 faces at the default recipe), what the face stage
// costs against extracting features of whole images with the same
// backbone (face-expression, 112x112):
//
//   - whole-image: decode, letterbox to 112, backbone: the baseline;
//   - detect: decode and BlazeFace (letterbox 256, run, decode, blend);
//   - align: eye alignment and crop of every face of a decoded image;
//   - faces-e2e: decode, detect, crop and backbone for every face.
//
// ns/op is per image; the per-face metrics divide by the faces found.
// One ONNX Runtime thread per session: the pipeline runs one call per core.
//
//	go test ./faces -run '^$' -bench BenchmarkFaces -count 5
func BenchmarkFaces(b *testing.B) {
	d := detector(b)
	spec := DefaultSpec(d.SHA256())
	ph := testnpm.FacePhotos(b)
	names := sortedKeys(ph)
	data := make([][]byte, len(names))
	imgs := make([]*imaging.RGB, len(names))
	found := make([][]Face, len(names))
	nFaces := 0
	for i, n := range names {
		data[i] = ph[n]
		imgs[i] = decodeBytes(b, n, ph[n])
		fs, err := d.Detect(context.Background(), imgs[i], spec)
		if err != nil {
			b.Fatal(err)
		}
		found[i] = fs
		nFaces += len(fs)
	}
	facesPerImage := float64(nFaces) / float64(len(names))

	m, info, err := tfjs.Build(tfjs.ArchFaceExpression, testnpm.Tarball(b, testnpm.FaceAPI))
	if err != nil {
		b.Fatal(err)
	}
	mb, err := backbone.MarshalModel(m)
	if err != nil {
		b.Fatal(err)
	}
	sess, err := ort.NewSession(mb, ort.SessionSpec{Input: info.InputName, InputShape: []int64{112, 112, 3},
		Outputs: []string{info.FeatureTensor}, OutputSizes: []int{info.FeatureDim}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	whole := info.Spec()
	crop := whole
	crop.Faces = spec
	in := make([]float32, whole.TensorLen())
	out := make([]float32, info.FeatureDim)
	sc := imaging.NewScratch()
	ctx := context.Background()
	var cbuf []float32

	b.Run("whole-image", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if err := whole.LoadBytes(data[i%len(data)], in, sc); err != nil {
				b.Fatal(err)
			}
			if err := sess.Run(ctx, in, 1, out); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("detect", func(b *testing.B) {
		i := 0
		for b.Loop() {
			img, err := imaging.Decode(data[i%len(data)], imaging.DecodeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Detect(ctx, img, spec); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("align", func(b *testing.B) {
		i := 0
		for b.Loop() {
			k := i % len(imgs)
			for _, f := range found[k] {
				if cbuf, err = Crop(imgs[k], FrameOf(f, spec), crop.Width, cbuf); err != nil {
					b.Fatal(err)
				}
				if err := Tensor(cbuf, crop, in); err != nil {
					b.Fatal(err)
				}
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/facesPerImage/1e6, "ms/face")
	})
	b.Run("faces-e2e", func(b *testing.B) {
		i, faces := 0, 0
		for b.Loop() {
			img, err := imaging.Decode(data[i%len(data)], imaging.DecodeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			fs, err := d.Detect(ctx, img, spec)
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range fs {
				if cbuf, err = Crop(img, FrameOf(f, spec), crop.Width, cbuf); err != nil {
					b.Fatal(err)
				}
				if err := Tensor(cbuf, crop, in); err != nil {
					b.Fatal(err)
				}
				if err := sess.Run(ctx, in, 1, out); err != nil {
					b.Fatal(err)
				}
			}
			faces += len(fs)
			i++
		}
		b.ReportMetric(float64(faces)/b.Elapsed().Seconds(), "faces/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(faces, 1))/1e6, "ms/face")
	})
}
