package models

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// urlEntry is a catalog-like entry served by fs.
func urlEntry(name string, fs *fileServer, content []byte) Entry {
	return Entry{
		Name: name, Task: TaskImageNetClassifier, Source: SourceURL,
		URL: fs.url(), Size: int64(len(content)), SHA256: sha(content),
		License: "MIT", Preset: "imagenet",
		Preprocess:    preset("imagenet", 16, 16, "NCHW"),
		InputName:     "image",
		FeatureTensor: "features", FeatureDim: 4096,
	}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "models"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pullOpts(retries int) PullOptions { return PullOptions{Downloader: testDownloader(retries)} }

func TestPullInstallsVerifiedModel(t *testing.T) {
	content := fixtureModel(t, 4096)
	fs := newFileServer(t, content)
	s := newStore(t)
	e := urlEntry("fixture", fs, content)

	in, err := Pull(context.Background(), s, e, pullOpts(0))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(in.ModelPath())
	if err != nil || sha(got) != e.SHA256 {
		t.Fatalf("installed model.onnx: %v, hash %s, want %s", err, sha(got), e.SHA256)
	}
	again, err := s.Get("fixture")
	if err != nil {
		t.Fatal(err)
	}
	m := again.Meta
	if m.SHA256 != e.SHA256 || m.Size != e.Size || m.Provenance != e.URL || m.Source != SourceURL ||
		m.FeatureTensor != "features" || m.FeatureDim != 4096 || m.License != "MIT" || m.Version != MetaVersion || m.InstalledAt.IsZero() {
		t.Errorf("meta.json = %+v does not describe the entry", m)
	}
	spec, err := m.Spec()
	if err != nil || spec != e.Preprocess {
		t.Errorf("recorded recipe %+v (%v), want %+v", spec, err, e.Preprocess)
	}
	if err := s.Verify("fixture"); err != nil {
		t.Errorf("Verify after install: %v", err)
	}
	if st, err := os.Stat(in.Dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("model folder mode %v (%v), want rwxr-xr-x", st.Mode(), err)
	}
	noLeftovers(t, s.Dir())

	// Pulling again is a no-op; Force downloads again.
	if _, err := Pull(context.Background(), s, e, pullOpts(0)); err != nil {
		t.Fatal(err)
	}
	if n := len(fs.recorded()); n != 1 {
		t.Errorf("second pull of an installed model made %d requests in total, want 1", n)
	}
	opts := pullOpts(0)
	opts.Force = true
	if _, err := Pull(context.Background(), s, e, opts); err != nil {
		t.Fatal(err)
	}
	if n := len(fs.recorded()); n != 2 {
		t.Errorf("forced pull: %d requests in total, want 2", n)
	}
	noLeftovers(t, s.Dir())
}

func TestPullNeverInstallsBadDownloads(t *testing.T) {
	content := fixtureModel(t, 4096)
	corrupt := append([]byte(nil), content...)
	corrupt[100] ^= 0x55
	tests := []struct {
		name   string
		served []byte
		setup  func(*fileServer)
	}{
		{"corrupted content", corrupt, func(*fileServer) {}},
		{"truncated content", content[:len(content)/2], func(*fileServer) {}},
		{"not found", content, func(fs *fileServer) { fs.status = 404 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFileServer(t, tc.served)
			tc.setup(fs)
			s := newStore(t)
			e := urlEntry("fixture", fs, content)
			_, err := Pull(context.Background(), s, e, pullOpts(1))
			if err == nil {
				t.Fatal("bad download installed without error")
			}
			if !strings.Contains(err.Error(), "pull fixture") {
				t.Errorf("error %q does not name the model", err)
			}
			if _, err := s.Get("fixture"); err == nil {
				t.Fatal("Get finds a model after a failed pull")
			}
			for _, f := range []string{ModelFile, MetaFile} {
				if _, err := os.Stat(filepath.Join(s.Dir(), "fixture", f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after a failed pull", f)
				}
			}
			noLeftovers(t, s.Dir())
		})
	}
}

func TestPullResumesInterruptedDownload(t *testing.T) {
	content := fixtureModel(t, 8192)
	fs := newFileServer(t, content)
	fs.cutAfter, fs.cutCount = len(content)/2, 1
	s := newStore(t)
	e := urlEntry("fixture", fs, content)

	if _, err := Pull(context.Background(), s, e, pullOpts(0)); err == nil {
		t.Fatal("interrupted pull reported success")
	}
	if _, err := s.Get("fixture"); err == nil {
		t.Fatal("model installed after an interrupted download")
	}
	partial := filepath.Join(s.downloadsDir(), "fixture.onnx"+PartialSuffix)
	st, err := os.Stat(partial)
	if err != nil || st.Size() == 0 {
		t.Fatalf("partial download not kept: %v", err)
	}
	in, err := Pull(context.Background(), s, e, pullOpts(0))
	if err != nil {
		t.Fatal(err)
	}
	if in.Meta.SHA256 != e.SHA256 {
		t.Fatalf("installed hash %s, want %s", in.Meta.SHA256, e.SHA256)
	}
	reqs := fs.recorded()
	if len(reqs) != 2 || reqs[1].Range != "bytes="+itoa64(st.Size())+"-" {
		t.Fatalf("requests %+v: the second pull did not resume from byte %d", reqs, st.Size())
	}
	noLeftovers(t, s.Dir())
}

func TestPullUnverifiedEntry(t *testing.T) {
	content := fixtureModel(t, 256)
	fs := newFileServer(t, content)
	s := newStore(t)
	e := urlEntry("nosum", fs, content)
	e.SHA256, e.Size, e.Unverified = "", 0, true

	_, err := Pull(context.Background(), s, e, pullOpts(0))
	if err == nil || !strings.Contains(err.Error(), "--insecure-skip-verify") {
		t.Fatalf("got %v, want a refusal naming --insecure-skip-verify", err)
	}
	if n := len(fs.recorded()); n != 0 {
		t.Fatalf("refused pull still made %d requests", n)
	}
	opts := pullOpts(0)
	opts.InsecureSkipVerify = true
	in, err := Pull(context.Background(), s, e, opts)
	if err != nil {
		t.Fatal(err)
	}
	if in.Meta.SHA256 != sha(content) {
		t.Errorf("recorded hash %s, want the received file's %s", in.Meta.SHA256, sha(content))
	}

	// An unverified download that is not an ONNX model is refused.
	fs.setContent([]byte("<html>rate limited</html>"))
	opts.Force = true
	s2 := newStore(t)
	if _, err := Pull(context.Background(), s2, e, opts); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Fatalf("got %v, want a refusal of a non-ONNX download", err)
	}
	if _, err := s2.Get("nosum"); err == nil {
		t.Fatal("non-ONNX download installed")
	}
	noLeftovers(t, s2.Dir())
}

func TestInstallReplacesAtomically(t *testing.T) {
	a, b := fixtureModel(t, 100), fixtureModel(t, 200)
	fs := newFileServer(t, a)
	s := newStore(t)
	if _, err := Pull(context.Background(), s, urlEntry("m", fs, a), pullOpts(0)); err != nil {
		t.Fatal(err)
	}
	fs.setContent(b)
	in, err := Pull(context.Background(), s, urlEntry("m", fs, b), pullOpts(0))
	if err != nil {
		t.Fatal(err)
	}
	if in.Meta.SHA256 != sha(b) {
		t.Fatal("new version not installed")
	}
	if err := s.Verify("m"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".old-") || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestVerifyDetectsChanges(t *testing.T) {
	content := fixtureModel(t, 512)
	fs := newFileServer(t, content)
	tests := []struct {
		name    string
		damage  func(path string)
		wantMsg string
	}{
		{"flipped byte", func(p string) {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, "SHA-256"},
		{"truncated", func(p string) { os.Truncate(p, 100) }, "100 bytes"},
		{"deleted", func(p string) { os.Remove(p) }, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			in, err := Pull(context.Background(), s, urlEntry("m", fs, content), pullOpts(0))
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(in.ModelPath())
			err = s.Verify("m")
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Verify: %v, want an error containing %q", err, tc.wantMsg)
			}
		})
	}
}

func TestGetListRemove(t *testing.T) {
	content := fixtureModel(t, 64)
	fs := newFileServer(t, content)
	s := newStore(t)

	_, err := s.Get("resnet50")
	if err == nil || !strings.Contains(err.Error(), "model resnet50 is not installed; run `headtune models pull resnet50`") {
		t.Errorf("Get of a missing catalog model: %v", err)
	}
	_, err = s.Get("mine")
	if err == nil || !strings.Contains(err.Error(), "models add") {
		t.Errorf("Get of a missing non-catalog model: %v", err)
	}
	for _, n := range []string{"b", "a"} {
		if _, err := Pull(context.Background(), s, urlEntry(n, fs, content), pullOpts(0)); err != nil {
			t.Fatal(err)
		}
	}
	// Junk that is not a model must not show up.
	os.MkdirAll(filepath.Join(s.Dir(), ".tmp-c-123"), 0o755)
	os.MkdirAll(filepath.Join(s.Dir(), "empty"), 0o755)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Meta.Name != "a" || list[1].Meta.Name != "b" {
		t.Fatalf("List = %+v, want a, b", list)
	}
	if err := s.Remove(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a"); err == nil {
		t.Fatal("removed model still installed")
	}
	if err := s.Remove(context.Background(), "a"); err == nil {
		t.Fatal("removing a missing model succeeded")
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Fatalf("after Remove, List has %d models", len(list))
	}
}

func TestCleanRemovesOldLeftovers(t *testing.T) {
	s := newStore(t)
	old := filepath.Join(s.Dir(), ".tmp-x-1")
	fresh := filepath.Join(s.Dir(), ".old-y-2")
	os.MkdirAll(old, 0o755)
	os.MkdirAll(fresh, 0o755)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	if err := s.Clean(time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Error("old leftover kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("recent folder removed: it may belong to a running install")
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"resnet50", true}, {"squeezenet1.1", true}, {"my_model-v2+ft", true}, {"A", true},
		{"", false}, {".hidden", false}, {"-x", false}, {"a/b", false}, {"..", false},
		{"a b", false}, {strings.Repeat("x", 65), false}, {"ü", false},
	}
	for _, tc := range tests {
		if err := ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("HEADTUNE_HOME", "/x/ht")
	if d, _ := DefaultDir(); d != "/x/ht/models" {
		t.Errorf("with HEADTUNE_HOME: %s", d)
	}
	t.Setenv("HEADTUNE_HOME", "")
	t.Setenv("XDG_DATA_HOME", "/x/data")
	if d, _ := DefaultDir(); d != "/x/data/headtune/models" {
		t.Errorf("with XDG_DATA_HOME: %s", d)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/x/home")
	if d, _ := DefaultDir(); d != "/x/home/.local/share/headtune/models" {
		t.Errorf("default: %s", d)
	}
}

func TestListingMergesCatalogAndUserModels(t *testing.T) {
	content := fixtureModel(t, 64)
	s := newStore(t)
	src := filepath.Join(t.TempDir(), "mine.onnx")
	os.WriteFile(src, content, 0o644)
	if _, err := s.Add(context.Background(), "zz-mine", src, AddOptions{Preset: "unit"}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Listing()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(Catalog())+1 {
		t.Fatalf("%d rows, want catalog + 1", len(rows))
	}
	last := rows[len(rows)-1]
	if last.Name != "zz-mine" || last.Entry != nil || last.Installed == nil {
		t.Errorf("user model row %+v", last)
	}
	for _, r := range rows[:len(rows)-1] {
		if r.Entry == nil || r.Installed != nil {
			t.Errorf("catalog row %s: entry %v installed %v", r.Name, r.Entry != nil, r.Installed != nil)
		}
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func TestConcurrentPullOfSameModelFailsFast(t *testing.T) {
	content := fixtureModel(t, 64)
	fs := newFileServer(t, content)
	s := newStore(t)
	unlock, err := s.lockDownload("m")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Pull(context.Background(), s, urlEntry("m", fs, content), pullOpts(0))
	if err == nil || !strings.Contains(err.Error(), "another headtune process is pulling") {
		t.Fatalf("pull while another holds the lock: %v", err)
	}
	unlock()
	if _, err := Pull(context.Background(), s, urlEntry("m", fs, content), pullOpts(0)); err != nil {
		t.Fatalf("pull after the lock was released: %v", err)
	}
}
