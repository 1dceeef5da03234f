package models

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/headtune/headtune/imaging"
)

// File names inside an installed model's folder.
const (
	ModelFile = "model.onnx"
	MetaFile  = "meta.json"
)

// MetaVersion is the meta.json format version this package writes.
const MetaVersion = 1

// Meta is the content of meta.json: everything needed to use an installed
// model by name and to say where it came from.
type Meta struct {
	Version int    `json:"version"` // MetaVersion
	Name    string `json:"name"`
	Task    Task   `json:"task"`
	Source  Source `json:"source"`
	// Provenance is the URL, the npm "package@version" with its integrity
	// string, or the path a user's file was added from.
	Provenance  string `json:"provenance"`
	License     string `json:"license,omitempty"`
	Description string `json:"description,omitempty"`

	SHA256 string `json:"sha256"` // of model.onnx, lower-case hex
	Size   int64  `json:"size"`   // of model.onnx, bytes

	// Preset names the preprocessing family; Preprocess is the exact
	// imaging.Spec as JSON, kept raw so a newer Spec round-trips through an
	// older headtune unchanged.
	Preset     string          `json:"preset,omitempty"`
	Preprocess json.RawMessage `json:"preprocess"`

	InputName     string `json:"input_name,omitempty"`
	FeatureTensor string `json:"feature_tensor,omitempty"` // "" lets the backbone choose
	FeatureDim    int    `json:"feature_dim,omitempty"`    // 0 when unknown
	StaticBatch   bool   `json:"static_batch,omitempty"`

	Classes     []string  `json:"classes,omitempty"` // class names of the model's own output, if any
	InstalledAt time.Time `json:"installed_at"`

	// Derived records the model this one was made from and how; nil for
	// pulled and added models.
	Derived *Derivation `json:"derived,omitempty"`
}

// Spec decodes the preprocessing recipe.
func (m *Meta) Spec() (imaging.Spec, error) {
	var s imaging.Spec
	if len(m.Preprocess) == 0 {
		return s, fmt.Errorf("model %s: meta.json has no preprocessing recipe", m.Name)
	}
	if err := json.Unmarshal(m.Preprocess, &s); err != nil {
		return s, fmt.Errorf("model %s: preprocessing recipe in meta.json: %w", m.Name, err)
	}
	return s, nil
}

// Installed is one model present in a Store.
type Installed struct {
	Dir  string // <store>/<name>
	Meta Meta
}

// ModelPath is the model.onnx of the installed model.
func (in Installed) ModelPath() string { return filepath.Join(in.Dir, ModelFile) }

// Store is a folder of installed models. Methods are safe for concurrent use
// by several processes: changes take an exclusive lock on <dir>/.lock.
type Store struct {
	dir string
}

// DefaultDir is $HEADTUNE_HOME/models, else $XDG_DATA_HOME/headtune/models,
// else ~/.local/share/headtune/models.
func DefaultDir() (string, error) {
	if h := os.Getenv("HEADTUNE_HOME"); h != "" {
		return filepath.Join(h, "models"), nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "headtune", "models"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("models folder: no home directory and HEADTUNE_HOME is not set: %w", err)
	}
	return filepath.Join(home, ".local", "share", "headtune", "models"), nil
}

// OpenStore uses dir as the models folder, creating it if needed.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("models folder: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("models folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("models folder %s: %w", abs, err)
	}
	return &Store{dir: abs}, nil
}

// Dir is the store's absolute folder.
func (s *Store) Dir() string { return s.dir }

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// ValidateName checks that name can be a model name: 1-64 characters of
// letters, digits, '.', '_', '+', '-', not starting with a punctuation mark
// (so it is never a hidden or temporary folder, nor a path).
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid model name %q: use 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", name)
	}
	return nil
}

// lock takes the store's exclusive lock; release with the returned func.
func (s *Store) lock(ctx context.Context) (func(), error) {
	fl := flock.New(filepath.Join(s.dir, ".lock"))
	ok, err := fl.TryLockContext(ctx, 50*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("lock models folder %s: %w", s.dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("lock models folder %s: not acquired", s.dir)
	}
	return func() { fl.Unlock() }, nil
}

// Get returns the installed model called name.
func (s *Store) Get(name string) (Installed, error) {
	if err := ValidateName(name); err != nil {
		return Installed{}, err
	}
	dir := filepath.Join(s.dir, name)
	b, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if errors.Is(err, os.ErrNotExist) {
		hint := fmt.Sprintf("run `headtune models pull %s`", name)
		if _, lerr := Lookup(name); lerr != nil {
			hint = fmt.Sprintf("add it with `headtune models add FILE.onnx --name %s --preset NAME`", name)
		}
		return Installed{}, fmt.Errorf("model %s is not installed; %s", name, hint)
	}
	if err != nil {
		return Installed{}, fmt.Errorf("model %s: %w", name, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Installed{}, fmt.Errorf("model %s: %s is damaged: %w", name, filepath.Join(dir, MetaFile), err)
	}
	if m.Version > MetaVersion {
		return Installed{}, fmt.Errorf("model %s: meta.json version %d is newer than this headtune understands (%d)", name, m.Version, MetaVersion)
	}
	if m.Name != name {
		return Installed{}, fmt.Errorf("model %s: meta.json names %q; the folder was renamed by hand", name, m.Name)
	}
	return Installed{Dir: dir, Meta: m}, nil
}

// List returns the installed models sorted by name. Folders that are not
// complete models (temporary, hidden, without meta.json) are skipped.
func (s *Store) List() ([]Installed, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("models folder %s: %w", s.dir, err)
	}
	var out []Installed
	for _, e := range ents {
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		in, err := s.Get(e.Name())
		if err != nil {
			if _, statErr := os.Stat(filepath.Join(s.dir, e.Name(), MetaFile)); errors.Is(statErr, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.Name < out[j].Meta.Name })
	return out, nil
}

// Remove deletes an installed model. The folder is first renamed away, so
// a crash midway never leaves a half-deleted model under its name.
func (s *Store) Remove(ctx context.Context, name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(s.dir, name)
	trash := filepath.Join(s.dir, ".old-"+name+"-"+randSuffix())
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("remove model %s: %w", name, err)
	}
	syncDir(s.dir)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove model %s: left %s behind: %w", name, trash, err)
	}
	return nil
}

