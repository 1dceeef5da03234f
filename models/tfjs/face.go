package tfjs

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/headtune/headtune/backbone"
)

// faceMeanRGB is what face-api's FaceFeatureExtractor subtracts from 0..255
// RGB pixels before dividing by 255.
var faceMeanRGB = [3]float32{122.782, 117.001, 104.298}

// FaceExpressionClasses are face-api's expression classes in the order of
// its classifier's outputs. Read-only; Info.Classes holds a copy.
var FaceExpressionClasses = []string{"neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"}

// faceNet builds face-api's FaceExpressionNet (FaceFeatureExtractor plus its
// fully connected expression classifier) from its weight map. The graph
// takes input_nhwc [N, 112, 112, 3] in 0..255 RGB, as face-api does after
// its own resize, and outputs "features" [N, 256] (the 7x7 average pool of
// the last dense block) and "probs" [N, 7] (softmax of the classifier).
func faceNet(w *Weights, inputName string) (*backbone.Builder, error) {
	return faceNetHead(w, inputName, "face_expression", len(FaceExpressionClasses), true)
}

// faceNetHead is faceNet with a fully connected layer of nOut outputs,
// as "probs" through a softmax, or raw as "landmarks" (face-api's
// FaceLandmark68Net: the same extractor, 136 outputs).
func faceNetHead(w *Weights, inputName, graphName string, nOut int, softmax bool) (*backbone.Builder, error) {
	const size = 112
	f := &faceBuilder{b: backbone.NewBuilder(graphName), w: w}
	b := f.b
	b.Input(inputName, -1, size, size, 3)
	x := b.Op("Transpose", "to_nchw", []string{inputName}, backbone.AttrInts("perm", 0, 3, 1, 2))
	mean := b.Initializer("mean_rgb", []int64{1, 3, 1, 1}, faceMeanRGB[:])
	x = b.Op("Sub", "sub_mean", []string{x, mean})
	x = b.Op("Div", "div255", []string{x, b.Initializer("s255", nil, []float32{255})})
	v := val{name: x, c: 3, h: size, w: size}
	var err error
	for i, ch := range []int{32, 64, 128, 256} {
		if v, err = f.denseBlock4(v, fmt.Sprintf("dense%d", i), ch, i == 0); err != nil {
			return nil, err
		}
	}
	if v.h != 7 || v.w != 7 {
		return nil, fmt.Errorf("face feature map is %dx%d, expected 7x7", v.h, v.w)
	}
	p := b.Op("AveragePool", "avgpool", []string{v.name},
		backbone.AttrInts("kernel_shape", 7, 7), backbone.AttrInts("strides", 2, 2), backbone.AttrInts("pads", 0, 0, 0, 0))
	b.Node("Flatten", []string{p}, []string{"features"}, backbone.AttrInt("axis", 1))
	fw, err := f.weight("fc/weights", v.c, nOut)
	if err != nil {
		return nil, err
	}
	fb, err := f.weight("fc/bias", nOut)
	if err != nil {
		return nil, err
	}
	n := int64(nOut)
	logits := b.Op("MatMul", "fc_matmul", []string{"features", b.Initializer("fc/weights", []int64{int64(v.c), n}, fw.Data)})
	b.Output("features", -1, int64(v.c))
	if !softmax {
		b.Node("Add", []string{logits, b.Initializer("fc/bias", []int64{n}, fb.Data)}, []string{"landmarks"})
		b.Output("landmarks", -1, n)
		return b, nil
	}
	logits = b.Op("Add", "logits", []string{logits, b.Initializer("fc/bias", []int64{n}, fb.Data)})
	b.Node("Softmax", []string{logits}, []string{"probs"}, backbone.AttrInt("axis", 1))
	b.Output("probs", -1, n)
	return b, nil
}

type faceBuilder struct {
	b *backbone.Builder
	w *Weights
}

func (f *faceBuilder) weight(name string, shape ...int) (*Tensor, error) {
	t, err := f.w.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("face-api %w", err)
	}
	if shape != nil && fmt.Sprint(t.Shape) != fmt.Sprint(shape) {
		return nil, fmt.Errorf("face-api weight %q has shape %v, expected %v", name, t.Shape, shape)
	}
	return t, nil
}

// denseBlock4 is face-api's denseBlock4 with isScaleDown: out1 = relu(conv0
// stride 2), out2..out4 depthwise-separable convs fed with the relu of the
// running sums, result relu(out1 + (out2 + (out3 + out4))) (TF.js's
// addition order).
func (f *faceBuilder) denseBlock4(x val, prefix string, outC int, first bool) (val, error) {
	b := f.b
	var out1 val
	var err error
	if first {
		out1, err = f.conv(x, prefix+"/conv0", outC)
	} else {
		out1, err = f.sepConv(x, prefix+"/conv0", outC, 2)
	}
	if err != nil {
		return val{}, err
	}
	out1.name = b.Op("Relu", prefix+"_out1", []string{out1.name})
	out2, err := f.sepConv(out1, prefix+"/conv1", outC, 1)
	if err != nil {
		return val{}, err
	}
	in3 := out1
	in3.name = b.Op("Relu", prefix+"_in3", []string{b.Op("Add", prefix+"_sum12", []string{out1.name, out2.name})})
	out3, err := f.sepConv(in3, prefix+"/conv2", outC, 1)
	if err != nil {
		return val{}, err
	}
	s23 := b.Op("Add", prefix+"_sum23", []string{out2.name, out3.name})
	in4 := out1
	in4.name = b.Op("Relu", prefix+"_in4", []string{b.Op("Add", prefix+"_sum123", []string{out1.name, s23})})
	out4, err := f.sepConv(in4, prefix+"/conv3", outC, 1)
	if err != nil {
		return val{}, err
	}
	s34 := b.Op("Add", prefix+"_sum34", []string{out3.name, out4.name})
	s234 := b.Op("Add", prefix+"_sum234", []string{out2.name, s34})
	res := out1
	res.name = b.Op("Relu", prefix, []string{b.Op("Add", prefix+"_sum1234", []string{out1.name, s234})})
	return res, nil
}

