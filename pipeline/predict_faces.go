package pipeline

import (
	"context"

	"github.com/headtune/headtune/faces"
)

// FacePrediction is the result for one face of one input file, or for a
// file that gave no face (Face -1, Err set: ErrNoFace or why it could not
// be read).
type FacePrediction struct {
	Path    string
	Face    int        // face index (largest first), -1 when none
	Box     faces.Face // the detection: box, score, keypoints
	Classes []int      // top-k class indices, most probable first
	Probs   []float32  // their probabilities
	// Features is the face's feature vector when asked for (a copy).
	Features []float32
	Err      error
}

// PredictFaces runs the files through fr (set fr.All for every face, else
// the largest), scores each face, and calls emit in input order: once per
// face, or once for a file without any (with Err).
func PredictFaces(ctx context.Context, fr *FaceRunner, paths []string, score Scorer, opt PredictOptions, emit func(FacePrediction) error) error {
	top := newTopK(opt)
	var probs []float32
	return fr.Run(ctx, paths, func(fi *FaceImage) error {
		if fi.Err != nil {
			return emit(FacePrediction{Path: fi.Path, Face: -1, Err: fi.Err})
		}
		n := len(fi.Selected)
		if cap(probs) < n*opt.Classes {
			probs = make([]float32, n*opt.Classes)
		}
		probs = probs[:n*opt.Classes]
		if err := score(fi.Outputs, n, probs); err != nil {
			return err
		}
		for j, f := range fi.Selected {
			p := FacePrediction{Path: fi.Path, Face: f, Box: fi.Faces[f]}
			p.Classes, p.Probs = top.rank(probs[j*opt.Classes : (j+1)*opt.Classes])
			if opt.Embeddings && opt.FeatureOut >= 0 {
				size := len(fi.Outputs[opt.FeatureOut]) / n
				p.Features = append([]float32(nil), fi.Outputs[opt.FeatureOut][j*size:(j+1)*size]...)
			}
			if err := emit(p); err != nil {
				return err
			}
		}
		return nil
	})
}
