package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone/ort"
	"github.com/headtune/headtune/faces"
	"github.com/headtune/headtune/imaging"
	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/internal/testnpm"
	"github.com/headtune/headtune/models/tfjs"
	"github.com/headtune/headtune/predictions"
)

// portraits writes one upright portrait per face of face-api's sample
// photos into dir/<label>/ (21 faces), labelled "happy" or "other" by
// face-api's own expression head on the aligned crop: face-api's answers
// used as pseudo-labels, not human labels. It returns the number written.
func portraits(t *testing.T, c *cli, dir string) int {
	t.Helper()
	if _, err := ort.Init(ortLib); err != nil {
		testasset.Skip(t, "ONNX Runtime: %v", err)
	}
	det, err := faces.NewDetector(readFile(t, filepath.Join(c.home, "models", "blazeface", "model.onnx")), ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	expr := readFile(t, filepath.Join(c.home, "models", "face-expression", "model.onnx"))
	sess, err := ort.NewSession(expr, ort.SessionSpec{Input: "input_nhwc", InputShape: []int64{112, 112, 3}, Outputs: []string{"probs"}, OutputSizes: []int{7}}, ort.SessionOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	spec := imaging.Spec{Width: 112, Height: 112, Resize: imaging.ResizeLetterbox, Interpolation: imaging.InterpBilinear,
		Channels: 3, ChannelOrder: imaging.OrderRGB, Layout: imaging.LayoutNHWC, Scale: 1, Std: [3]float32{1, 1, 1}}
	spec.Faces = faces.DefaultSpec(det.SHA256())
	in := make([]float32, spec.TensorLen())
	probs := make([]float32, 7)
	n := 0
	for _, p := range testnpm.WriteFacePhotos(t, t.TempDir()) {
		img, err := imaging.DecodeFile(p, imaging.DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found, err := det.Detect(context.Background(), img, spec.Faces)
		if err != nil {
			t.Fatal(err)
		}
		for k, f := range found {
			crop, _ := faces.Crop(img, faces.FrameOf(f, spec.Faces), 112, nil)
			faces.Tensor(crop, spec, in)
			if err := sess.Run(context.Background(), in, 1, probs); err != nil {
				t.Fatal(err)
			}
			best := 0
			for i := range probs {
				if probs[i] > probs[best] {
					best = i
				}
			}
			label := "other"
			if tfjs.FaceExpressionClasses[best] == "happy" {
				label = "happy"
			}
			pic, err := faces.CropRGB(img, faces.FrameOf(f, imaging.FaceSpec{Margin: 0.6, Align: imaging.AlignNone}), 200)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, label), 0o755)
			out, err := os.Create(filepath.Join(dir, label, fmt.Sprintf("%s-%d.png", strings.TrimSuffix(filepath.Base(p), ".jpg"), k)))
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(out, pic.Image())
			out.Close()
			n++
		}
	}
	return n
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFacesFlow is the README's example end to end on portraits cut from
// face-api's sample photos with pseudo-labels: extract --faces (a dog photo
// reported as "no face found" and counted), train, eval on the folder,
// predict --faces on the group photos (one row per face, annotated
// copies), and export --faces (with and without eye alignment).
func TestFacesFlow(t *testing.T) {
	c := newCLI(t)
	pullBlazeFace(t, c)
	c.ok("models", "pull", "face-expression", "--tarball", testnpm.Tarball(t, testnpm.FaceAPI))
	data := filepath.Join(c.dir, "data")
	n := portraits(t, c, data)
	dog, err := os.ReadFile("/usr/share/darknet/data/dog.jpg")
	if err != nil {
		testasset.Skip(t, "Debian darknet's dog.jpg: %v", err)
	}
	os.WriteFile(filepath.Join(data, "other", "dog.jpg"), dog, 0o644)

	// The detector is not a backbone.
	oneLineError(t, c.run("extract", data, "--model", "blazeface"), "blazeface is a face detector")
	r := c.ok("extract", data, "--faces", "--model", "face-expression", "--json", "--quiet")
	s := parseExtract(t, r)
	var raw struct {
		Faces  int `json:"faces"`
		NoFace int `json:"no_face"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Faces < n-1 || raw.NoFace != 1 || s.Skipped != 1 || len(s.Skips) != 1 || s.Skips[0].Reason != "no face found" {
		t.Fatalf("extract --faces on %d portraits and a dog: %d faces, %d no face, skips %+v", n, raw.Faces, raw.NoFace, s.Skips)
	}
	headPath := filepath.Join(c.dir, "faces.head")
	c.ok("train", "--head", headPath, "--quiet")
	ev := c.ok("eval", data, "--head", headPath, "--json", "--quiet")
	if !strings.Contains(ev.stdout, "accuracy") {
		t.Errorf("eval on the folder: %s", ev.stdout)
	}
	photos := filepath.Join(c.dir, "photos")
	testnpm.WriteFacePhotos(t, photos)
	out := filepath.Join(c.dir, "pred.csv")
	c.ok("predict", photos, "--head", headPath, "--faces", "--annotate", filepath.Join(c.dir, "ann"), "--out", out, "--quiet")
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 22 || rows[0][1] != "face" {
		t.Fatalf("predict --faces: %d rows (header %v), want a header and 21 faces", len(rows), rows[0])
	}
	for _, row := range rows[1:] {
		if row[7] != "happy" && row[7] != "other" || row[10] != "" {
			t.Errorf("predict row %v", row)
		}
	}
	// Prediction sets apply to faces as to whole images: every face row
	// gets a set, and the top class is in it whenever the set is not empty.
	setsOut := filepath.Join(c.dir, "sets.csv")
	c.ok("predict", photos, "--head", headPath, "--faces", "--coverage", "0.8", "--out", setsOut, "--quiet")
	setRows := readCSV(t, setsOut)
	if len(setRows) != 22 || len(setRows[0]) < 13 || setRows[0][11] != "set" {
		t.Fatalf("predict --faces --coverage: header %v, %d rows", setRows[0], len(setRows))
	}
	nonEmpty := 0
	for _, row := range setRows[1:] {
		if row[11] == "" {
			continue
		}
		nonEmpty++
		if row[7] != predictions.Unknown && !slices.Contains(strings.Split(row[11], ";"), row[7]) {
			t.Errorf("face row %v: set %q lacks the top class", row[:2], row[11])
		}
	}
	if nonEmpty == 0 {
		t.Errorf("predict --faces --coverage 0.8: every set empty")
	}
	ann, _ := filepath.Glob(filepath.Join(c.dir, "ann", "*.jpg"))
	if len(ann) != 6 {
		t.Errorf("predict --annotate wrote %d images, want 6", len(ann))
	}
	onnxOut := filepath.Join(c.dir, "faces.onnx")
	c.ok("export", "--faces", "--head", headPath, "-o", onnxOut)
	// Upright crops (no eye alignment) export as well.
	c.ok("extract", data, "--faces", "--face-align", "none", "--model", "face-expression", "--quiet")
	upright := filepath.Join(c.dir, "upright.head")
	c.ok("train", "--head", upright, "--quiet")
	c.ok("export", "--faces", "--head", upright, "-o", filepath.Join(c.dir, "upright.onnx"))
	if st, err := os.Stat(onnxOut); err != nil || st.Size() < 1e6 {
		t.Errorf("export --faces wrote %v (%v)", st, err)
	}
}

// TestFacesCrashResume: extract --faces killed at random moments resumes
// like plain extraction: the cache verifies after every kill, nothing is
// computed twice, and the final features equal an uninterrupted run's bit
// for bit.
func TestFacesCrashResume(t *testing.T) {
	c := newCLI(t)
	pullBlazeFace(t, c)
	c.ok("models", "pull", "face-expression", "--tarball", testnpm.Tarball(t, testnpm.FaceAPI))
	data := filepath.Join(c.dir, "data")
	portraits(t, c, data)
	testnpm.WriteFacePhotos(t, filepath.Join(data, "group")) // six more images, three to five faces each
	base := []string{"extract", data, "--faces", "--model", "face-expression", "--json", "--quiet"}
	refCache := filepath.Join(c.dir, "ref")
	refRun := c.ok(append(base, "--cache", refCache)...)
	ref := parseExtract(t, refRun)
	refFeat, _ := cachedFeatures(t, ref.View)

	cache := filepath.Join(c.dir, "killed")
	// Kill at growing fractions of the uninterrupted run's time, with a
	// little jitter: each run resumes from what the last one committed.
	rng := rand.New(rand.NewPCG(7, 13))
	kills := 0
	for i := 0; i < 4; i++ {
		frac := 0.15 + 0.15*float64(i) + 0.05*rng.Float64()
		delay := time.Duration(frac * float64(refRun.wall))
		killed, _ := c.killRun(delay, append(base, "--cache", cache)...)
		if !killed {
			break // it finished: nothing left to interrupt
		}
		kills++
		rows := c.verifiedRows(t, cache)
		t.Logf("kill %d after %v: %d of %d faces committed", kills, delay.Round(time.Millisecond), rows, len(refFeat))
	}
	if kills == 0 {
		t.Fatal("no run was killed: the delays are longer than the extraction")
	}
	final := parseExtract(t, c.ok(append(base, "--cache", cache)...))
	got, _ := cachedFeatures(t, final.View)
	t.Logf("%d kills; final run: %d images computed, %d reused", kills, final.Computed, final.Reused)
	if len(got) != len(refFeat) {
		t.Fatalf("%d faces after kills, %d uninterrupted", len(got), len(refFeat))
	}
	for p, v := range refFeat {
		if _, same := maxAbsDiff(v, got[p]); !same {
			t.Errorf("%s: features differ from the uninterrupted run", p)
		}
	}
	if c.verifiedRows(t, cache) != len(refFeat) {
		t.Errorf("cache holds %d rows, want %d", c.verifiedRows(t, cache), len(refFeat))
	}
}

// readCSV reads a whole CSV file.
func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}
