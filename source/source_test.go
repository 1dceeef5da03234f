package source_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
	"github.com/headtune/headtune/source"
)

func put(t *testing.T, l *objstore.Location, files map[string]string) {
	t.Helper()
	for k, v := range files {
		if err := l.WriteAll(context.Background(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
}

func summary(ds *source.Dataset) string {
	var b strings.Builder
	fmt.Fprintf(&b, "classes=%v", ds.Classes)
	for _, s := range ds.Samples {
		fmt.Fprintf(&b, " %s:%s:%s:%d", s.Key, s.Label, s.Split, s.Size)
	}
	fmt.Fprintf(&b, " ignored=%d", ds.IgnoredCount)
	return b.String()
}

func TestOpenLayouts(t *testing.T) {
	ctx := context.Background()
	f := objstoretest.Start(t, "data")
	for _, tc := range []struct {
		name  string
		files map[string]string
		open  string // relative to the location
		want  string
		err   string
	}{
		{name: "classes", files: map[string]string{"cat/a.jpg": "aa", "cat/sub/b.png": "bbb", "dog/c.JPG": "c", "dog/notes.txt": "x", "loose.jpg": "l", ".hidden/x.jpg": "h"},
			want: "classes=[cat dog] cat/a.jpg:cat::2 cat/sub/b.png:cat::3 dog/c.JPG:dog::1 ignored=2"},
		{name: "splits", files: map[string]string{"train/cat/a.jpg": "aa", "Validation/dog/b.jpg": "b", "test/cat/c.jpg": "ccc", "train/x.jpg": "x"},
			want: "classes=[cat dog] Validation/dog/b.jpg:dog:val:1 test/cat/c.jpg:cat:test:3 train/cat/a.jpg:cat:train:2 ignored=1"},
		{name: "manifest", files: map[string]string{"m/list.csv": "path,label,split\nimg/1.jpg,cat,train\nimg/2.jpg,dog,\n", "m/img/1.jpg": "1", "m/img/2.jpg": "22", "m/img/3.jpg": "333"},
			open: "m/list.csv", want: "classes=[cat dog] img/1.jpg:cat:train:1 img/2.jpg:dog::2 ignored=0"},
		{name: "manifest-missing", files: map[string]string{"m/list.csv": "path,label\nimg/1.jpg,cat\nimg/9.jpg,dog\n", "m/img/1.jpg": "1"},
			open: "m/list.csv", err: "1 listed keys do not exist"},
		{name: "manifest-escape", files: map[string]string{"m/list.csv": "path,label\n../secret.jpg,cat\n"},
			open: "m/list.csv", err: "list.csv:2: path ../secret.jpg is outside"},
		{name: "flat", files: map[string]string{"a.jpg": "a"}, err: "no class folders"},
		{name: "empty-classes", files: map[string]string{"cat/readme.md": "a"}, err: "no images found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "t-" + tc.name + "/"
			for k, v := range tc.files {
				if err := f.Put(prefix+k, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			ds, err := source.Open(ctx, f.URL(prefix+tc.open))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ds.Close()
			if got := summary(ds); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			for _, s := range ds.Samples {
				if !strings.HasPrefix(s.Version, "md5:") {
					t.Errorf("%s: version %q, want the listed MD5", s.Key, s.Version)
				}
			}
		})
	}
}

// TestLocalFolder: a local folder (path or file URL) lists as
// imaging.OpenDataset does, keyed relative to the folder.
func TestLocalFolder(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"cat/a.jpg", "dog/b.png", "dog/deep/c.jpg"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644)
	}
	for _, url := range []string{dir, "file://" + dir} {
		ds, err := source.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		want := "classes=[cat dog] cat/a.jpg:cat::9 dog/b.png:dog::9 dog/deep/c.jpg:dog::14 ignored=0"
		if got := summary(ds); got != want {
			t.Errorf("%s:\ngot  %s\nwant %s", url, got, want)
		}
		data, err := source.Read(context.Background(), ds.Loc, ds.Samples[2], nil, 100)
		if err != nil || string(data) != "dog/deep/c.jpg" {
			t.Errorf("Read = %q, %v", data, err)
		}
		ds.Close()
	}
}

// TestReadDetectsChanges: an object deleted or rewritten after listing is
// refused with an error saying which.
func TestReadDetectsChanges(t *testing.T) {
	ctx := context.Background()
	f := objstoretest.Start(t, "data")
	for _, k := range []string{"c/a.jpg", "c/b.jpg", "c/d.jpg"} {
		f.Put("ds/"+k, []byte("original "+k))
	}
	ds, err := source.Open(ctx, f.URL("ds"))
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	f.Delete("ds/c/a.jpg")
	f.Put("ds/c/b.jpg", []byte("replaced c/b.jpg")) // same size, other bytes
	if _, err := source.Read(ctx, ds.Loc, ds.Samples[0], nil, 1<<20); !objstore.IsNotExist(err) {
		t.Errorf("deleted: err = %v, want not-exist", err)
	}
	if _, err := source.Read(ctx, ds.Loc, ds.Samples[1], nil, 1<<20); !errors.Is(err, source.ErrChanged) {
		t.Errorf("changed: err = %v, want ErrChanged", err)
	}
	if data, err := source.Read(ctx, ds.Loc, ds.Samples[2], nil, 1<<20); err != nil || string(data) != "original c/d.jpg" {
		t.Errorf("unchanged: %q, %v", data, err)
	}
	// mtime versions (stores without MD5): a local file touched later.
	dir := t.TempDir()
	p := filepath.Join(dir, "c", "x.jpg")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("x"), 0o644)
	local, err := source.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	if _, err := source.Read(ctx, local.Loc, local.Samples[0], nil, 10); !errors.Is(err, source.ErrChanged) {
		t.Errorf("touched local file: err = %v, want ErrChanged", err)
	}
}
