package pipeline

import (
	"context"
	"fmt"
	"strings"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/models"
)

// OriginalResult is the output of an installed model's own classifier over
// a labelled dataset (see OriginalScores).
type OriginalResult struct {
	// Probs holds, for each image that decoded, len(Classes) probabilities
	// in the model's class order: [len(Labels)*len(Classes)], row-major.
	Probs []float32
	// Labels are those images' labels, as indices into Classes.
	Labels []int32
	// Classes are the model's class names, in its output order.
	Classes []string
	// LeftOut lists the dataset's classes the model does not know; their
	// images were not scored.
	LeftOut []string
}

// OriginalScores runs an installed model's own classifier (for example
// face-expression's 7-expression head) over a labelled dataset, so a new
// head can be compared with it on the same images. Dataset classes are
// matched to the model's class names case-insensitively; images of classes
// the model does not know are left out (listed in LeftOut), and a dataset
// sharing no class with the model is an error naming both lists.
func OriginalScores(ctx context.Context, store *models.Store, ref string, ds *imaging.Dataset, opt BackboneOptions, onFail func(Failure)) (OriginalResult, error) {
	var res OriginalResult
	inst, err := store.Get(ref)
	if err != nil {
		return res, err
	}
	classes := inst.Meta.Classes
	if len(classes) == 0 {
		return res, fmt.Errorf("model %s records no class names for its own classifier (meta.json has no classes)", ref)
	}
	spec, err := inst.Meta.Spec()
	if err != nil {
		return res, err
	}
	m, err := backbone.ReadModelFile(inst.ModelPath())
	if err != nil {
		return res, err
	}
	// A float16 model runs widened, as its backbone does.
	if m, _, err = backbone.WidenFloat16(m); err != nil {
		return res, fmt.Errorf("%s: %w", inst.ModelPath(), err)
	}
	// The classifier output is the graph output with one value per class
	// ([N,K], or [N,K,1,1] after a pooled convolutional classifier).
	output := ""
	for _, o := range m.Graph.Output {
		dims := o.GetType().GetTensorType().GetShape().GetDim()
		per := int64(1)
		for _, d := range dims[min(1, len(dims)):] {
			per *= d.GetDimValue()
		}
		if len(dims) >= 2 && per == int64(len(classes)) && output == "" {
			output = o.GetName()
		}
	}
	if output == "" {
		return res, fmt.Errorf("model %s has no output of %d class scores", ref, len(classes))
	}
	output = flattenOutput(m, output)
	byName := map[string]int32{}
	for i, c := range classes {
		byName[strings.ToLower(c)] = int32(i)
	}
	known := map[string]bool{}
	for _, c := range ds.Classes {
		if _, ok := byName[strings.ToLower(c)]; ok {
			known[c] = true
		} else {
			res.LeftOut = append(res.LeftOut, c)
		}
	}
	if len(known) == 0 {
		return res, fmt.Errorf("the dataset's classes %v share none with %s's own classes %v", ds.Classes, ref, classes)
	}
	in, err := imageInput(m)
	if err != nil {
		return res, err
	}
	if _, err := ort.Init(""); err != nil {
		return res, err
	}
	data, err := backbone.MarshalModel(m)
	if err != nil {
		return res, err
	}
	inferers, sessOpt := PipelineThreads(opt.Session)
	sess, err := ort.NewSession(data, ort.SessionSpec{Input: in.Name, InputShape: spec.InputShape(), Outputs: []string{output}, OutputSizes: []int{len(classes)}, FixedBatch: in.Batch}, sessOpt)
	if err != nil {
		return res, err
	}
	defer sess.Close()
	var paths, labelOf []string
	for _, s := range ds.Samples {
		if known[s.Label] {
			paths = append(paths, s.Path)
			labelOf = append(labelOf, s.Label)
		}
	}
	k := len(classes)
	r := &Runner{Session: sess, Spec: spec, Inferers: inferers, OnFail: onFail}
	err = r.Run(ctx, paths, func(b *Batch) error {
		res.Probs = append(res.Probs, b.Outputs[0][:b.N*k]...)
		for _, idx := range b.Index {
			res.Labels = append(res.Labels, byName[strings.ToLower(labelOf[idx])])
		}
		return nil
	})
	res.Classes = classes
	return res, err
}

// flattenOutput makes output [N, K] for the session, which hands ONNX
// Runtime [N, K] buffers: an output of another rank ([N,K,1,1] after a
// convolutional classifier) gets a Flatten, as a new graph output. m is
// modified.
func flattenOutput(m *onnxpb.ModelProto, output string) string {
	for _, o := range m.Graph.Output {
		if o.GetName() == output && len(o.GetType().GetTensorType().GetShape().GetDim()) == 2 {
			return output
		}
	}
	b := backbone.EditGraph(m.Graph)
	flat := b.Op("Flatten", output+"_flat", []string{output}, backbone.AttrInt("axis", 1))
	m.Graph.Output = append(m.Graph.Output, backbone.ValueInfo(flat, onnxpb.TensorProto_FLOAT, []int64{-1, -1}, "N", "K"))
	return flat
}
