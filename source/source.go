// Package source lists labelled image datasets wherever they live — a
// local folder or CSV manifest, or a prefix or manifest in object storage
// (objstore URLs) — and reads their images back with a check that each is
// still the object that was listed.
//
// The layouts are imaging.OpenDataset's: one folder (prefix) per class,
// optionally below train/val/test split folders, or a CSV manifest with
// the columns path and label (and optionally split), paths relative to
// the manifest's folder. A bucket is listed once, page by page; keys are
// never fetched to be listed.
package source

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/objstore"
)

// Sample is one labelled image of a Dataset.
type Sample struct {
	// Key is the image's key relative to the dataset's location, with "/"
	// separators (for a local dataset: its path relative to the folder).
	Key   string `json:"key"`
	Label string `json:"label"`
	Split string `json:"split,omitempty"` // "", "train", "val" or "test"
	// Size is the object's size in bytes as listed.
	Size int64 `json:"size"`
	// Version identifies the listed content: "md5:<hex>" when the store
	// reports an MD5, else "mtime:<unix ns>". Read refuses an object whose
	// content no longer matches it.
	Version string `json:"version"`
}

// Dataset is a listed dataset. Loc is the folder keys are relative to; the
// caller closes it (Close).
type Dataset struct {
	URL string // what the user named
	// Root locates the folder keys are relative to, in a form Open and
	// objstore.Open accept: the URL of the prefix or of the manifest's
	// folder, or an absolute local path.
	Root    string
	Loc     *objstore.Location // the dataset folder, or the manifest's folder
	Classes []string           // sorted, unique
	Samples []Sample           // sorted by Key
	Ignored []imaging.Skipped  // first maxIgnored keys passed over, with the reason
	// IgnoredCount counts every key passed over (Ignored keeps the first
	// maxIgnored).
	IgnoredCount int
}

// maxIgnored bounds Dataset.Ignored: a bucket may hold millions of
// non-image objects.
const maxIgnored = 1000

// Close closes the dataset's location.
func (ds *Dataset) Close() error { return ds.Loc.Close() }

// Bytes returns the total listed size of the samples.
func (ds *Dataset) Bytes() int64 {
	var n int64
	for _, s := range ds.Samples {
		n += s.Size
	}
	return n
}

// Open lists the dataset raw names: a local folder or .csv file, or an
// object storage URL of a prefix or of a .csv manifest object.
func Open(ctx context.Context, raw string) (*Dataset, error) {
	if !objstore.IsURL(raw) || strings.HasPrefix(raw, "file://") {
		local := raw
		if strings.HasPrefix(raw, "file://") {
			u, err := url.Parse(raw)
			if err != nil {
				return nil, fmt.Errorf("dataset %q: %w", raw, err)
			}
			local = u.Path
		}
		return openLocal(ctx, raw, local)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("dataset %q: %w", raw, err)
	}
	if strings.EqualFold(path.Ext(u.Path), ".csv") {
		dir := *u
		dir.Path = path.Dir(u.Path)
		loc, err := objstore.Open(ctx, dir.String())
		if err != nil {
			return nil, err
		}
		ds, err := openManifest(ctx, raw, loc, path.Base(u.Path))
		if err != nil {
			loc.Close()
			return nil, err
		}
		ds.Root = dir.String()
		return ds, nil
	}
	loc, err := objstore.Open(ctx, raw)
	if err != nil {
		return nil, err
	}
	ds, err := listFolders(ctx, raw, loc)
	if err != nil {
		loc.Close()
		return nil, err
	}
	ds.Root = raw
	return ds, nil
}

// openLocal lists a local dataset with imaging.OpenDataset (symlink rules
// and all) and records sizes and modification times.
func openLocal(ctx context.Context, raw, p string) (*Dataset, error) {
	im, err := imaging.OpenDataset(p)
	if err != nil {
		return nil, err
	}
	base := im.Root
	if st, err := os.Stat(base); err == nil && !st.IsDir() {
		base = filepath.Dir(base)
	}
	base, err = filepath.Abs(base)
	if err != nil {
		return nil, err
	}
	loc, err := objstore.Open(ctx, base)
	if err != nil {
		return nil, err
	}
	ds := &Dataset{URL: raw, Root: base, Loc: loc, Classes: im.Classes, Ignored: im.Ignored, IgnoredCount: len(im.Ignored)}
	for _, s := range im.Samples {
		abs, _ := filepath.Abs(s.Path)
		rel, err := filepath.Rel(base, abs)
		if err != nil || strings.HasPrefix(rel, "..") {
			loc.Close()
			return nil, fmt.Errorf("dataset %s: %s is outside %s (a symlink?); list it by a path inside the folder", raw, s.Path, base)
		}
		st, err := os.Stat(s.Path)
		if err != nil {
			loc.Close()
			return nil, fmt.Errorf("dataset %s: %w", raw, err)
		}
		ds.Samples = append(ds.Samples, Sample{Key: filepath.ToSlash(rel), Label: s.Label, Split: s.Split,
			Size: st.Size(), Version: "mtime:" + strconv.FormatInt(st.ModTime().UnixNano(), 10)})
	}
	ds.sortSamples()
	return ds, nil
}

