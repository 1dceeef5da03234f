package imaging

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// mkTree creates files (content "x") and folders (names ending in "/")
// under a fresh temporary root.
func mkTree(t *testing.T, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func rel(t *testing.T, root string, ds *Dataset) []string {
	t.Helper()
	var out []string
	for _, s := range ds.Samples {
		r, err := filepath.Rel(root, s.Path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, filepath.ToSlash(r)+"|"+s.Label+"|"+s.Split)
	}
	return out
}

func TestOpenDatasetFolders(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    []string // rel path|label|split, sorted by path
		classes []string
		ignored int
	}{
		{
			name:    "class folders, recursive, mixed case extensions",
			files:   []string{"dog/a.JPG", "dog/sub/b.png", "cat/c.jpeg", "cat/notes.txt", "cat/.hidden.jpg", ".git/x.jpg", "readme.md"},
			want:    []string{"cat/c.jpeg|cat|", "dog/a.JPG|dog|", "dog/sub/b.png|dog|"},
			classes: []string{"cat", "dog"},
			ignored: 2, // notes.txt, readme.md
		},
		{
			name:    "splits",
			files:   []string{"train/a/1.jpg", "train/b/2.webp", "validation/a/3.gif", "test/b/4.tiff"},
			want:    []string{"test/b/4.tiff|b|test", "train/a/1.jpg|a|train", "train/b/2.webp|b|train", "validation/a/3.gif|a|val"},
			classes: []string{"a", "b"},
		},
		{
			name:    "a class named like a split among others is a class",
			files:   []string{"train/1.jpg", "other/2.jpg"},
			want:    []string{"other/2.jpg|other|", "train/1.jpg|train|"},
			classes: []string{"other", "train"},
		},
		{
			name:    "spaces and non-ASCII",
			files:   []string{"chat noir/été 1.jpg", "狗/图片.png"},
			want:    []string{"chat noir/été 1.jpg|chat noir|", "狗/图片.png|狗|"},
			classes: []string{"chat noir", "狗"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := mkTree(t, tc.files...)
			ds, err := OpenDataset(root)
			if err != nil {
				t.Fatal(err)
			}
			if got := rel(t, root, ds); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("samples\n got %q\nwant %q", got, tc.want)
			}
			if !reflect.DeepEqual(ds.Classes, tc.classes) {
				t.Errorf("classes %q, want %q", ds.Classes, tc.classes)
			}
			if len(ds.Ignored) != tc.ignored {
				t.Errorf("ignored %v, want %d entries", ds.Ignored, tc.ignored)
			}
		})
	}
}

func TestOpenDatasetErrors(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string // substring of the error
	}{
		{"empty folder", []string{"x/"}, "has no images"},
		{"nothing at all", []string{".keep"}, "no images found in"},
		{"images but no class folders", []string{"a.jpg", "b.png"}, "found 2 images directly in it"},
		{"empty class folder", []string{"cat/a.jpg", "dog/readme.txt"}, "class folder"},
		{"split without classes", []string{"train/a.jpg"}, "no class folders"},
		{"two val splits", []string{"val/a/1.jpg", "valid/a/2.jpg"}, "both the \"val\" split"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := mkTree(t, tc.files...)
			_, err := OpenDataset(root)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestOpenDatasetSymlinkLoop(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges on Windows")
	}
	root := mkTree(t, "cat/a.jpg", "dog/b.jpg", "shared/c.jpg")
	// cat/loop -> cat (a loop), dog/more -> ../shared (followed once)
	if err := os.Symlink(filepath.Join(root, "cat"), filepath.Join(root, "cat", "loop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "shared"), filepath.Join(root, "dog", "more")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "missing"), filepath.Join(root, "dog", "broken.jpg")); err != nil {
		t.Fatal(err)
	}
	ext := t.TempDir() // a folder outside the dataset, linked twice
	if err := os.WriteFile(filepath.Join(ext, "e.png"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"cat/ext1", "cat/ext2"} {
		if err := os.Symlink(ext, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	got := rel(t, root, ds)
	// shared/ is a class of its own and also reached via dog/more: its
	// images belong to their own folder's class only.
	want := []string{"cat/a.jpg|cat|", "cat/ext1/e.png|cat|", "dog/b.jpg|dog|", "shared/c.jpg|shared|"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("samples %q, want prefix %q", got, want)
	}
	reasons := map[string]bool{}
	for _, s := range ds.Ignored {
		reasons[s.Reason] = true
	}
	if !reasons["broken symlink"] || !reasons["folder already visited through a symlink"] {
		t.Errorf("ignored %v: want a broken symlink and a repeated folder", ds.Ignored)
	}
}

func TestOpenDatasetCSV(t *testing.T) {
	root := mkTree(t, "data/img one.jpg", "data/b.png", "data/sub/c.gif", "outside.jpg")
	dir := filepath.Join(root, "data")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("ok.csv", "\ufeffpath,label,split\nsub/c.gif,cat,train\n\"img one.jpg\",dog,Validation\n"+filepath.Join(dir, "b.png")+",dog,\n")
	ds, err := OpenDataset(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b.png|dog|", "img one.jpg|dog|val", "sub/c.gif|cat|train"}
	if got := rel(t, dir, ds); !reflect.DeepEqual(got, want) {
		t.Errorf("samples %q, want %q", got, want)
	}
	if !reflect.DeepEqual(ds.Classes, []string{"cat", "dog"}) {
		t.Errorf("classes %q", ds.Classes)
	}

	if err := os.Symlink(filepath.Join(root, "outside.jpg"), filepath.Join(dir, "link.jpg")); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, content, want string
	}{
		{"dotdot", "path,label\nb.png,a\n../outside.jpg,a\n", "bad.csv:3: path ../outside.jpg is outside"},
		{"absolute", "path,label\n" + filepath.Join(root, "outside.jpg") + ",a\n", "bad.csv:2: path"},
		{"symlink", "path,label\nlink.jpg,a\n", "bad.csv:2: path link.jpg resolves through a symlink"},
		{"missing", "path,label\nnope.jpg,a\n", "bad.csv:2: nope.jpg: no such file"},
		{"no label", "path,label\nb.png,\n", "bad.csv:2: empty label"},
		{"bad header", "file,class\nb.png,a\n", "bad.csv:1: header"},
		{"bad split", "path,label,split\nb.png,a,dev\n", "bad.csv:2: split \"dev\""},
		{"duplicate", "path,label\nb.png,a\n./b.png,b\n", "bad.csv:3: ./b.png is already listed on line 2"},
		{"header only", "path,label\n", "no rows"},
		{"empty", "", "empty file"},
		{"ragged", "path,label\nb.png,a,extra\n", "bad.csv:2:"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenDataset(write("bad.csv", tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
