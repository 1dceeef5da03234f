package faces

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/models/tfjs"
)

// Assets: BlazeFace from its pinned npm tarball, face-api's demo photos
// from theirs, ONNX Runtime from .deps. A missing asset skips the test with
// the reason, except under CI=true, where it fails: CI provides them all.

// missing skips (or, in CI, fails) a test whose asset is absent.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	testasset.Skip(t, format, args...)
}

func npmCache(t testing.TB) string {
	if d := os.Getenv("HEADTUNE_NPM_CACHE"); d != "" {
		return d
	}
	return testasset.Deps(t, "npm")
}

var (
	assetMu   sync.Mutex
	tarballs  = map[string]string{}
	photos    map[string][]byte
	blazeONNX []byte
)

// tarball returns the verified pinned tarball of an npm spec, fetched once.
func tarball(t testing.TB, spec string) string {
	t.Helper()
	if p := tarballs[spec]; p != "" {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, _, err := tfjs.FetchNPM(ctx, spec, npmCache(t))
	if err != nil {
		missing(t, "cannot obtain the npm tarball %s (needs npm and the registry, or the tarball in %s): %v", spec, npmCache(t), err)
	}
	tarballs[spec] = p
	return p
}

// blazeFace returns the ONNX bytes of BlazeFace back 256.
func blazeFace(t testing.TB) []byte {
	t.Helper()
	assetMu.Lock()
	defer assetMu.Unlock()
	if blazeONNX != nil {
		return blazeONNX
	}
	spec, err := tfjs.PackageSpec(tfjs.ArchBlazeFace)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := tfjs.BuildShipped(tfjs.ArchBlazeFace, tarball(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	blazeONNX = b
	return b
}

// samplePhotos returns face-api's demo/sample1..6.jpg by base name.
func samplePhotos(t testing.TB) map[string][]byte {
	t.Helper()
	assetMu.Lock()
	defer assetMu.Unlock()
	if photos != nil {
		return photos
	}
	tgz := tarball(t, "@vladmandic/face-api@1.7.15")
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
		if path.Dir(h.Name) == "package/demo" && strings.HasPrefix(name, "sample") && strings.HasSuffix(name, ".jpg") {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = b
		}
	}
	if len(out) != 6 {
		t.Fatalf("found %d sample photos in %s, want 6", len(out), tgz)
	}
	photos = out
	return out
}

var (
	ortOnce sync.Once
	ortErr  error
)

func initORT(t testing.TB) {
	t.Helper()
	ortOnce.Do(func() { _, ortErr = ort.Init("") })
	if ortErr != nil {
		missing(t, "ONNX Runtime unavailable: %v", ortErr)
	}
}

var (
	detMu  sync.Mutex
	shared *Detector
)

// detector returns one BlazeFace detector shared by the tests.
func detector(t testing.TB) *Detector {
	t.Helper()
	initORT(t)
	model := blazeFace(t)
	detMu.Lock()
	defer detMu.Unlock()
	if shared == nil {
		d, err := NewDetector(model, ort.SessionOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		shared = d
	}
	return shared
}

func decodeBytes(t testing.TB, name string, b []byte) *imaging.RGB {
	t.Helper()
	img, err := imaging.Decode(b, imaging.DecodeOptions{})
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return img
}
