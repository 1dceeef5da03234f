package imaging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Sample is one labelled image of a dataset.
type Sample struct {
	Path  string // file path: Dataset.Root joined with the relative path (or as resolved from the CSV)
	Label string // class name
	Split string // "", "train", "val" or "test"
}

// Skipped is a file or folder OpenDataset passed over, with the reason.
type Skipped struct {
	Path   string
	Reason string
}

// Dataset is a labelled set of image files.
type Dataset struct {
	Root    string    // the folder, or the CSV file, it was opened from
	Classes []string  // sorted, unique class names
	Samples []Sample  // sorted by Path
	Ignored []Skipped // files passed over (not images, outside class folders, repeated through symlinks), sorted by Path
}

// Split names recognised as top-level folders, and what they normalise to.
var splitNames = map[string]string{
	"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test",
}

// ImageExtensions are the file extensions (lower case, with dot) that
// dataset walking treats as images. The content is sniffed at decode time,
// so a mislabelled extension still decodes correctly.
var ImageExtensions = []string{".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

func isImageName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range ImageExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// OpenDataset opens a labelled image collection:
//
//   - a folder with one sub-folder per class, images anywhere below it
//     (root/<class>/**/<image>);
//   - a folder whose only sub-folders are splits (train, val, test; valid
//     and validation count as val), each with class folders
//     (root/<split>/<class>/**/<image>);
//   - a .csv manifest with a header naming the columns path and label, and
//     optionally split. Relative paths are resolved against the CSV's
//     folder; paths leaving that folder (.., absolute paths elsewhere,
//     symlinks pointing outside) are refused.
//
// Hidden files and folders (starting with a dot) are skipped; other files
// with a non-image extension are listed in Ignored. Symlinked folders are
// followed once (loops are safe). A class folder without images is an
// error, as is a folder with no images at all.
func OpenDataset(path string) (*Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	if !st.IsDir() {
		if strings.EqualFold(filepath.Ext(path), ".csv") {
			return openCSV(path)
		}
		return nil, fmt.Errorf("open dataset %s: not a folder or a .csv manifest", path)
	}
	return openFolder(filepath.Clean(path))
}

type walker struct {
	visited  map[string]bool
	reserved map[string]bool // real paths of the class folders themselves
	ignored  []Skipped
}

// images lists the image files below dir (recursively), following
// symlinked folders once.
func (w *walker) images(dir string, top bool) ([]string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	if w.visited[real] || (!top && w.reserved[real]) {
		w.ignored = append(w.ignored, Skipped{dir, "folder already visited through a symlink"})
		return nil, nil
	}
	w.visited[real] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if hidden(name) {
			continue
		}
		p := filepath.Join(dir, name)
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			st, err := os.Stat(p)
			if err != nil {
				w.ignored = append(w.ignored, Skipped{p, "broken symlink"})
				continue
			}
			mode = st.Mode().Type()
		}
		switch {
		case mode.IsDir():
			sub, err := w.images(p, false)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case !mode.IsRegular():
			w.ignored = append(w.ignored, Skipped{p, "not a regular file"})
		case isImageName(name):
			out = append(out, p)
		default:
			w.ignored = append(w.ignored, Skipped{p, "not an image file extension"})
		}
	}
	return out, nil
}

// subdirs lists the non-hidden folders (or symlinks to folders) of dir and
// records its other entries as ignored.
func (w *walker) subdirs(dir, why string) ([]string, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("open dataset: %w", err)
	}
	var dirs []string
	loose := 0
	for _, e := range entries {
		if hidden(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(p); err == nil {
				isDir = st.IsDir()
			}
		}
		if isDir {
			dirs = append(dirs, e.Name())
			continue
		}
		if isImageName(e.Name()) {
			loose++
		}
		w.ignored = append(w.ignored, Skipped{p, why})
	}
	sort.Strings(dirs)
	return dirs, loose, nil
}

