package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/headtune/headtune/backbone"
	"github.com/headtune/headtune/backbone/onnxpb"
	facespkg "github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/imaging"
)

// Names of the face model's input and outputs (BuildFaces).
const (
	// InputPhoto is float32 [1, S, S, 3]: one photo, RGB 0..255, already
	// letterboxed into the square S x S (FacesOptions.PhotoSize).
	InputPhoto = "photo"
	// OutputBoxes is float32 [K, 4]: x, y, width, height of each face in
	// photo pixels, largest first.
	OutputBoxes = "boxes"
	// OutputScores is float32 [K]: the detector's score of each face.
	OutputScores = "scores"
	// OutputKeypoints is float32 [K, 12]: the six BlazeFace keypoints
	// (right eye, left eye, nose tip, mouth, right ear, left ear) as x, y
	// pairs in photo pixels.
	OutputKeypoints = "keypoints"
	// OutputFaceProbabilities is float32 [K, classes]: the head's class
	// probabilities for each face.
	OutputFaceProbabilities = "probabilities"
	// KeyFaces is the metadata key holding FacesInfo as JSON.
	KeyFaces = keyPrefix + "faces"
)

// FacesOpset is the ai.onnx opset of face models: Resize with antialias
// (18), GridSample (16).
const FacesOpset = 18

// DefaultPhotoSize is the side of the square photo input when
// FacesOptions.PhotoSize is 0.
const DefaultPhotoSize = 1024

// FacesOptions configure BuildFaces.
type FacesOptions struct {
	// PhotoSize is the side S of the square photo input in pixels (a
	// multiple of 256 is not required; DefaultPhotoSize when 0).
	PhotoSize int
}

// FacesInfo is what a face model's KeyFaces metadata says: how to feed it
// and what its outputs mean.
type FacesInfo struct {
	PhotoSize int              `json:"photo_size"`
	Input     string           `json:"input"`
	Recipe    imaging.FaceSpec `json:"recipe"`
	Outputs   []string         `json:"outputs"`
	Note      string           `json:"note"`
}

// opsetChanged lists operators whose inputs or attributes changed form
// after the opset given: a classifier using one below that opset cannot
// simply be lifted to FacesOpset.
var opsetChanged = map[string]int64{
	"ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18,
	"ReduceLogSum": 18, "ReduceLogSumExp": 18, "ReduceSumSquare": 18, "ReduceSum": 13, "Split": 18,
	"Squeeze": 13, "Unsqueeze": 13, "Pad": 11, "Softmax": 13, "LogSoftmax": 13, "Hardmax": 13, "Clip": 11,
	"Slice": 10, "TopK": 10, "Upsample": 10, "Resize": 13, "Dropout": 12, "BatchNormalization": 9,
	"If": 13, "Loop": 13, "Scan": 9,
}

