package objstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
)

// openDir opens a local folder as a location (the file scheme).
func openDir(dir string, create bool) (*Location, error) {
	if dir == "" {
		return nil, errors.New("location: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("location %s: %w", dir, err)
	}
	if create {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", abs, unwrapPath(err))
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, unwrapPath(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open %s: not a folder", abs)
	}
	// Metadata sidecars (.attrs files) would litter the user's folders;
	// temporary files go next to their target so the final rename never
	// crosses file systems.
	b, err := fileblob.OpenBucket(abs, &fileblob.Options{Metadata: fileblob.MetadataDontWrite, NoTempDir: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	return &Location{Bucket: b, Retry: DefaultRetry, base: "file://" + abs + "/", dir: abs, owned: new(sync.Once), stats: new(Stats)}, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// createLocal is CreateIfAbsent on a file location: fileblob's IfNotExist
// only excludes writers of the same process, so the object is written to a
// temporary file and hard-linked to its name; link(2) fails when the name
// exists, atomically, also between processes and on NFS.
func (l *Location) createLocal(key string, data []byte) (bool, error) {
	path := filepath.Join(l.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, unwrapPath(err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path + "." + hex.EncodeToString(rnd[:]) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, unwrapPath(err)
	}
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, unwrapPath(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, unwrapPath(err)
	}
	if err := f.Close(); err != nil {
		return false, unwrapPath(err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, unwrapPath(err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

// Memory buckets live as long as the process, by name, so that several
// Open calls of one mem://name URL see the same objects.
var (
	memMu      sync.Mutex
	memBuckets = map[string]*blob.Bucket{}
)

func init() {
	register("mem", func(_ context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
		if len(u.Query()) > 0 {
			return nil, errors.New("mem URLs take no query parameters")
		}
		memMu.Lock()
		defer memMu.Unlock()
		b, ok := memBuckets[u.Host]
		if !ok {
			b = memblob.OpenBucket(nil)
			memBuckets[u.Host] = b
		}
		return b, nil
	})
}
