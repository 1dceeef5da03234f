package featcache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// file is the part of *os.File the cache writes through. Tests substitute
// implementations that fail (disk full, I/O errors, short writes).
type file interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

// fileSystem is the part of package os the cache writes through.
type fileSystem interface {
	OpenFile(name string, flag int, perm os.FileMode) (file, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	MkdirAll(path string, perm os.FileMode) error
	// SyncDir makes directory entries (creates, renames) durable.
	SyncDir(dir string) error
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil interface
	}
	return f, nil
}
func (osFS) Rename(o, n string) error                     { return os.Rename(o, n) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems refuse fsync on directories; there is nothing more
	// we can do there, and the data files themselves were synced.
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}

// opError formats a failed file operation as one line, "OP PATH: CAUSE",
// without the path repeated by *fs.PathError. The cause stays reachable with
// errors.Is / errors.As.
func opError(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// writeFull writes all of p at off, turning a short write into an error.
func writeFull(f file, p []byte, off int64) error {
	n, err := f.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// writeFileAtomic replaces path with data: write a temporary file in the
// same folder, fsync it, rename it over path, fsync the folder. Readers see
// the old or the new content, never a mix; on error the old file is
// untouched and the temporary file removed.
func writeFileAtomic(fsys fileSystem, path string, data []byte, perm os.FileMode) error {
	return writeAtomicStream(fsys, path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomicStream is writeFileAtomic for content produced by fill, which
// writes sequentially to w.
func writeAtomicStream(fsys fileSystem, path string, perm os.FileMode, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return opError("create", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = fsys.Remove(tmp)
		}
	}()
	if err = fill(&seqWriter{f: f}); err != nil {
		f.Close()
		return opError("write", tmp, err)
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return opError("sync", tmp, err)
	}
	if err = f.Close(); err != nil {
		return opError("close", tmp, err)
	}
	if err = fsys.Rename(tmp, path); err != nil {
		return opError("rename", tmp, err)
	}
	if err = fsys.SyncDir(dir); err != nil {
		return opError("sync folder", dir, err)
	}
	return nil
}

// seqWriter turns a file's WriteAt into a sequential io.Writer, with short
// writes reported as errors.
type seqWriter struct {
	f   file
	off int64
}

func (w *seqWriter) Write(p []byte) (int, error) {
	if err := writeFull(w.f, p, w.off); err != nil {
		return 0, err
	}
	w.off += int64(len(p))
	return len(p), nil
}