// BuildFaces makes one ONNX model that finds the faces in a photo and
// classifies each: BlazeFace (detector, the installed ONNX file) on the
// photo resized to 256x256, anchor decoding, NonMaxSuppression (with
// MediaPipe's score-weighted blending when the recipe says "blend"), the
// recipe's minimum size, a square crop per face with the recipe's margin
// and alignment (an affine grid four times finer than the crop, GridSample,
// a 4x4 AveragePool: the rule package faces follows), then the classifier. classifier is Build's result with
// Options.WithPreprocessing for a head trained on face crops (spec.Faces
// set); spec is that head's recipe.
//
// The classifier must take a dynamic batch (one row per face).
func BuildFaces(classifier, detector *onnxpb.ModelProto, spec imaging.Spec, opt FacesOptions) (*onnxpb.ModelProto, error) {
	fs := spec.Faces
	if fs.IsZero() {
		return nil, errors.New("export faces: the head was not trained on face crops (extract with --faces)")
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("export faces: %w", err)
	}
	if spec.Channels != 3 {
		return nil, fmt.Errorf("export faces: %d-channel backbones are not supported", spec.Channels)
	}
	S := int64(opt.PhotoSize)
	if S == 0 {
		S = DefaultPhotoSize
	}
	if S < 32 || S > imaging.MaxInputSide {
		return nil, fmt.Errorf("export faces: photo size %d must be 32..%d", S, imaging.MaxInputSide)
	}
	cg := classifier.GetGraph()
	if cg == nil || len(cg.Input) != 1 || len(cg.Output) < 1 {
		return nil, errors.New("export faces: the classifier must have one input (raw pixels) and a probabilities output")
	}
	copset, err := defaultOpset(classifier)
	if err != nil {
		return nil, err
	}
	for _, n := range cg.Node {
		if v, ok := opsetChanged[n.GetOpType()]; ok && copset < v && n.GetDomain() == "" {
			return nil, fmt.Errorf("export faces: the backbone uses %s at opset %d, whose form changed by opset %d, which face models need; convert the backbone to opset %d first", n.GetOpType(), copset, FacesOpset, FacesOpset)
		}
	}
	dims := cg.Input[0].GetType().GetTensorType().GetShape().GetDim()
	if len(dims) != 4 || dims[0].GetDimValue() > 0 {
		return nil, errors.New("export faces: the backbone has a fixed batch size; a face model runs all faces of a photo as one batch")
	}
	dg := detector.GetGraph()
	if dg == nil || len(dg.Input) != 1 || len(dg.Output) != 4 {
		return nil, errors.New("export faces: the detector is not BlazeFace (one input, four outputs)")
	}

	b := backbone.NewBuilder("headtune_faces")
	g := b.Graph
	c := func(name string, dims []int64, v ...float32) string { return b.Initializer("faces/"+name, dims, v) }
	ci := func(name string, v ...int64) string {
		return b.Int64Initializer("faces/"+name, []int64{int64(len(v))}, v)
	}
	op := func(o, name string, in []string, attrs ...*onnxpb.AttributeProto) string {
		return b.Op(o, "faces/"+name, in, attrs...)
	}
	b.Input(InputPhoto, 1, S, S, 3)

	// Detector input: the photo resized to 256x256 as imaging's letterbox
	// does for a square image (antialiased linear, half-pixel centres),
	// scaled to -1..1.
	sized := op("Resize", "det_resized", []string{InputPhoto, "", "", ci("det_size", 1, 256, 256, 3)},
		backbone.AttrString("mode", "linear"), backbone.AttrInt("antialias", 1),
		backbone.AttrString("coordinate_transformation_mode", "half_pixel"))
	// imaging's resampler writes 8-bit pixels: round as it does.
	sized = op("Round", "det_rounded", []string{op("Clip", "det_clipped", []string{sized, c("c0", nil, 0), c("c255", nil, 255)})})
	detIn := op("Sub", "det_input", []string{op("Mul", "det_scaled", []string{sized, c("inv127_5", nil, 1/127.5)}), c("one", nil, 1)})
	detOut, err := splice(b, dg, "det/", map[string]string{dg.Input[0].GetName(): detIn})
	if err != nil {
		return nil, err
	}
	outs := make([]string, 4)
	for i, o := range dg.Output {
		outs[i] = detOut[o.GetName()]
	}

	// Decoding: values [896, 16] = regressors/256 + anchor offsets (centre
	// x, y and keypoints), then one MatMul to corners, times S to pixels.
	raw := op("Concat", "scores_raw", []string{outs[0], outs[1]}, backbone.AttrInt("axis", 1))
	regs := op("Concat", "regressors", []string{outs[2], outs[3]}, backbone.AttrInt("axis", 1))
	regs = op("Reshape", "regressors_2d", []string{regs, ci("shape_896_16", 896, 16)})
	offs := make([]float32, 0, 896*16)
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			for k := 0; k < 2; k++ {
				offs = appendAnchor(offs, (float32(x)+0.5)/16, (float32(y)+0.5)/16)
			}
		}
	}
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			for k := 0; k < 6; k++ {
				offs = appendAnchor(offs, (float32(x)+0.5)/8, (float32(y)+0.5)/8)
			}
		}
	}
	centred := op("Add", "centred", []string{op("Div", "regs_scaled", []string{regs, c("c256", nil, 256)}), c("anchors", []int64{896, 16}, offs...)})
	m := make([]float32, 16*16)
	set := func(r, col int, v float32) { m[r*16+col] = v }
	set(0, 0, 1)
	set(2, 0, -0.5)
	set(1, 1, 1)
	set(3, 1, -0.5)
	set(0, 2, 1)
	set(2, 2, 0.5)
	set(1, 3, 1)
	set(3, 3, 0.5)
	for k := 4; k < 16; k++ {
		set(k, k, 1)
	}
	corners := op("MatMul", "corners", []string{centred, c("to_corners", []int64{16, 16}, m...)})
	vals := op("Mul", "values", []string{corners, c("photo_side", nil, float32(S))}) // [896, 16] pixels
	scores := op("Sigmoid", "scores_all", []string{op("Reshape", "scores_flat", []string{
		op("Clip", "scores_clipped", []string{raw, c("m100", nil, -100), c("p100", nil, 100)}), ci("shape_896", 896)})})

	boxes := op("Slice", "boxes_all", []string{vals, ci("s0", 0), ci("s4", 4), ci("ax1", 1)}) // [896, 4] x0 y0 x1 y1
	sel := op("NonMaxSuppression", "nms", []string{
		op("Reshape", "nms_boxes", []string{boxes, ci("shape_1_896_4", 1, 896, 4)}),
		op("Reshape", "nms_scores", []string{scores, ci("shape_1_1_896", 1, 1, 896)}),
		ci("max_boxes", 896), c("iou", []int64{1}, 0.3), c("score_threshold", []int64{1}, fs.Threshold),
	})
	idx := op("Reshape", "kept", []string{op("Slice", "kept_col", []string{sel, ci("s2", 2), ci("s3", 3), ci("ax1b", 1)}), ci("flat", -1)})
	keptScores := op("Gather", "kept_scores", []string{scores, idx})

	var faces string // [K, 16] corners + keypoints
	if fs.Suppression == imaging.SuppressBlend {
		faces = addBlend(b, op, c, ci, boxes, vals, scores, idx, fs.Threshold)
	} else {
		faces = op("Gather", "kept_values", []string{vals, idx}, backbone.AttrInt("axis", 0))
	}

	// Minimum size and degenerate boxes, then largest first.
	col := func(name string, t string, i int64) string {
		return op("Slice", name, []string{t, ci(name+"_s", i), ci(name+"_e", i+1), ci(name+"_a", 1)})
	}
	x0, y0, x1, y1 := col("x0", faces, 0), col("y0", faces, 1), col("x1", faces, 2), col("y1", faces, 3)
	w := op("Sub", "w", []string{x1, x0})
	h := op("Sub", "h", []string{y1, y0})
	big := op("Max", "side", []string{w, h})
	okSize := op("GreaterOrEqual", "big_enough", []string{big, c("min_size", nil, fs.MinSize)})
	okW := op("Greater", "w_positive", []string{w, c("zero", nil, 0)})
	okH := op("Greater", "h_positive", []string{h, c("zero_b", nil, 0)})
	keep := op("Reshape", "keep", []string{op("And", "keep_wh", []string{op("And", "keep_w", []string{okSize, okW}), okH}), ci("flat_b", -1)})
	faces = op("Compress", "faces_kept", []string{faces, keep}, backbone.AttrInt("axis", 0))
	keptScores = op("Compress", "scores_kept", []string{keptScores, keep}, backbone.AttrInt("axis", 0))
	x0, y0, x1, y1 = col("fx0", faces, 0), col("fy0", faces, 1), col("fx1", faces, 2), col("fy1", faces, 3)
	w = op("Sub", "fw", []string{x1, x0})
	h = op("Sub", "fh", []string{y1, y0})
	area := op("Reshape", "area", []string{op("Mul", "area_2d", []string{w, h}), ci("flat_c", -1)})
	order := b.Unique("faces/order")
	b.Node("TopK", []string{area, op("Shape", "n_faces", []string{area})}, []string{b.Unique("faces/sorted_area"), order},
		backbone.AttrInt("axis", 0), backbone.AttrInt("largest", 1), backbone.AttrInt("sorted", 1))
	faces = op("Gather", "faces_sorted", []string{faces, order}, backbone.AttrInt("axis", 0))
	b.Node("Gather", []string{keptScores, order}, []string{OutputScores}, backbone.AttrInt("axis", 0))
	x0, y0, x1, y1 = col("gx0", faces, 0), col("gy0", faces, 1), col("gx1", faces, 2), col("gy1", faces, 3)
	w = op("Sub", "gw", []string{x1, x0})
	h = op("Sub", "gh", []string{y1, y0})
	b.Node("Concat", []string{x0, y0, w, h}, []string{OutputBoxes}, backbone.AttrInt("axis", 1))
	b.Node("Slice", []string{faces, ci("k_s", 4), ci("k_e", 16), ci("k_a", 1)}, []string{OutputKeypoints})

	// Crops: a square of side max(w, h)*(1+2*margin) centred on the box,
	// turned by the eye line with eye alignment, sampled on a grid
	// SamplesPerSide times finer than the crop (GridSample: bilinear,
	// black outside) and averaged (AveragePool): package faces' rule.
	const k = facespkg.SamplesPerSide
	side := op("Mul", "crop_side", []string{op("Max", "gside", []string{w, h}), c("one_margin", nil, 1+2*fs.Margin)})
	cx := op("Mul", "cx", []string{op("Add", "x0x1", []string{x0, x1}), c("half", nil, 0.5)})
	cy := op("Mul", "cy", []string{op("Add", "y0y1", []string{y0, y1}), c("half_b", nil, 0.5)})
	cos, sin := c("cos0", nil, 1), c("sin0", nil, 0)
	if fs.Align == imaging.AlignEyes {
		// cos and sin of the right-eye-to-left-eye line; level when the
		// eyes coincide, as FrameOf does.
		dx := op("Sub", "eye_dx", []string{faces16(op, ci, "lex", OutputKeypoints, 2), faces16(op, ci, "rex", OutputKeypoints, 0)})
		dy := op("Sub", "eye_dy", []string{faces16(op, ci, "ley", OutputKeypoints, 3), faces16(op, ci, "rey", OutputKeypoints, 1)})
		n := op("Sqrt", "eye_len", []string{op("Add", "eye_len2", []string{op("Mul", "dx2", []string{dx, dx}), op("Mul", "dy2", []string{dy, dy})})})
		apart := op("Greater", "eyes_apart", []string{n, c("zero_e", nil, 0)})
		safe := op("Max", "eye_len_safe", []string{n, c("tiny", nil, 1e-30)})
		cos = op("Where", "cos", []string{apart, op("Div", "cos_raw", []string{dx, safe}), c("one_e", nil, 1)})
		sin = op("Where", "sin", []string{apart, op("Div", "sin_raw", []string{dy, safe}), c("zero_f", nil, 0)})
	}
	gs := int64(k * spec.Width)
	us, vs := make([]float32, gs*gs), make([]float32, gs*gs)
	for b := int64(0); b < gs; b++ {
		for a := int64(0); a < gs; a++ {
			us[b*gs+a] = (float32(a)+0.5)/float32(gs) - 0.5
			vs[b*gs+a] = (float32(b)+0.5)/float32(gs) - 0.5
		}
	}
	U, V := c("grid_u", []int64{1, gs * gs}, us...), c("grid_v", []int64{1, gs * gs}, vs...)
	sc := op("Mul", "side_cos", []string{side, cos})
	ss := op("Mul", "side_sin", []string{side, sin})
	px := op("Sub", "px", []string{op("Add", "px_a", []string{cx, op("Mul", "px_u", []string{sc, U})}), op("Mul", "px_v", []string{ss, V})})
	py := op("Add", "py", []string{op("Add", "py_a", []string{cy, op("Mul", "py_u", []string{ss, U})}), op("Mul", "py_v", []string{sc, V})})
	// GridSample's coordinates (align_corners 0): -1 and 1 are the outer
	// edges of the photo, so a continuous position p maps to 2p/S - 1.
	norm := func(name, t string) string {
		return op("Unsqueeze", name, []string{op("Sub", name+"_n", []string{op("Mul", name+"_s", []string{t, c(name+"_k", nil, 2/float32(S))}), c(name+"_1", nil, 1)}), ci(name+"_ax", 2)})
	}
	grid := op("Concat", "grid", []string{norm("gx", px), norm("gy", py)}, backbone.AttrInt("axis", 2)) // [K, gs*gs, 2]
	// One photo, K faces: stack the K grids as rows of one tall grid.
	grid = op("Reshape", "grid_tall", []string{grid, ci("grid_shape", 1, -1, gs, 2)})
	planar := op("Transpose", "photo_nchw", []string{InputPhoto}, backbone.AttrInts("perm", 0, 3, 1, 2))
	fine := op("GridSample", "samples", []string{planar, grid},
		backbone.AttrString("mode", "bilinear"), backbone.AttrString("padding_mode", "zeros"), backbone.AttrInt("align_corners", 0))
	fine = op("Transpose", "samples_k", []string{op("Reshape", "samples_ck", []string{fine, ci("samples_shape", 3, -1, gs, gs)})}, backbone.AttrInts("perm", 1, 0, 2, 3))
	crops := op("AveragePool", "crops", []string{fine}, backbone.AttrInts("kernel_shape", k, k), backbone.AttrInts("strides", k, k))
	if spec.ChannelOrder == imaging.OrderBGR {
		crops = op("Gather", "crops_bgr", []string{crops, ci("bgr", 2, 1, 0)}, backbone.AttrInt("axis", 1))
	}
	if spec.Layout == imaging.LayoutNHWC {
		crops = op("Transpose", "crops_nhwc", []string{crops}, backbone.AttrInts("perm", 0, 2, 3, 1))
	}
	clsOut, err := splice(b, cg, "cls/", map[string]string{cg.Input[0].GetName(): crops})
	if err != nil {
		return nil, err
	}
	b.Node("Identity", []string{clsOut[OutputProbabilities]}, []string{OutputFaceProbabilities})
	if clsOut[OutputProbabilities] == "" {
		return nil, fmt.Errorf("export faces: the classifier has no %q output", OutputProbabilities)
	}
	nf := int64(-1) // the face count is dynamic
	var classes int64
	for _, o := range cg.Output {
		if o.GetName() == OutputProbabilities {
			if d := o.GetType().GetTensorType().GetShape().GetDim(); len(d) == 2 {
				classes = d[1].GetDimValue()
			}
		}
	}
	g.Output = []*onnxpb.ValueInfoProto{
		backbone.ValueInfo(OutputBoxes, onnxpb.TensorProto_FLOAT, []int64{nf, 4}, "faces"),
		backbone.ValueInfo(OutputScores, onnxpb.TensorProto_FLOAT, []int64{nf}, "faces"),
		backbone.ValueInfo(OutputKeypoints, onnxpb.TensorProto_FLOAT, []int64{nf, 12}, "faces"),
		backbone.ValueInfo(OutputFaceProbabilities, onnxpb.TensorProto_FLOAT, []int64{nf, classes}, "faces"),
	}
	out := b.Model(FacesOpset)
	info := FacesInfo{
		PhotoSize: int(S), Input: fmt.Sprintf("%s float32 [1,%d,%d,3] RGB 0..255, the photo letterboxed into the square (scaled to fit, centred, black borders)", InputPhoto, S, S),
		Recipe:  fs,
		Outputs: []string{OutputBoxes + " [K,4] x,y,w,h photo pixels, largest first", OutputScores + " [K]", OutputKeypoints + " [K,12] right eye, left eye, nose tip, mouth, right ear, left ear (x,y)", OutputFaceProbabilities + " [K,classes]"},
		Note:    "min_size applies in photo pixels; crops follow the recipe (eye alignment by GridSample)",
	}
	ij, _ := json.Marshal(info)
	for _, p := range classifier.MetadataProps {
		out.MetadataProps = append(out.MetadataProps, proto.Clone(p).(*onnxpb.StringStringEntryProto))
	}
	out.MetadataProps = append(out.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(KeyFaces), Value: proto.String(string(ij))})
	out.DocString = proto.String("headtune face model: BlazeFace detection, crops and " + strings.TrimPrefix(classifier.GetDocString(), "headtune export: "))
	out.ProducerVersion = classifier.ProducerVersion
	return out, nil
}

