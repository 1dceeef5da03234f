package predictions

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Scored is one class with its probability.
type Scored struct {
	Class       string  `json:"class"`
	Probability float32 `json:"probability"`
}

// Row is the prediction for one input file.
type Row struct {
	Path string `json:"path"`
	// Class is the most probable class, or Unknown when its probability is
	// under the job's threshold; empty when Error is set.
	Class       string   `json:"class,omitempty"`
	Probability float32  `json:"probability,omitempty"` // of the most probable class
	TopK        []Scored `json:"top_k,omitempty"`       // most probable first
	// Set is the prediction set for the requested coverage (most probable
	// first): the classes that contain the true one with that probability
	// (conformal; nil when no coverage was asked for).
	Set []string `json:"set,omitempty"`
	// Outside, when > 0, is how far the image lies beyond the head's
	// training data, in multiples of its domain limit (head.Domain): the
	// row's Class is then Unknown and its probabilities are damped.
	Outside float64 `json:"outside,omitempty"`
	// Error says why the file could not be read or decoded ("" when it was).
	Error string `json:"error,omitempty"`
	// Embedding is the image's feature vector, when asked for.
	Embedding []float32 `json:"embedding,omitempty"`
	// Face, for predictions on faces, is the face the row is about (an
	// image gets one row per face); nil for whole images, and for an image
	// in which no face was found (Error says so).
	Face *Face `json:"face,omitempty"`
}

// Face locates a row's face in its image: index (largest first), box in
// pixels of the image as displayed, and the detector's score.
type Face struct {
	Index int     `json:"index"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	W     float64 `json:"w"`
	H     float64 `json:"h"`
	Score float32 `json:"score"`
}

// Unknown is the class a row reports when its top probability is under the
// threshold.
const Unknown = "unknown"

// Writer receives rows in input order. Write must have handed the row to
// the underlying writer (flushed) before it returns.
type Writer interface {
	Write(Row) error
	// Close flushes what is buffered; it does not close the io.Writer the
	// Writer was made on.
	Close() error
}

// Options configure a Writer.
type Options struct {
	// Embeddings adds each row's feature vector (a CSV column, a JSON
	// field, ignored by text).
	Embeddings bool
	// Sets adds the prediction set and the outside-the-domain ratio (CSV
	// columns set and outside; the other formats show them when present).
	Sets bool
	// Header asks for the format's header (CSV's column names). Create sets
	// it for a new or empty file.
	Header bool
	// Faces adds the face columns (CSV: face, x, y, w, h, face_score after
	// path) for predictions on faces.
	Faces bool
}

// Format is one output format.
type Format struct {
	Name string   // as given to --format and Lookup: "csv", "jsonl", "text"
	Exts []string // file name extensions it is chosen for, lower case with the dot
	// New returns a Writer on w.
	New func(w io.Writer, opt Options) Writer
	// Done reads an output file of this format and returns the paths it
	// holds rows for. It is given whole lines only.
	Done func(r io.Reader) (map[string]bool, error)
}

var formats = map[string]*Format{}

// Register adds a format; it panics on a second format of the same name.
func Register(f *Format) {
	if _, dup := formats[f.Name]; dup {
		panic("predictions: format " + f.Name + " registered twice")
	}
	formats[f.Name] = f
}

// Names lists the registered formats, sorted.
func Names() []string {
	var n []string
	for k := range formats {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Lookup returns the format called name.
func Lookup(name string) (*Format, error) {
	if f, ok := formats[strings.ToLower(name)]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("unknown prediction format %q (want %s)", name, strings.Join(Names(), ", "))
}

// ForPath returns the format a file name's extension asks for. An
// extension no format claims is an error listing the ones that work: a
// silent default would write a format the name does not promise.
func ForPath(path string) (*Format, error) {
	ext := strings.ToLower(filepath.Ext(path))
	var all []string
	for _, name := range Names() {
		f := formats[name]
		for _, e := range f.Exts {
			if e == ext {
				return f, nil
			}
		}
		all = append(all, f.Exts...)
	}
	if ext == "" {
		return nil, fmt.Errorf("%s: no file extension to tell the format from: name it %s, or give the format", path, strings.Join(all, ", "))
	}
	return nil, fmt.Errorf("%s: no prediction format writes %s files: use %s, or give the format", path, ext, strings.Join(all, ", "))
}

// File is a Writer on a file, with the paths an earlier run left in it.
type File struct {
	Writer
	Path   string
	Format *Format
	// Done holds the paths the file already had rows for (Resume), nil
	// otherwise.
	Done map[string]bool
	f    *os.File
}

// CreateOptions configure Create.
type CreateOptions struct {
	Options
	// Format names the format; empty: chosen by the file's extension.
	Format string
	// Resume keeps the rows already in the file and reports their paths
	// in File.Done; otherwise the file is truncated.
	Resume bool
}

// Create opens path for writing predictions, creating its folder. With
// Resume the existing rows are kept (a torn last line, left by a killed
// job, is cut off) and new rows are appended.
func Create(path string, opt CreateOptions) (*File, error) {
	var fm *Format
	var err error
	if opt.Format != "" {
		fm, err = Lookup(opt.Format)
	} else {
		fm, err = ForPath(path)
	}
	if err != nil {
		return nil, err
	}
	out := &File{Path: path, Format: fm}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if opt.Resume {
		if out.Done, err = readDone(path, fm); err != nil {
			return nil, err
		}
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	o := opt.Options
	o.Header = st.Size() == 0
	out.f = f
	out.Writer = fm.New(f, o)
	return out, nil
}

// Close flushes the writer and closes the file.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	err := f.Writer.Close()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.f = nil
	return err
}

// readDone returns the paths already in path (nil when it does not exist),
// cutting a torn last line off the file first.
func readDone(path string, fm *Format) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if i := strings.LastIndexByte(string(data), '\n'); i != len(data)-1 {
		// Cut the torn tail so appended rows start on a fresh line.
		if err := os.Truncate(path, int64(i+1)); err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		data = data[:i+1]
	}
	done, err := fm.Done(strings.NewReader(string(data)))
	if err != nil {
		return nil, fmt.Errorf("resume: %s is not a %s predictions file: %w", path, fm.Name, err)
	}
	return done, nil
}