func openFolder(root string) (*Dataset, error) {
	w := &walker{visited: map[string]bool{}, reserved: map[string]bool{}}
	if real, err := filepath.EvalSymlinks(root); err == nil {
		w.visited[real] = true
	}
	top, loose, err := w.subdirs(root, "not inside a class folder")
	if err != nil {
		return nil, err
	}
	expected := fmt.Sprintf("expected %s/<class>/<image> folders", root)
	if len(top) == 0 {
		if loose > 0 {
			return nil, fmt.Errorf("no class folders in %s: found %d images directly in it; %s", root, loose, expected)
		}
		return nil, fmt.Errorf("no images found in %s: %s", root, expected)
	}
	splitMode := true
	for _, d := range top {
		if _, ok := splitNames[strings.ToLower(d)]; !ok {
			splitMode = false
			break
		}
	}
	ds := &Dataset{Root: root}
	classes := map[string]bool{}
	addClass := func(dir, label, split string) error {
		imgs, err := w.images(dir, true)
		if err != nil {
			return err
		}
		if len(imgs) == 0 {
			return fmt.Errorf("class folder %s has no images: expected image files (%s) in it or below it", dir, strings.Join(ImageExtensions, " "))
		}
		classes[label] = true
		for _, p := range imgs {
			ds.Samples = append(ds.Samples, Sample{Path: p, Label: label, Split: split})
		}
		return nil
	}
	reserve := func(dir string) {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			w.reserved[real] = true
		}
	}
	if splitMode {
		for _, d := range top {
			if cls, err := os.ReadDir(filepath.Join(root, d)); err == nil {
				for _, c := range cls {
					reserve(filepath.Join(root, d, c.Name()))
				}
			}
		}
	} else {
		for _, c := range top {
			reserve(filepath.Join(root, c))
		}
	}
	if splitMode {
		seen := map[string]string{}
		for _, d := range top {
			split := splitNames[strings.ToLower(d)]
			if prev, dup := seen[split]; dup {
				return nil, fmt.Errorf("open dataset %s: folders %s and %s are both the %q split", root, prev, d, split)
			}
			seen[split] = d
			sdir := filepath.Join(root, d)
			cls, _, err := w.subdirs(sdir, "not inside a class folder")
			if err != nil {
				return nil, err
			}
			if len(cls) == 0 {
				return nil, fmt.Errorf("split folder %s has no class folders: expected %s/<class>/<image>", sdir, sdir)
			}
			for _, c := range cls {
				if err := addClass(filepath.Join(sdir, c), c, split); err != nil {
					return nil, err
				}
			}
		}
	} else {
		for _, c := range top {
			if err := addClass(filepath.Join(root, c), c, ""); err != nil {
				return nil, err
			}
		}
	}
	if len(ds.Samples) == 0 {
		return nil, fmt.Errorf("no images found in %s: %s", root, expected)
	}
	ds.finish(classes, w.ignored)
	return ds, nil
}

func (ds *Dataset) finish(classes map[string]bool, ignored []Skipped) {
	for c := range classes {
		ds.Classes = append(ds.Classes, c)
	}
	sort.Strings(ds.Classes)
	sort.SliceStable(ds.Samples, func(i, j int) bool { return ds.Samples[i].Path < ds.Samples[j].Path })
	sort.SliceStable(ignored, func(i, j int) bool { return ignored[i].Path < ignored[j].Path })
	ds.Ignored = ignored
}

// within reports whether p (clean, absolute) is dir or below it.
func within(dir, p string) bool {
	if p == dir {
		return true
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func openCSV(path string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	defer f.Close()
	absCSV, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open dataset %s: %w", path, err)
	}
	dir := filepath.Dir(absCSV)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("open dataset %s: %w", path, err)
	}
	ds := &Dataset{Root: path}
	classes := map[string]bool{}
	firstLine := map[string]int{}
	err = ReadManifest(f, path, func(row ManifestRow) error {
		p, line := row.Path, row.Line
		full := p
		if !filepath.IsAbs(full) {
			full = filepath.Join(dir, filepath.FromSlash(p))
		}
		full = filepath.Clean(full)
		if !within(dir, full) {
			return fmt.Errorf("%s:%d: path %s is outside the manifest's folder %s", path, line, p, dir)
		}
		real, err := filepath.EvalSymlinks(full)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, line, p, errors.Unwrap(err))
		}
		if !within(realDir, real) {
			return fmt.Errorf("%s:%d: path %s resolves through a symlink to %s, outside the manifest's folder %s", path, line, p, real, dir)
		}
		st, err := os.Stat(real)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s:%d: %s is not a regular file", path, line, p)
		}
		if prev, dup := firstLine[full]; dup {
			return fmt.Errorf("%s:%d: %s is already listed on line %d", path, line, p, prev)
		}
		firstLine[full] = line
		classes[row.Label] = true
		ds.Samples = append(ds.Samples, Sample{Path: full, Label: row.Label, Split: row.Split})
		return nil
	})
	if err != nil {
		return nil, err
	}
	ds.finish(classes, nil)
	return ds, nil
}

// ClassIndex maps each class name to its index in Classes.
func (ds *Dataset) ClassIndex() map[string]int {
	m := make(map[string]int, len(ds.Classes))
	for i, c := range ds.Classes {
		m[c] = i
	}
	return m
}

// Split returns the samples of one split ("" for samples without a split),
// in Samples order. The slice is freshly allocated.
func (ds *Dataset) Split(name string) []Sample {
	var out []Sample
	for _, s := range ds.Samples {
		if s.Split == name {
			out = append(out, s)
		}
	}
	return out
}