// appendAnchor appends one anchor's offsets: centre x, y, no size, and the
// centre again for each of the six keypoints.
func appendAnchor(dst []float32, x, y float32) []float32 {
	dst = append(dst, x, y, 0, 0)
	for k := 0; k < 6; k++ {
		dst = append(dst, x, y)
	}
	return dst
}

// addBlend adds MediaPipe's weighted suppression: every candidate scoring
// at least the threshold joins the first kept box (in NonMaxSuppression's
// order, best first) whose IoU with it exceeds 0.3, and each kept face
// becomes the score-weighted mean of its group. Kept boxes are
// NonMaxSuppression's, because greedy suppression and greedy blending pick
// the same tops.
func addBlend(b *backbone.Builder, op func(string, string, []string, ...*onnxpb.AttributeProto) string,
	c func(string, []int64, ...float32) string, ci func(string, ...int64) string,
	boxes, vals, scores, idx string, threshold float32) string {
	kb := op("Gather", "kept_boxes", []string{boxes, idx}, backbone.AttrInt("axis", 0)) // [K, 4]
	at := op("Transpose", "all_boxes_t", []string{boxes}, backbone.AttrInts("perm", 1, 0))
	kcol := func(i int64) string {
		return op("Slice", fmt.Sprintf("kb%d", i), []string{kb, ci(fmt.Sprintf("kb%d_s", i), i), ci(fmt.Sprintf("kb%d_e", i), i+1), ci(fmt.Sprintf("kb%d_a", i), 1)})
	}
	arow := func(i int64) string {
		return op("Slice", fmt.Sprintf("ab%d", i), []string{at, ci(fmt.Sprintf("ab%d_s", i), i), ci(fmt.Sprintf("ab%d_e", i), i+1), ci(fmt.Sprintf("ab%d_a", i), 0)})
	}
	kx0, ky0, kx1, ky1 := kcol(0), kcol(1), kcol(2), kcol(3) // [K, 1]
	ax0, ay0, ax1, ay1 := arow(0), arow(1), arow(2), arow(3) // [1, 896]
	ix := op("Relu", "ix", []string{op("Sub", "ix_raw", []string{op("Min", "ix1", []string{kx1, ax1}), op("Max", "ix0", []string{kx0, ax0})})})
	iy := op("Relu", "iy", []string{op("Sub", "iy_raw", []string{op("Min", "iy1", []string{ky1, ay1}), op("Max", "iy0", []string{ky0, ay0})})})
	inter := op("Mul", "inter", []string{ix, iy})
	ak := op("Mul", "area_k", []string{op("Sub", "kw", []string{kx1, kx0}), op("Sub", "kh", []string{ky1, ky0})})
	aa := op("Mul", "area_a", []string{op("Sub", "aw", []string{ax1, ax0}), op("Sub", "ah", []string{ay1, ay0})})
	union := op("Sub", "union", []string{op("Add", "areas", []string{ak, aa}), inter})
	iou := op("Div", "iou_matrix", []string{inter, union}) // [K, 896]
	over := op("Cast", "over", []string{op("Greater", "over_b", []string{iou, c("iou_b", nil, 0.3)})}, backbone.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	srow := op("Reshape", "scores_row", []string{scores, ci("shape_1_896", 1, 896)})
	valid := op("Cast", "valid", []string{op("GreaterOrEqual", "valid_b", []string{srow, c("thr_b", nil, threshold)})}, backbone.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	mask := op("Mul", "mask", []string{over, valid})
	cum := op("CumSum", "mask_cum", []string{mask, b.Int64Initializer("faces/cum_axis", nil, []int64{0})})
	first := op("Mul", "first", []string{mask, op("Cast", "is_first", []string{op("Equal", "cum_is_1", []string{cum, c("one_b", nil, 1)})}, backbone.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))})
	wts := op("Mul", "weights", []string{first, srow})
	num := op("MatMul", "blend_num", []string{wts, vals})
	den := op("ReduceSum", "blend_den", []string{wts, ci("axes1", 1)}, backbone.AttrInt("keepdims", 1))
	return op("Div", "blended", []string{num, den})
}

// splice copies graph src's nodes and initializers into b with names
// prefixed, feeding src's inputs from the tensors inputs names (src input
// -> tensor in b), and returns src's output names mapped to their new
// names. Sub-graph attributes are not supported (none of the models
// spliced here has control flow).
func splice(b *backbone.Builder, src *onnxpb.GraphProto, prefix string, inputs map[string]string) (map[string]string, error) {
	rename := func(n string) string {
		if n == "" {
			return ""
		}
		if t, ok := inputs[n]; ok {
			return t
		}
		return prefix + n
	}
	inits := map[string]bool{}
	for _, t := range src.Initializer {
		inits[t.GetName()] = true
		nt := proto.Clone(t).(*onnxpb.TensorProto)
		nt.Name = proto.String(rename(t.GetName()))
		b.Graph.Initializer = append(b.Graph.Initializer, nt)
	}
	for _, in := range src.Input {
		if _, ok := inputs[in.GetName()]; !ok && !inits[in.GetName()] {
			return nil, fmt.Errorf("export faces: input %s of a spliced graph is not fed", in.GetName())
		}
	}
	for i, n := range src.Node {
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return nil, fmt.Errorf("export faces: node %s has a sub-graph, which cannot be spliced", n.GetName())
			}
		}
		nn := proto.Clone(n).(*onnxpb.NodeProto)
		nn.Name = proto.String(fmt.Sprintf("%s%d/%s", prefix, i, n.GetName())) // BlazeFace's nodes have no names
		for i, x := range nn.Input {
			nn.Input[i] = rename(x)
		}
		for i, x := range nn.Output {
			nn.Output[i] = rename(x)
		}
		b.Graph.Node = append(b.Graph.Node, nn)
	}
	outs := map[string]string{}
	for _, o := range src.Output {
		outs[o.GetName()] = rename(o.GetName())
	}
	return outs, nil
}

// faces16 slices column i of a [K, 12] keypoint tensor (x, y pairs) as
// [K, 1].
func faces16(op func(string, string, []string, ...*onnxpb.AttributeProto) string, ci func(string, ...int64) string, name, t string, i int64) string {
	return op("Slice", "kp_"+name, []string{t, ci("kp_"+name+"_s", i), ci("kp_"+name+"_e", i+1), ci("kp_"+name+"_a", 1)})
}
