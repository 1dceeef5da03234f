package source

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/objstore"
)

// maxManifestBytes bounds a CSV manifest read from object storage.
const maxManifestBytes = 8 << 30

// openManifest reads a path,label[,split] CSV object and fills in each
// key's size and version from one listing of the manifest's folder.
func openManifest(ctx context.Context, raw string, loc *objstore.Location, name string) (*Dataset, error) {
	data, err := loc.ReadAll(ctx, name, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	where := loc.Describe(name)
	ds := &Dataset{URL: raw, Loc: loc}
	index := map[string]int{}
	classes := map[string]bool{}
	err = parseManifest(bytes.NewReader(data), where, func(line int, key, label, split string) error {
		if prev, dup := index[key]; dup {
			return fmt.Errorf("%s:%d: %s is already listed (row %d)", where, line, key, prev+1)
		}
		index[key] = len(ds.Samples)
		classes[label] = true
		ds.Samples = append(ds.Samples, Sample{Key: key, Label: label, Split: split, Size: -1})
		return nil
	})
	if err != nil {
		return nil, err
	}
	found := 0
	err = loc.Walk(ctx, "", func(o objstore.Object) error {
		if i, ok := index[o.Rel]; ok {
			ds.Samples[i].Size, ds.Samples[i].Version = o.Size, version(o)
			found++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found < len(ds.Samples) {
		var miss []string
		for _, s := range ds.Samples {
			if s.Size < 0 {
				miss = append(miss, s.Key)
				if len(miss) == 3 {
					break
				}
			}
		}
		return nil, fmt.Errorf("%s: %d listed keys do not exist in %s (first: %s)", where, len(ds.Samples)-found, loc, strings.Join(miss, ", "))
	}
	for c := range classes {
		ds.Classes = append(ds.Classes, c)
	}
	sort.Strings(ds.Classes)
	ds.sortSamples()
	return ds, nil
}

// parseManifest reads CSV rows with a header naming path and label (and
// optionally split), calling row for each with the key cleaned and checked
// to stay inside the manifest's folder. where names the file in messages.
func parseManifest(r io.Reader, where string, row func(line int, key, label, split string) error) error {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("%s: empty file, expected a header line \"path,label[,split]\"", where)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
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
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("%s:%d: %v", where, pe.Line, pe.Err)
			}
			return fmt.Errorf("%s: %w", where, err)
		}
		line, _ := cr.FieldPos(0)
		p := strings.TrimSpace(rec[col["path"]])
		label := strings.TrimSpace(rec[col["label"]])
		split := ""
		if col["split"] >= 0 {
			if s := strings.TrimSpace(rec[col["split"]]); s != "" {
				norm, ok := imaging.SplitName(s)
				if !ok {
					return fmt.Errorf("%s:%d: split %q must be train, val or test (or empty)", where, line, s)
				}
				split = norm
			}
		}
		switch {
		case p == "":
			return fmt.Errorf("%s:%d: empty path", where, line)
		case label == "":
			return fmt.Errorf("%s:%d: empty label for %s", where, line, p)
		}
		// Judge the path with Windows separators already turned into '/':
		// `\x` is as absolute as `/x`.
		slashed := strings.ReplaceAll(p, `\`, "/")
		key := path.Clean(slashed)
		if strings.HasPrefix(slashed, "/") || key == ".." || strings.HasPrefix(key, "../") || strings.Contains(p, "://") {
			return fmt.Errorf("%s:%d: path %s is outside the manifest's folder", where, line, p)
		}
		if key == "." {
			return fmt.Errorf("%s:%d: path %s names the manifest's folder, not an image", where, line, p)
		}
		if err := row(line, key, label, split); err != nil {
			return err
		}
		rows++
	}
	if rows == 0 {
		return fmt.Errorf("%s: no rows after the header, expected lines \"path,label[,split]\"", where)
	}
	return nil
}
