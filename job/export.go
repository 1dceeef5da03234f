package job

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/headtune/headtune/backbone/onnxpb"
	"github.com/headtune/headtune/export"
	"github.com/headtune/headtune/imaging"
)

// ExportOptions configure Export.
type ExportOptions struct {
	Env
	// Head is the trained head; empty: DefaultHead.
	Head string
	// Out is the ONNX file to write; empty: "headtune.onnx".
	Out string
	// WithPreprocessing bakes the normalisation into the graph: the model
	// takes raw 0..255 pixels.
	WithPreprocessing bool
	// WithFeatures adds the feature vector as a second output
	// (export.OutputFeatures, [N, D]).
	WithFeatures bool
	// FP16 writes the weights and activations inside the graph in half
	// precision, input and outputs float32 (export.Options.FP16).
	FP16 bool
	// Version is recorded as the exporting headtune's version.
	Version string
	// Faces, for a head trained on faces, writes the face model instead:
	// a letterboxed PhotoSize x PhotoSize photo in, boxes, scores,
	// keypoints and per-face probabilities out (export.BuildFaces;
	// PhotoSize 0: export.DefaultPhotoSize).
	Faces     bool
	PhotoSize int
}

// ExportResult reports an export.
type ExportResult struct {
	Path              string       `json:"path"` // absolute
	Bytes             int64        `json:"bytes"`
	Classes           []string     `json:"classes"`
	WithPreprocessing bool         `json:"with_preprocessing"`
	WithFeatures      bool         `json:"with_features"`
	Spec              imaging.Spec `json:"spec"` // the input the model takes (before WithPreprocessing's normalisation)
	FP16              bool         `json:"fp16"`
	// Limits has one line for each consumer that cannot run the model
	// (export.Limits), e.g. OpenCV 4.6 and an --fp16 export.
	Limits []string `json:"limits,omitempty"`
	// Faces is set for a face model, whose input is a PhotoSize square.
	Faces     bool `json:"faces,omitempty"`
	PhotoSize int  `json:"photo_size,omitempty"`
}

// Export writes one ONNX model: the head's backbone cut at its features,
// then the head and its softmax, with the preprocessing recipe and class
// names in the metadata. The file is replaced atomically.
func Export(ctx context.Context, opt ExportOptions) (*ExportResult, error) {
	headPath := opt.Head
	headPath = headOrDefault(headPath)
	m, err := LoadHead(headPath)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bb, err := opt.openForHead(m, headPath, true)
	if err != nil {
		return nil, err
	}
	var out *onnxpb.ModelProto
	if opt.Faces {
		if bb.Spec.Faces.IsZero() {
			return nil, fmt.Errorf("export --faces: the head %s was not trained on faces (extract with --faces)", headPath)
		}
		if opt.FP16 {
			return nil, errors.New("export --faces: --fp16 is not available for face models")
		}
		out, err = exportFaces(opt, m, bb)
	} else {
		out, err = export.Build(bb.Cut, bb.Spec, m, export.Options{
			WithFeatures:      opt.WithFeatures,
			WithPreprocessing: opt.WithPreprocessing,
			FP16:              opt.FP16,
			Version:           opt.Version,
		})
	}
	if err != nil {
		return nil, err
	}
	path := opt.Out
	if path == "" {
		path = "headtune.onnx"
	}
	if err := export.Write(path, out); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	res := &ExportResult{Path: absPath(path), Bytes: st.Size(), Classes: m.Classes, WithPreprocessing: opt.WithPreprocessing,
		WithFeatures: opt.WithFeatures, Spec: bb.Spec, FP16: opt.FP16, Faces: opt.Faces}
	if opt.Faces {
		res.PhotoSize = opt.PhotoSize
		if res.PhotoSize == 0 {
			res.PhotoSize = export.DefaultPhotoSize
		}
	} else {
		res.Limits = export.Limits(out)
	}
	return res, nil
}
