// Package atomicfile replaces files so that readers and crashes only ever
// see the old content or the new, never a mix, and a killed writer leaves
// nothing behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Write replaces path with data: the bytes go to an anonymous file in the
// same folder (O_TMPFILE, so a process killed while writing leaves no
// file), are fsynced, linked under a temporary name and renamed over path;
// then the folder is fsynced. Where O_TMPFILE is not supported it falls back
// to a named temporary file that is removed on any error. Errors name path
// once.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	removeStale(dir, filepath.Base(path))
	if err := writeTmpfile(dir, path, data); err == nil {
		return nil
	} else if !errors.Is(err, errNoTmpfile) {
		return fmt.Errorf("write %s: %v", path, bare(err))
	}
	if err := writeNamed(dir, path, data); err != nil {
		return fmt.Errorf("write %s: %v", path, bare(err))
	}
	return nil
}

var errNoTmpfile = errors.New("O_TMPFILE not supported")

func writeTmpfile(dir, path string, data []byte) error {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return errNoTmpfile
		}
		return err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// linkat cannot replace an existing name: link under a fresh temporary
	// name, then rename over path. Only a kill in the microseconds between
	// the two can leave that (complete) temporary file behind.
	tmp := filepath.Join(dir, tmpPrefix(filepath.Base(path))+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(fd))
	os.Remove(tmp)
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
			return errNoTmpfile // no /proc, or linking refused: use a named file
		}
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(dir)
	return nil
}

func writeNamed(dir, path string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix(filepath.Base(path))+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// tmpPrefix starts the temporary names of base's writers: ".BASE.tmp-",
// then the writer's PID, "-" and a suffix.
func tmpPrefix(base string) string { return "." + base + ".tmp-" }

// removeStale deletes the temporary files that writers of base killed
// between linking and renaming (a window of microseconds, but SIGKILL can
// land in it) left behind: those whose PID is no longer running. A
// leftover thus lives only until the next write of the same file.
// Failures are ignored: the files are litter, not data.
func removeStale(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tmpPrefix(base)
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		pidText, _, ok := strings.Cut(name[len(prefix):], "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// bare strips the path from *fs.PathError and *os.LinkError so that the
// caller's message names the file once, not the temporary file as well.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
