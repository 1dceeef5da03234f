package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/pipeline"
)

// predictInputs expands Predict's inputs: local files and folders as
// pipeline.ExpandInputs does, object storage URLs of one image or of a
// prefix (listed once, images only, hidden keys skipped). read is nil when
// every input is local; otherwise it reads input i from wherever it is.
func predictInputs(ctx context.Context, args []string) (names []string, read func(context.Context, int, []byte) ([]byte, error), closeAll func(), err error) {
	type remote struct {
		loc *objstore.Location
		rel string
	}
	var items []remote // parallel to names; loc nil for local files
	var locs []*objstore.Location
	closeAll = func() {
		for _, l := range locs {
			l.Close()
		}
	}
	for _, a := range args {
		if !objstore.IsURL(a) {
			local, err := pipeline.ExpandInputs([]string{a})
			if err != nil {
				closeAll()
				return nil, nil, nil, err
			}
			for _, p := range local {
				names = append(names, p)
				items = append(items, remote{})
			}
			continue
		}
		u, err := url.Parse(a)
		if err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("input %q: %w", a, err)
		}
		single := imaging.IsImageName(u.Path) && !strings.HasSuffix(u.Path, "/")
		dir := *u
		if single {
			dir.Path = path.Dir(u.Path)
		}
		loc, err := objstore.Open(ctx, dir.String())
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		locs = append(locs, loc)
		if single {
			names = append(names, loc.Describe(path.Base(u.Path)))
			items = append(items, remote{loc, path.Base(u.Path)})
			continue
		}
		err = loc.Walk(ctx, "", func(o objstore.Object) error {
			if imaging.IsImageName(o.Rel) && !strings.HasPrefix(o.Rel, ".") && !strings.Contains(o.Rel, "/.") {
				names = append(names, loc.Describe(o.Rel))
				items = append(items, remote{loc, o.Rel})
			}
			return nil
		})
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
	}
	if len(locs) == 0 {
		return names, nil, closeAll, nil
	}
	read = func(ctx context.Context, i int, buf []byte) ([]byte, error) {
		it := items[i]
		if it.loc == nil {
			return readLocal(names[i], buf)
		}
		b, _, err := it.loc.ReadInto(ctx, it.rel, buf, pipeline.MaxFileBytes)
		return b, err
	}
	return names, read, closeAll, nil
}

// readLocal reads a regular local file into buf (reused when large enough).
func readLocal(p string, buf []byte) ([]byte, error) {
	st, err := os.Stat(p)
	if err != nil {
		return buf[:0], err
	}
	if !st.Mode().IsRegular() {
		return buf[:0], errors.New("not a regular file")
	}
	if st.Size() > pipeline.MaxFileBytes {
		return buf[:0], fmt.Errorf("file of %d bytes is larger than the %d-byte limit", st.Size(), pipeline.MaxFileBytes)
	}
	f, err := os.Open(p)
	if err != nil {
		return buf[:0], err
	}
	defer f.Close()
	if int64(cap(buf)) < st.Size() {
		buf = make([]byte, st.Size())
	}
	n, err := io.ReadFull(f, buf[:st.Size()])
	if err == io.ErrUnexpectedEOF {
		err = nil // shrank while being read: what is there is the file
	}
	return buf[:n], err
}

// remoteOut stands for a predictions output named by a URL: rows go to a
// local file (so that they stream, and resume works), which is uploaded
// as one object when the run ends.
type remoteOut struct {
	loc   *objstore.Location
	rel   string
	local string
	dir   string
}

// openRemoteOut prepares a local stand-in for an output URL; with resume,
// the object's current content is fetched into it first.
func openRemoteOut(ctx context.Context, raw string, resume bool) (*remoteOut, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--out %q: %w", raw, err)
	}
	name := path.Base(u.Path)
	if name == "" || name == "/" || name == "." {
		return nil, fmt.Errorf("--out %s: name an object (…/predictions.csv), not a prefix", raw)
	}
	dir := *u
	dir.Path = path.Dir(u.Path)
	loc, err := objstore.Create(ctx, dir.String())
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "headtune-predict-")
	if err != nil {
		loc.Close()
		return nil, err
	}
	o := &remoteOut{loc: loc, rel: name, local: filepath.Join(tmp, name), dir: tmp}
	if resume {
		data, err := loc.ReadAll(ctx, name, 64<<30)
		switch {
		case err == nil:
			if err := os.WriteFile(o.local, data, 0o644); err != nil {
				o.discard()
				return nil, err
			}
		case !objstore.IsNotExist(err):
			o.discard()
			return nil, err
		}
	}
	return o, nil
}

// upload writes the local file as the object (atomically).
func (o *remoteOut) upload(ctx context.Context) error {
	data, err := os.ReadFile(o.local)
	if err != nil {
		return err
	}
	return o.loc.WriteAll(ctx, o.rel, data)
}

func (o *remoteOut) discard() {
	os.RemoveAll(o.dir)
	o.loc.Close()
}
