package faces

import (
	"bytes"
	"context"
	"fmt"
	"image/jpeg"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/atomicfile"
	"github.com/headtune/headtune/models"
)

// OpenDetector opens the installed face detector name (e.g. "blazeface",
// installed by `headtune models pull blazeface`) from store, after checking
// that it is a face detector. ort.Init must have been called.
func OpenDetector(store *models.Store, name string, opt ort.SessionOptions) (*Detector, error) {
	in, err := store.Get(name)
	if err != nil {
		return nil, fmt.Errorf("face detector %s is not installed: run `headtune models pull %s` (%w)", name, name, err)
	}
	if in.Meta.Task != models.TaskFaceDetector {
		return nil, fmt.Errorf("model %s is a %s, not a face detector (try blazeface)", name, in.Meta.Task)
	}
	data, err := os.ReadFile(in.ModelPath())
	if err != nil {
		return nil, fmt.Errorf("face detector %s: %w", name, err)
	}
	d, err := NewDetector(data, opt)
	if err != nil {
		return nil, fmt.Errorf("face detector %s: %w", name, err)
	}
	return d, nil
}

// FindOptions configure Find.
type FindOptions struct {
	// Paths are image files and folders (searched recursively for files
	// with an imaging.ImageExtensions extension, hidden ones skipped).
	Paths []string
	// Detector finds the faces; Spec says which count (Detect's rules).
	Detector *Detector
	Spec     imaging.FaceSpec
	// AnnotateDir, when not empty, receives a JPEG copy of every image with
	// its faces drawn (Annotate, DefaultLabel), named after the image.
	AnnotateDir string
	// Progress, when set, is called after each image with the number done
	// and the total.
	Progress func(done, total int)
}

// ImageFaces is what Find reports for one image.
type ImageFaces struct {
	Path   string `json:"path"`
	Width  int    `json:"width"`  // displayed orientation, pixels
	Height int    `json:"height"` // displayed orientation, pixels
	Faces  []Face `json:"faces"`  // largest first; index = face index
	// Annotated is the file written for AnnotateDir ("" when none).
	Annotated string `json:"annotated,omitempty"`
	// Error is why the image could not be read ("" when it was): one line
	// naming the file.
	Error string `json:"error,omitempty"`
}

// FindResult is Find's answer.
type FindResult struct {
	Images []ImageFaces `json:"images"`
	Faces  int          `json:"faces"`  // total over all images
	Failed int          `json:"failed"` // images that could not be read
}

// Find detects the faces in every image under opt.Paths, in path order. An
// unreadable image is reported in its ImageFaces.Error and counted, not
// fatal; a missing path, an unwritable AnnotateDir or a cancelled ctx is.
func Find(ctx context.Context, opt FindOptions) (*FindResult, error) {
	if opt.Detector == nil {
		return nil, fmt.Errorf("find faces: no detector")
	}
	if err := opt.Detector.check(opt.Spec); err != nil {
		return nil, err
	}
	paths, err := ListImages(opt.Paths)
	if err != nil {
		return nil, err
	}
	if opt.AnnotateDir != "" {
		if err := os.MkdirAll(opt.AnnotateDir, 0o755); err != nil {
			return nil, fmt.Errorf("--annotate %s: %w", opt.AnnotateDir, err)
		}
	}
	res := &FindResult{Images: make([]ImageFaces, 0, len(paths))}
	names := annotatedNames(paths)
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := ImageFaces{Path: p, Faces: []Face{}}
		img, err := imaging.DecodeFile(p, imaging.DecodeOptions{})
		if err != nil {
			r.Error = err.Error()
			res.Failed++
		} else {
			r.Width, r.Height = img.W, img.H
			found, err := opt.Detector.Detect(ctx, img, opt.Spec)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			r.Faces = found
			res.Faces += len(found)
			if opt.AnnotateDir != "" {
				out := filepath.Join(opt.AnnotateDir, names[i])
				if err := writeAnnotated(out, img, found); err != nil {
					return nil, err
				}
				r.Annotated = out
			}
		}
		res.Images = append(res.Images, r)
		if opt.Progress != nil {
			opt.Progress(i+1, len(paths))
		}
	}
	return res, nil
}

func writeAnnotated(path string, img *imaging.RGB, found []Face) error {
	as := make([]Annotation, len(found))
	for i, f := range found {
		as[i] = Annotation{Face: f, Label: DefaultLabel(i, f)}
	}
	m, err := Annotate(img, as)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 88}); err != nil {
		return fmt.Errorf("annotate %s: %w", path, err)
	}
	if err := atomicfile.Write(path, b.Bytes()); err != nil {
		return fmt.Errorf("annotate %s: %w", path, err)
	}
	return nil
}

// annotatedNames gives each image a distinct output name: its base name
// with .jpg, and a -2, -3... suffix where two images share one.
func annotatedNames(paths []string) []string {
	seen := map[string]int{}
	out := make([]string, len(paths))
	for i, p := range paths {
		stem := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		seen[stem]++
		if n := seen[stem]; n > 1 {
			stem = fmt.Sprintf("%s-%d", stem, n)
		}
		out[i] = stem + ".jpg"
	}
	return out
}

// ListImages expands files and folders into the image files they hold:
// files are kept as given (whatever their extension, so the user learns
// when one is not an image), folders are walked recursively for image
// extensions, hidden entries skipped, in lexical order.
func ListImages(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if q != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && slices.Contains(imaging.ImageExtensions, strings.ToLower(filepath.Ext(q))) {
				found = append(found, q)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		slices.Sort(found)
		out = append(out, found...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no images in %s", strings.Join(paths, ", "))
	}
	return out, nil
}

// OpenDetectorFor opens the installed face detector a recipe was made with:
// the installed face-detector model whose file has spec.DetectorSHA256.
func OpenDetectorFor(store *models.Store, spec imaging.FaceSpec, opt ort.SessionOptions) (*Detector, error) {
	inst, err := store.List()
	if err != nil {
		return nil, err
	}
	for _, in := range inst {
		if in.Meta.Task == models.TaskFaceDetector && in.Meta.SHA256 == spec.DetectorSHA256 {
			return OpenDetector(store, in.Meta.Name, opt)
		}
	}
	return nil, fmt.Errorf("the face detector this head was trained with (%s, sha256 %.12s...) is not installed: run `headtune models pull blazeface`", spec.Detector, spec.DetectorSHA256)
}