func (ds *Dataset) ignore(key, why string) {
	ds.IgnoredCount++
	if len(ds.Ignored) < maxIgnored {
		ds.Ignored = append(ds.Ignored, imaging.Skipped{Path: key, Reason: why})
	}
}

func (ds *Dataset) sortSamples() {
	sort.Slice(ds.Samples, func(i, j int) bool { return ds.Samples[i].Key < ds.Samples[j].Key })
}

func version(o objstore.Object) string {
	if len(o.MD5) == md5.Size {
		return "md5:" + hex.EncodeToString(o.MD5)
	}
	return "mtime:" + strconv.FormatInt(o.ModTime.UnixNano(), 10)
}

func hiddenKey(parts []string) bool {
	for _, p := range parts {
		if strings.HasPrefix(p, ".") {
			return true
		}
	}
	return false
}

// listFolders lists a class-folder (or split/class) layout under a prefix:
// one delimiter listing of the top level to tell the layouts apart, then
// one flat listing of everything.
func listFolders(ctx context.Context, raw string, loc *objstore.Location) (*Dataset, error) {
	top, loose, err := loc.Dirs(ctx, "")
	if err != nil {
		return nil, err
	}
	var visible []string
	for _, d := range top {
		if !strings.HasPrefix(d, ".") {
			visible = append(visible, d)
		}
	}
	expected := fmt.Sprintf("expected %s<class>/<image> keys", loc)
	if len(visible) == 0 {
		if loose > 0 {
			return nil, fmt.Errorf("no class folders in %s: found %d objects directly in it; %s", loc, loose, expected)
		}
		return nil, fmt.Errorf("no images found in %s: %s", loc, expected)
	}
	splitMode := true
	seen := map[string]string{}
	for _, d := range visible {
		s, ok := imaging.SplitName(d)
		if !ok {
			splitMode = false
			break
		}
		if prev, dup := seen[s]; dup {
			return nil, fmt.Errorf("dataset %s: folders %s and %s are both the %q split", loc, prev, d, s)
		}
		seen[s] = d
	}
	ds := &Dataset{URL: raw, Loc: loc}
	classes := map[string]int{} // "split/class" folder -> images
	classOf := map[string]bool{}
	err = loc.Walk(ctx, "", func(o objstore.Object) error {
		parts := strings.Split(o.Rel, "/")
		if hiddenKey(parts) {
			return nil
		}
		need := 2
		if splitMode {
			need = 3
		}
		if len(parts) < need {
			ds.ignore(o.Rel, "not inside a class folder")
			return nil
		}
		if !imaging.IsImageName(o.Rel) {
			ds.ignore(o.Rel, "not an image file extension")
			return nil
		}
		s := Sample{Key: o.Rel, Label: parts[0], Size: o.Size, Version: version(o)}
		folder := parts[0]
		if splitMode {
			s.Split, _ = imaging.SplitName(parts[0])
			s.Label = parts[1]
			folder = parts[0] + "/" + parts[1]
		}
		classes[folder]++
		classOf[s.Label] = true
		ds.Samples = append(ds.Samples, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ds.Samples) == 0 {
		return nil, fmt.Errorf("no images found in %s: %s (image extensions: %s)", loc, expected, strings.Join(imaging.ImageExtensions, " "))
	}
	for c := range classOf {
		ds.Classes = append(ds.Classes, c)
	}
	sort.Strings(ds.Classes)
	ds.sortSamples()
	return ds, nil
}

// ErrChanged is matched (errors.Is) by Read's error for an object that is
// no longer the one listed (another size or content).
var ErrChanged = errors.New("object changed since it was listed")

// Read reads sample s into buf (reused when large enough) and checks it is
// the object that was listed: same size, and same MD5 or modification
// time as Version records. A missing object's error matches
// objstore.ErrNotExist, a changed one's ErrChanged. max bounds the size.
func Read(ctx context.Context, loc *objstore.Location, s Sample, buf []byte, max int64) ([]byte, error) {
	data, info, err := loc.ReadInto(ctx, s.Key, buf, max)
	if err != nil {
		return data, err
	}
	if s.Size >= 0 && s.Version != "" && info.Size != s.Size {
		return data, fmt.Errorf("%w: %d bytes, listed with %d", ErrChanged, info.Size, s.Size)
	}
	kind, want, _ := strings.Cut(s.Version, ":")
	switch kind {
	case "md5":
		sum := md5.Sum(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			return data, fmt.Errorf("%w: MD5 %s, listed with %s", ErrChanged, got[:12], want[:min(12, len(want))])
		}
	case "mtime":
		if info.ModTime.IsZero() {
			break
		}
		if got := strconv.FormatInt(info.ModTime.UnixNano(), 10); got != want {
			return data, fmt.Errorf("%w: modified at %s", ErrChanged, info.ModTime.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
	}
	return data, nil
}
