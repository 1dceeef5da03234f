package testasset

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTB records what Skip and OptIn do to a test.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = format
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = format
}

func TestSkipFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci           string
		skip, fail   bool
		missingSkips bool
	}{
		{"", true, false, true},
		{"false", true, false, true},
		{"true", false, true, false},
		{"1", false, true, false},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		Skip(f, "libfoo not found")
		if f.skipped != tc.skip || f.failed != tc.fail {
			t.Errorf("CI=%q: Skip skipped %v failed %v, want %v %v", tc.ci, f.skipped, f.failed, tc.skip, tc.fail)
		}
		if got := Missing("libfoo not found"); got != tc.missingSkips {
			t.Errorf("CI=%q: Missing = %v, want %v", tc.ci, got, tc.missingSkips)
		}
	}
}

func TestOptInSkipsInCITooUnlessSet(t *testing.T) {
	t.Setenv("CI", "true")
	t.Setenv("HEADTUNE_TESTASSET_LONG", "")
	f := &fakeTB{}
	OptIn(f, "HEADTUNE_TESTASSET_LONG", "the long test")
	if !f.skipped || f.failed {
		t.Errorf("unset opt-in in CI: skipped %v failed %v, want a skip", f.skipped, f.failed)
	}
	t.Setenv("HEADTUNE_TESTASSET_LONG", "1")
	f = &fakeTB{}
	if v := OptIn(f, "HEADTUNE_TESTASSET_LONG", "the long test"); v != "1" || f.skipped || f.failed {
		t.Errorf("set opt-in: value %q skipped %v failed %v", v, f.skipped, f.failed)
	}
}

// TestDepsStaysInRepository: downloads that tests keep go under the
// repository's .deps/, never into the user's home.
func TestDepsStaysInRepository(t *testing.T) {
	t.Setenv("HEADTUNE_DEPS", "")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot %s has no go.mod", root)
	}
	d := Deps(t, "npm")
	if d != filepath.Join(root, ".deps", "npm") {
		t.Errorf("Deps = %s, want %s/.deps/npm", d, root)
	}
	if home, err := os.UserHomeDir(); err == nil && strings.HasPrefix(d, filepath.Join(home, ".cache")) {
		t.Errorf("Deps %s is in the user's cache", d)
	}
	other := t.TempDir()
	t.Setenv("HEADTUNE_DEPS", other)
	if d := Deps(t, "npm"); d != filepath.Join(other, "npm") {
		t.Errorf("with HEADTUNE_DEPS, Deps = %s", d)
	}
}