// Verify hashes model.onnx again and compares size and SHA-256 with
// meta.json.
func (s *Store) Verify(name string) error {
	in, err := s.Get(name)
	if err != nil {
		return err
	}
	size, sum, err := hashFile(in.ModelPath())
	if err != nil {
		return fmt.Errorf("verify model %s: %w", name, err)
	}
	if size != in.Meta.Size {
		return fmt.Errorf("verify model %s: %s has %d bytes, meta.json records %d", name, in.ModelPath(), size, in.Meta.Size)
	}
	if sum != in.Meta.SHA256 {
		return fmt.Errorf("verify model %s: %s has SHA-256 %s, meta.json records %s", name, in.ModelPath(), sum, in.Meta.SHA256)
	}
	return nil
}

// hashFile returns the size and SHA-256 of a file.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(h, f, *bp)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func randSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// installFile moves or copies model file src into a new model folder named
// meta.Name, fills meta's SHA256, Size, Version and InstalledAt, and swaps the
// folder into place atomically. With move set, src is renamed (it must be on
// the same file system, as a download into the store is); otherwise it is
// copied. knownSHA256 is the hash of src when the caller has just verified
// it (a download); "" makes installFile hash the installed copy.
func (s *Store) installFile(ctx context.Context, src string, move bool, knownSHA256 string, meta Meta) (Installed, error) {
	name := meta.Name
	if err := ValidateName(name); err != nil {
		return Installed{}, err
	}
	if len(meta.Preprocess) == 0 {
		return Installed{}, fmt.Errorf("install model %s: no preprocessing recipe", name)
	}
	tmp, err := os.MkdirTemp(s.dir, ".tmp-"+name+"-")
	if err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	// MkdirTemp creates 0700; an installed model is readable by all, like
	// the folder it is installed in.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	model := filepath.Join(tmp, ModelFile)
	if move {
		if err := os.Rename(src, model); err != nil {
			return Installed{}, fmt.Errorf("install model %s: %w", name, err)
		}
	} else if err := copyFile(ctx, src, model); err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	var size int64
	sum := knownSHA256
	if sum == "" {
		size, sum, err = hashFile(model)
	} else {
		var st os.FileInfo
		if st, err = os.Stat(model); err == nil {
			size = st.Size()
		}
	}
	if err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	meta.Version = MetaVersion
	meta.SHA256 = sum
	meta.Size = size
	if meta.InstalledAt.IsZero() {
		meta.InstalledAt = time.Now().UTC().Truncate(time.Second)
	}
	mb, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return Installed{}, fmt.Errorf("install model %s: encode meta.json: %w", name, err)
	}
	if err := writeSynced(filepath.Join(tmp, MetaFile), append(mb, '\n')); err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	syncDir(tmp)
	if err := ctx.Err(); err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}

	unlock, err := s.lock(ctx)
	if err != nil {
		return Installed{}, err
	}
	defer unlock()
	final := filepath.Join(s.dir, name)
	old := ""
	if _, err := os.Lstat(final); err == nil {
		old = filepath.Join(s.dir, ".old-"+name+"-"+randSuffix())
		if err := os.Rename(final, old); err != nil {
			return Installed{}, fmt.Errorf("install model %s: move the previous version away: %w", name, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		if old != "" {
			os.Rename(old, final) // put the previous version back
		}
		return Installed{}, fmt.Errorf("install model %s: %w", name, err)
	}
	ok = true
	syncDir(s.dir)
	if old != "" {
		os.RemoveAll(old)
	}
	return Installed{Dir: final, Meta: meta}, nil
}

// writeSynced writes a new file and fsyncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// copyFile copies src to a new file dst and fsyncs it, checking ctx between
// chunks.
func copyFile(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write %s: %w", dst, werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read %s: %w", src, rerr)
		}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return out.Close()
}

// Clean removes leftovers of interrupted installs and removals (.tmp-* and
// .old-* folders) older than age. Partial downloads are kept: they resume.
func (s *Store) Clean(age time.Duration) error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("models folder %s: %w", s.dir, err)
	}
	cutoff := time.Now().Add(-age)
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".tmp-") && !strings.HasPrefix(n, ".old-") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.ModTime().After(cutoff) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
