package e2e

import (
	"encoding/json"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testnpm"
)

// pullBlazeFace installs the detector from its pinned tarball.
func pullBlazeFace(t testing.TB, c *cli) {
	t.Helper()
	c.ok("models", "pull", "blazeface", "--tarball", testnpm.Tarball(t, testnpm.BlazeFace))
}

// TestFacesCommand: `headtune faces` lists the faces of the sample photos
// as JSON (21 of the 22, largest first), draws them with --annotate,
// reports an unreadable file on one line and goes on, and `models list`
// shows the detector as a face detector.
func TestFacesCommand(t *testing.T) {
	c := newCLI(t)
	pullBlazeFace(t, c)
	photos := filepath.Join(c.dir, "photos")
	testnpm.WriteFacePhotos(t, photos)
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
