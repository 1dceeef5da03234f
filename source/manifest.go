package source

import (
	"bytes"
	"context"
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

// parseManifest reads a CSV manifest (imaging.ReadManifest), calling row for
// each with the key cleaned and checked to stay inside the manifest's
// folder. where names the file in messages.
func parseManifest(r io.Reader, where string, row func(line int, key, label, split string) error) error {
	return imaging.ReadManifest(r, where, func(mr imaging.ManifestRow) error {
		p, line := mr.Path, mr.Line
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
		return row(line, key, mr.Label, mr.Split)
	})
}
