package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/imaging"
)

// FaceViewPath is how a face sample appears in a dataset view: the image's
// path, with "#k" for face k when every face is taken (all), plain when only
// the largest is.
func FaceViewPath(path string, k int, all bool) string {
	if !all {
		return path
	}
	return fmt.Sprintf("%s#%d", path, k)
}

// ExtractFaces is Extract in face mode: every labelled image contributes
// its largest face (or, with all, every face) as a sample with the image's
// label, cropped as bb.Spec.Faces says (bb must be opened with
// BackboneOptions.Faces). Images where det finds no face are skipped with
// the reason "no face found" and counted in the summary's NoFace and
// Skipped. Resuming after a crash or cancellation detects faces again but
// computes features only for faces the cache lacks.
func ExtractFaces(ctx context.Context, bb *Backbone, det *faces.Detector, all bool, ds *imaging.Dataset, opt ExtractOptions) (*ExtractSummary, error) {
	if bb.Spec.Faces.IsZero() {
		return nil, errors.New("extract faces: the backbone was opened without a face recipe")
	}
	e, err := startExtract(ctx, bb, ds, opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	type sample struct {
		image, face int
		key         featcache.Key
	}
	var samples []sample
	fr := &FaceRunner{
		Detector: det, Session: bb.Session, Spec: bb.Spec, All: all, Workers: bb.Inferers,
		Skip: e.has,
	}
	gc := newGroupCommit(e.w)
	var keys []featcache.Key
	var rows []float32
	runErr := fr.Run(ctx, e.paths, func(fi *FaceImage) error {
		if fi.Err != nil {
			if errors.Is(fi.Err, ErrNoFace) {
				e.sum.NoFace++
			}
			e.skip(Failure{Index: fi.Index, Path: fi.Path, Err: fi.Err})
			return nil
		}
		e.prog.Done++
		keys, rows = keys[:0], rows[:0]
		computed := false
		for j, k := range fi.Selected {
			key := featcache.Key(fi.Keys[j])
			samples = append(samples, sample{fi.Index, k, key})
			if fi.Cached[j] {
				continue
			}
			computed = true
			keys = append(keys, key)
			rows = append(rows, fi.Outputs[0][j*bb.Dim:(j+1)*bb.Dim]...)
		}
		if computed {
			if err := gc.add(keys, rows); err != nil {
				return err
			}
			e.prog.Computed++
		} else {
			e.prog.Reused++
		}
		e.report()
		return nil
	})
	e.sum.Faces = len(samples)
	if err := e.finish(gc, runErr); err != nil {
		return e.sum, err
	}

	base := datasetBase(ds.Root)
	entries := make([]featcache.ViewEntry, 0, len(samples))
	for _, s := range samples {
		row, ok := e.w.Lookup(s.key)
		if !ok {
			return e.sum, fmt.Errorf("extract faces: %s face %d is not in the cache after its commit", e.paths[s.image], s.face)
		}
		ds := ds.Samples[s.image]
		entries = append(entries, featcache.ViewEntry{Path: FaceViewPath(relTo(base, ds.Path), s.face, all), Label: ds.Label, Split: ds.Split, Key: s.key, Row: row})
	}
	return e.sum, e.record(bb, ds, entries)
}
