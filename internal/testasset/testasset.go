// Package testasset is how headtune's tests handle an asset they need and
// may not find (ONNX Runtime, a reference model, an npm tarball, a Python
// peer): on a developer's machine they skip, loudly, saying what is missing
// and how to get it; in CI (CI=true) they fail, because there .ci/run has
// installed everything and a skip would hide a test that never ran.
//
// Long tests that need an explicit opt-in (an environment variable) are not
// missing an asset: they skip with OptIn, in CI too.
package testasset

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI: CI is set to a true value, as
// GitHub Actions, GitLab and .ci/run set it.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Skip skips t because an asset is missing; under CI it fails t instead.
// The message should name the asset and how to provide it.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("asset missing in CI (CI=true; .ci/run installs it): %s", msg)
		return
	}
	t.Skipf("SKIP (asset missing): %s", msg)
}

// OptIn skips t unless the environment variable env is set to a non-empty
// value: for long tests run on request (in CI as well). It returns the
// variable's value.
func OptIn(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("SKIP (opt-in): set %s=1 to run %s", env, what)
	}
	return v
}

// Missing reports a missing asset from a TestMain or an Example gate, where
// there is no testing.TB: under CI it prints the reason and returns false
// (the caller must fail the run); otherwise it prints a SKIP line and
// returns true (the caller may carry on without the tests that need it).
func Missing(format string, args ...any) (skip bool) {
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		fmt.Fprintf(os.Stderr, "FAIL: asset missing in CI (CI=true; .ci/run installs it): %s\n", msg)
		return false
	}
	fmt.Fprintf(os.Stderr, "SKIP (asset missing): %s\n", msg)
	return true
}

// RepoRoot returns the repository's root (the folder holding go.mod),
// found from the working directory, which `go test` sets to the package's
// folder.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// Deps returns a folder under the repository's git-ignored .deps/ for
// tests to keep downloads in between runs (created when missing), so that
// no test writes into the user's home. HEADTUNE_DEPS overrides .deps, as
// it does for scripts/setup.sh.
func Deps(t testing.TB, name string) string {
	t.Helper()
	base := os.Getenv("HEADTUNE_DEPS")
	if base == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatalf("test downloads folder: %v", err)
		}
		base = filepath.Join(root, ".deps")
	}
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test downloads folder: %v", err)
	}
	return dir
}
