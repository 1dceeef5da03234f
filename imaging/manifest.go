package imaging

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ManifestRow is one data row of a CSV manifest, its fields trimmed of
// surrounding spaces.
type ManifestRow struct {
	Line  int    // 1-based line of the row in the file, for messages
	Path  string // never empty
	Label string // never empty
	Split string // "", "train", "val" or "test"
}

// ReadManifest reads a CSV manifest: a header naming the columns path and
// label, and optionally split, in any order and case (other columns are
// ignored), then one image per row. It checks what every manifest needs
// (non-empty path and label, a known split name, at least one row) and calls
// row for each row in file order; an error from row stops the reading and is
// returned as is. What a path means (a local file, an object key) is the
// caller's to check. where names the manifest in messages, which have the
// form "where:line: problem".
func ReadManifest(r io.Reader, where string, row func(ManifestRow) error) error {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true // the strings of a record outlive it; only the slice is reused
	header, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("%s: empty file, expected a header line \"path,label[,split]\"", where)
	}
	if err != nil {
		return manifestError(where, err)
	}
	col := map[string]int{"path": -1, "label": -1, "split": -1}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, ok := col[h]; ok {
			if col[h] >= 0 {
				return fmt.Errorf("%s:1: column %q appears twice", where, h)
			}
			col[h] = i
		}
	}
	if col["path"] < 0 || col["label"] < 0 {
		return fmt.Errorf("%s:1: header %q must name the columns path and label (and optionally split)", where, strings.Join(header, ","))
	}
	rows := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return manifestError(where, err)
		}
		// FieldPos panics without a record: only after a successful Read.
		line, _ := cr.FieldPos(0)
		mr := ManifestRow{Line: line, Path: strings.TrimSpace(rec[col["path"]]), Label: strings.TrimSpace(rec[col["label"]])}
		if col["split"] >= 0 {
			if s := strings.TrimSpace(rec[col["split"]]); s != "" {
				norm, ok := SplitName(s)
				if !ok {
					return fmt.Errorf("%s:%d: split %q must be train, val or test (or empty)", where, line, s)
				}
				mr.Split = norm
			}
		}
		switch {
		case mr.Path == "":
			return fmt.Errorf("%s:%d: empty path", where, line)
		case mr.Label == "":
			return fmt.Errorf("%s:%d: empty label for %s", where, line, mr.Path)
		}
		if err := row(mr); err != nil {
			return err
		}
		rows++
	}
	if rows == 0 {
		return fmt.Errorf("%s: no rows after the header, expected lines \"path,label[,split]\"", where)
	}
	return nil
}

// manifestError turns a CSV syntax error into "where:line: problem".
func manifestError(where string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: %v", where, pe.Line, pe.Err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