// conv is tf.conv2d(x, filters, 2, 'same') + bias.
func (f *faceBuilder) conv(x val, prefix string, outC int) (val, error) {
	k, err := f.weight(prefix+"/filters", 3, 3, x.c, outC)
	if err != nil {
		return val{}, err
	}
	bias, err := f.weight(prefix+"/bias", outC)
	if err != nil {
		return val{}, err
	}
	g, err := window(x, []int{3, 3}, []int{2, 2}, []int{1, 1}, "same")
	if err != nil {
		return val{}, err
	}
	w := make([]float32, len(k.Data))
	for y := range 3 {
		for xx := range 3 {
			for i := range x.c {
				for o := range outC {
					w[((o*x.c+i)*3+y)*3+xx] = k.Data[((y*3+xx)*x.c+i)*outC+o]
				}
			}
		}
	}
	out := f.b.Op("Conv", prefix, []string{x.name,
		f.b.Initializer(prefix+"/W", []int64{int64(outC), int64(x.c), 3, 3}, w),
		f.b.Initializer(prefix+"/B", []int64{int64(outC)}, bias.Data)},
		backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", 2, 2), backbone.AttrInts("pads", g.pads[:]...))
	return val{name: out, c: outC, h: g.oh, w: g.ow}, nil
}

// sepConv is tf.separableConv2d(x, depthwise 3x3, pointwise 1x1, stride,
// 'same') + bias.
func (f *faceBuilder) sepConv(x val, prefix string, outC, stride int) (val, error) {
	dw, err := f.weight(prefix+"/depthwise_filter", 3, 3, x.c, 1)
	if err != nil {
		return val{}, err
	}
	pw, err := f.weight(prefix+"/pointwise_filter", 1, 1, x.c, outC)
	if err != nil {
		return val{}, err
	}
	bias, err := f.weight(prefix+"/bias", outC)
	if err != nil {
		return val{}, err
	}
	g, err := window(x, []int{3, 3}, []int{stride, stride}, []int{1, 1}, "same")
	if err != nil {
		return val{}, err
	}
	dwW := make([]float32, len(dw.Data))
	for y := range 3 {
		for xx := range 3 {
			for i := range x.c {
				dwW[(i*3+y)*3+xx] = dw.Data[(y*3+xx)*x.c+i]
			}
		}
	}
	pwW := make([]float32, len(pw.Data))
	for i := range x.c {
		for o := range outC {
			pwW[o*x.c+i] = pw.Data[i*outC+o]
		}
	}
	d := f.b.Op("Conv", prefix+"_dw", []string{x.name, f.b.Initializer(prefix+"/depthwise", []int64{int64(x.c), 1, 3, 3}, dwW)},
		backbone.AttrInts("kernel_shape", 3, 3), backbone.AttrInts("strides", int64(stride), int64(stride)),
		backbone.AttrInts("pads", g.pads[:]...), backbone.AttrInt("group", int64(x.c)))
	p := f.b.Op("Conv", prefix, []string{d,
		f.b.Initializer(prefix+"/pointwise", []int64{int64(outC), int64(x.c), 1, 1}, pwW),
		f.b.Initializer(prefix+"/B", []int64{int64(outC)}, bias.Data)},
		backbone.AttrInts("kernel_shape", 1, 1))
	return val{name: p, c: outC, h: g.oh, w: g.ow}, nil
}

// BuildFaceLandmarks builds face-api's FaceLandmark68Net from its tarball
// (@vladmandic/face-api, model/face_landmark_68_model): input_nhwc [N, 112,
// 112, 3] 0..255 RGB of a face crop padded to a centred black square, output
// "landmarks" [N, 136]: 68 (x, y) pairs in fractions of that square. It is
// not a catalog model; headtune uses it to compare its face crops with
// face-api's landmark-based crops.
func BuildFaceLandmarks(tarball string) (*backbone.Builder, error) {
	const dir, prefix = "model", "face_landmark_68_model"
	files, err := readTarball(tarball, func(rel string) bool {
		return path.Dir(rel) == dir && strings.HasPrefix(path.Base(rel), prefix)
	})
	if err != nil {
		return nil, err
	}
	var pj packageJSON
	if err := json.Unmarshal(files.Files["package.json"], &pj); err != nil || pj.Name != "@vladmandic/face-api" {
		return nil, fmt.Errorf("%s: not the @vladmandic/face-api package", tarball)
	}
	if pin := Pinned[pj.Name+"@"+pj.Version]; pin != "" && pin != files.Integrity {
		return nil, fmt.Errorf("%s: integrity mismatch for %s@%s: file is %s, expected %s", tarball, pj.Name, pj.Version, files.Integrity, pin)
	}
	manifest := dir + "/" + prefix + "-weights_manifest.json"
	mb, ok := files.Files[manifest]
	if !ok {
		return nil, fmt.Errorf("%s: %s not found in the package", tarball, manifest)
	}
	var groups []WeightGroup
	if err := json.Unmarshal(mb, &groups); err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	weights, err := IndexWeights(groups, files.reader(dir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifest, err)
	}
	return faceNetHead(weights, "input_nhwc", "face_landmark_68", 136, false)
}
