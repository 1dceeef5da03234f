package featcache

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ViewEntry maps one dataset file to its cached features.
type ViewEntry struct {
	Path  string // dataset file, as the extract run named it (usually relative to the dataset root)
	Label string // class name; empty for unlabelled data
	Split string // "train", "val", "test", or empty
	Key   Key    // content hash of the file
	Row   int    // row in features.f32 when the view was written (informative: LoadMatrix looks rows up by Key)
}

// viewHeader is the first line of every view file.
var viewHeader = []string{"path", "label", "split", "hash", "row"}

// ViewPath returns the file that holds view name for the identity folder
// dir: dir/views/<name>.csv.
func ViewPath(dir, name string) string { return filepath.Join(dir, viewsDir, name+".csv") }

// checkViewName refuses names that are empty, hidden, or would escape the
// views folder.
func checkViewName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("view name %q: empty or reserved", name)
	case strings.ContainsAny(name, `/\`+"\x00"), strings.HasPrefix(name, "."):
		return fmt.Errorf("view name %q: must not contain path separators or start with a dot", name)
	case len(name) > 200:
		return fmt.Errorf("view name %q...: longer than 200 bytes", name[:40])
	}
	return nil
}

// WriteView atomically replaces the view name in the identity folder dir
// (Writer.Dir or Reader.Dir) with entries, as CSV with the header
// path,label,split,hash,row. A dataset's view lists exactly the files of its
// latest extract run: files removed from the dataset drop out of it, while
// their rows stay in the cache for reuse.
func WriteView(dir, name string, entries []ViewEntry) error {
	if err := checkViewName(name); err != nil {
		return err
	}
	path := ViewPath(dir, name)
	var buf bytes.Buffer
	if err := encodeView(&buf, entries); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fsys := osFS{}
	if err := fsys.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return opError("create", filepath.Dir(path), err)
	}
	return writeFileAtomic(fsys, path, buf.Bytes(), 0o644)
}

func encodeView(w io.Writer, entries []ViewEntry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(viewHeader); err != nil {
		return err
	}
	rec := make([]string, len(viewHeader))
	for i, e := range entries {
		if e.Row < 0 {
			return fmt.Errorf("entry %d (%s): negative row %d", i, e.Path, e.Row)
		}
		rec[0], rec[1], rec[2], rec[3], rec[4] = e.Path, e.Label, e.Split, e.Key.String(), strconv.Itoa(e.Row)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadView reads the view name from the identity folder dir.
func ReadView(dir, name string) ([]ViewEntry, error) {
	if err := checkViewName(name); err != nil {
		return nil, err
	}
	path := ViewPath(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, opError("read view", path, err)
	}
	defer f.Close()
	entries, err := ParseView(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read view %s: %w", path, err)
	}
	return entries, nil
}

// ParseView decodes a view file's CSV content (see WriteView).
func ParseView(r io.Reader) ([]ViewEntry, error) {
	var out []ViewEntry
	err := ScanView(r, func(e ViewEntry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// ReadViewEach is ReadView that hands the entries to fn one at a time
// instead of holding them all (a view of 100M images holds gigabytes of
// paths). An error from fn stops the read and is returned.
func ReadViewEach(dir, name string, fn func(ViewEntry) error) error {
	if err := checkViewName(name); err != nil {
		return err
	}
	path := ViewPath(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return opError("read view", path, err)
	}
	defer f.Close()
	if err := ScanView(bufio.NewReader(f), fn); err != nil {
		return fmt.Errorf("read view %s: %w", path, err)
	}
	return nil
}

// ScanView is ParseView that calls fn for each entry in order instead of
// returning them.
func ScanView(r io.Reader, fn func(ViewEntry) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(viewHeader)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty view file (no header)")
		}
		return err
	}
	for i, want := range viewHeader {
		if head[i] != want {
			return fmt.Errorf("header column %d is %q, want %q", i+1, truncForMsg([]byte(head[i])), want)
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		var e ViewEntry
		e.Path, e.Label, e.Split = rec[0], rec[1], rec[2]
		if e.Path == "" {
			return fmt.Errorf("line %d: empty path", line)
		}
		if err := e.Key.UnmarshalText([]byte(rec[3])); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		row, err := strconv.ParseInt(rec[4], 10, 64)
		if err != nil || row < 0 || row > maxRow {
			return fmt.Errorf("line %d: row %q is not a row number", line, truncForMsg([]byte(rec[4])))
		}
		e.Row = int(row)
		if err := fn(e); err != nil {
			return err
		}
	}
}

// maxRow bounds row numbers read from text (fits int on 32-bit hosts).
const maxRow = 1<<31 - 1

// LoadMatrix gathers the features of entries from r into a new row-major
// matrix X of N = len(entries) rows and D = r.Dim() columns: X[i*D:(i+1)*D]
// is entries[i]'s vector. Rows are found by content hash (entries[i].Key);
// the Row column is not trusted. The caller owns X. An entry whose hash is
// not cached is an error naming its path.
func LoadMatrix(r *Reader, entries []ViewEntry) (X []float32, N, D int, err error) {
	N, D = len(entries), r.Dim()
	X = make([]float32, N*D)
	for i, e := range entries {
		row, ok := r.Lookup(e.Key)
		if !ok {
			return nil, 0, 0, fmt.Errorf("load features of %s: hash %s not in cache %s (run extract again)", e.Path, e.Key.String()[:16], r.Dir())
		}
		if err := r.Row(row, X[i*D:(i+1)*D]); err != nil {
			return nil, 0, 0, fmt.Errorf("load features of %s: %w", e.Path, err)
		}
	}
	return X, N, D, nil
}
