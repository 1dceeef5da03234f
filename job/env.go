package job

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/head"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/imaging/turbojpeg"
	"github.com/headtune/headtune/models"
	_ "github.com/headtune/headtune/models/tfjs" // builds the registry-shipped backbones
	"github.com/headtune/headtune/pipeline"
)

// Env is what all jobs share.
type Env struct {
	// CacheDir is the feature cache root; empty: featcache.DefaultDir
	// ($HEADTUNE_CACHE_DIR or the user's cache folder).
	CacheDir string
	// ModelsDir is the installed models folder; empty: models.DefaultDir
	// ($HEADTUNE_HOME/models or the user's data folder).
	ModelsDir string
	// ORTLibrary is the ONNX Runtime shared library to load; empty: found
	// as ort.FindLibrary says. ORTLibrarySource names where the path came
	// from in error messages ("--ort-lib" when empty).
	ORTLibrary       string
	ORTLibrarySource string
	// Session sets ONNX Runtime's threads (0: one per core) and device.
	Session ort.SessionOptions
}

// CacheRoot returns the feature cache root the jobs use.
func (e Env) CacheRoot() (string, error) {
	if e.CacheDir != "" {
		return e.CacheDir, nil
	}
	return featcache.DefaultDir()
}

// Store opens the installed models folder.
func (e Env) Store() (*models.Store, error) {
	dir := e.ModelsDir
	if dir == "" {
		var err error
		if dir, err = models.DefaultDir(); err != nil {
			return nil, err
		}
	}
	return models.OpenStore(dir)
}

// InitRuntime loads ONNX Runtime. Jobs call it before anything else that
// needs it, so that a missing library is reported as itself and not under
// the name of the model being opened.
func (e Env) InitRuntime() error {
	if e.ORTLibrary != "" {
		if _, err := os.Stat(e.ORTLibrary); err != nil {
			src := e.ORTLibrarySource
			if src == "" {
				src = "--ort-lib"
			}
			return fmt.Errorf("%w: %s %s does not exist", ort.ErrLibraryMissing, src, e.ORTLibrary)
		}
	}
	_, err := ort.Init(e.ORTLibrary)
	return err
}

// DefaultHead is the head file the jobs read and write when none is named.
const DefaultHead = "headtune.head"

// headOrDefault is path, or DefaultHead when no head file was named.
func headOrDefault(path string) string {
	if path == "" {
		return DefaultHead
	}
	return path
}

// LoadHead reads a head file, saying plainly what is wrong when there is
// none yet or the file is something else (an ONNX export).
func LoadHead(path string) (*head.Model, error) {
	path = headOrDefault(path)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no head at %s yet: train one with `headtune train` (after `headtune extract DATASET`), or name an existing head with --head FILE", path)
	}
	m, err := head.Load(path)
	if err == nil {
		return m, nil
	}
	if looksLikeONNX(path) {
		return nil, fmt.Errorf("%s is an ONNX model (an export), not a head file: pass it with --export %s", path, path)
	}
	return nil, err
}

// looksLikeONNX reports whether path starts like an ONNX protobuf: field 1
// (ir_version, varint) first, as every writer puts it.
func looksLikeONNX(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	if n, _ := f.Read(b[:]); n < 2 {
		return false
	}
	return b[0] == 0x08 && b[1] > 0 && b[1] < 0x20 || filepath.Ext(path) == ".onnx"
}

// looksLikeHead reports whether path starts with the head file magic.
func looksLikeHead(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [6]byte
	n, _ := f.Read(b[:])
	return n == 6 && string(b[:]) == "HTHEAD"
}

// CheckFastJPEG refuses a FastJPEG recipe on a machine without
// libjpeg-turbo: the pure-Go fallback decodes at full size, so features
// would not match the ones the recipe stands for. what names the recipe's
// owner in the message.
func CheckFastJPEG(fast bool, what string) error {
	if !fast || turbojpeg.Available() {
		return nil
	}
	return fmt.Errorf("%s uses --fast-jpeg (DCT-domain JPEG scaling), which needs libjpeg-turbo: install libturbojpeg0 (`make setup` does) or set %s; without it JPEG pixels would differ from the recorded recipe (%v)", what, turbojpeg.EnvLibrary, turbojpeg.LoadError())
}

// openForHead opens the backbone a head was trained on, with the head's
// recorded preprocessing and cut point, and checks the identity. headPath
// names the head in messages.
func (e Env) openForHead(m *head.Model, headPath string, noSession bool) (*pipeline.Backbone, error) {
	spec, err := imaging.ParseSpec(m.Backbone.Preprocess)
	if err != nil {
		return nil, fmt.Errorf("head %s: preprocessing recipe: %w", headPath, err)
	}
	if err := CheckFastJPEG(spec.FastJPEG, "head "+headPath); err != nil {
		return nil, err
	}
	if !noSession {
		if err := e.InitRuntime(); err != nil {
			return nil, err
		}
	}
	store, err := e.Store()
	if err != nil {
		return nil, err
	}
	tensor := m.Backbone.FeatureTensor
	bo := pipeline.BackboneOptions{Store: store, Spec: &spec, Session: e.Session, NoSession: noSession}
	if len(m.ConvTail) > 0 {
		// The tuned convolutions go back into the backbone graph, which
		// then gives the head's features itself: predict and export run
		// the same graph.
		bo.ConvTail, bo.ConvTailFrom = convLayers(m), m.Backbone.TuneCut
	} else if m.Backbone.TuneCut != "" {
		tensor = m.Backbone.TuneCut
	}
	bo.FeatureTensor = tensor
	bb, err := pipeline.OpenBackbone(m.Backbone.ID, bo)
	if err != nil {
		return nil, fmt.Errorf("head %s was trained on backbone %s: %w", headPath, m.Backbone.ID, err)
	}
	got := head.BackboneRef{ID: bb.Ref, ModelHash: bb.ModelHash, FeatureTensor: bb.Choice.Tensor, Preprocess: bb.Identity.Preprocess, TuneCut: m.Backbone.TuneCut}
	if err := m.CheckBackbone(got); err != nil {
		bb.Close()
		return nil, fmt.Errorf("%s: %w", headPath, err)
	}
	return bb, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
