package featcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// faultFS is the real file system with one injectable failure: when armed,
// the first matching operation on a file with the given base name fails.
type faultFS struct {
	osFS
	name    string // base name of the file to fail ("features.f32", "rows.idx")
	op      string // "write", "sync"
	err     error  // nil with partial: a short write without error
	partial bool   // write half the bytes before failing
	armed   bool
	fired   int
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	of, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{file: of, fs: f, base: filepath.Base(name)}, nil
}

type faultFile struct {
	file
	fs   *faultFS
	base string
}

func (f *faultFile) hit(op string) bool {
	if f.fs.armed && f.fs.op == op && f.fs.name == f.base {
		f.fs.armed = false
		f.fs.fired++
		return true
	}
	return false
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.hit("write") {
		n := 0
		if f.fs.partial {
			n, _ = f.file.WriteAt(p[:len(p)/2], off)
		}
		return n, f.fs.err
	}
	return f.file.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if f.hit("sync") {
		return f.fs.err
	}
	return f.file.Sync()
}

// TestWriteFailures injects disk-full, I/O and short-write failures at every
// step of a commit and checks that the run stops with a clear error, that
// what was committed before stays readable and verified, and that a new
// writer resumes cleanly.
func TestWriteFailures(t *testing.T) {
	const dim = 64
	for _, tc := range []struct {
		name, file, op string
		err            error
		partial        bool
		wantMsg        string
	}{
		{"data disk full", dataName, "write", syscall.ENOSPC, false, "write features.f32: no space left on device"},
		{"data disk full midway", dataName, "write", syscall.ENOSPC, true, "write features.f32: no space left on device"},
		{"data short write", dataName, "write", nil, true, "write features.f32: short write"},
		{"data sync I/O error", dataName, "sync", syscall.EIO, false, "sync features.f32: input/output error"},
		{"index disk full", indexName, "write", syscall.ENOSPC, false, "write rows.idx: no space left on device"},
		{"index disk full midway", indexName, "write", syscall.ENOSPC, true, "write rows.idx: no space left on device"},
		{"index sync I/O error", indexName, "sync", syscall.EIO, false, "sync rows.idx: input/output error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			id := testIdentity(dim)
			ffs := &faultFS{name: tc.file, op: tc.op, err: tc.err, partial: tc.partial}
			w, err := OpenWriter(context.Background(), root, id, WriterOptions{fs: ffs})
			if err != nil {
				t.Fatal(err)
			}
			keys, rows := batch(0, 10, dim)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			ffs.armed = true
			keys, rows = batch(10, 20, dim)
			err = w.Append(keys, rows)
			if ffs.fired != 1 {
				t.Fatalf("fault fired %d times", ffs.fired)
			}
			if err == nil {
				t.Fatal("Append succeeded despite the failure")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantMsg) || !strings.Contains(msg, w.Dir()) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q should be one line naming %s and %q", msg, w.Dir(), tc.wantMsg)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("error %v does not wrap %v", err, tc.err)
			}
			if w.Has(keys[0]) || w.Len() != 10 {
				t.Fatal("the failed batch counts as committed")
			}
			// Sticky: later appends refuse, Close reports the failure.
			k2, r2 := batch(30, 31, dim)
			if err2 := w.Append(k2, r2); err2 == nil {
				t.Fatal("Append after a write failure succeeded")
			}
			if cerr := w.Close(); cerr == nil {
				t.Fatal("Close after a write failure returned nil")
			}

			// The committed state is intact.
			r, err := Open(root, id)
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, r, 10)
			r.Close()
			rep, err := Verify(Dir(root, id))
			if err != nil || !rep.OK() {
				t.Fatalf("Verify after failure: %+v, %v", rep, err)
			}
			// Resume with a healthy file system.
			w = mustWriter(t, root, id)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			w.Close()
			r, err = Open(root, id)
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, r, 20)
			r.Close()
		})
	}
}

// TestCreateFailure: a failure while creating the folder's files leaves
// nothing half-written behind.
func TestCreateFailure(t *testing.T) {
	for _, name := range []string{manifestName, indexName} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			id := testIdentity(4)
			ffs := &failCreateFS{name: name}
			_, err := OpenWriter(context.Background(), root, id, WriterOptions{fs: ffs})
			if err == nil || !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("OpenWriter: %v", err)
			}
			ents, _ := os.ReadDir(Dir(root, id))
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") || e.Name() == name {
					t.Fatalf("left %s behind", e.Name())
				}
			}
			// A healthy retry works.
			w := mustWriter(t, root, id)
			w.Close()
		})
	}
}

// failCreateFS fails writes to the temporary file of an atomic write of name.
type failCreateFS struct {
	osFS
	name string
}

func (f *failCreateFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	of, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(filepath.Base(name), "."+f.name+".tmp-") {
		return &faultFile{file: of, fs: &faultFS{name: filepath.Base(name), op: "write", err: syscall.ENOSPC, partial: true, armed: true}, base: filepath.Base(name)}, nil
	}
	return of, nil
}
