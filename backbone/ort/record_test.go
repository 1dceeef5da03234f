package ort_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/headtune/headtune/backbone/ort"
)

// TestRecordedLibrary: the location `make setup` records is read back and
// searched (after the repository's .deps, before the system folders), so a
// binary copied out of the repository finds the library.
func TestRecordedLibrary(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HEADTUNE_HOME", home)
	if got, want := ort.RecordFile(), filepath.Join(home, "onnxruntime-library"); got != want {
		t.Fatalf("RecordFile = %s, want %s", got, want)
	}
	if got := ort.RecordedLibrary(); got != "" {
		t.Errorf("nothing recorded, RecordedLibrary = %q", got)
	}
	lib := filepath.Join(home, "lib", "libonnxruntime.so.1")
	if err := os.WriteFile(ort.RecordFile(), []byte(lib+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ort.RecordedLibrary(); got != lib {
		t.Errorf("RecordedLibrary = %q, want %q", got, lib)
	}
	cands := ort.LibraryCandidates("")
	i := slices.Index(cands, lib)
	if i < 0 {
		t.Fatalf("recorded library not among the candidates %v", cands)
	}
	if j := slices.Index(cands, "/usr/lib/libonnxruntime.so.1"); j >= 0 && j < i {
		t.Errorf("system folder searched before the recorded library: %v", cands)
	}

	t.Setenv("HEADTUNE_HOME", "")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "cfg"))
	if got, want := ort.RecordFile(), filepath.Join(home, "cfg", "headtune", "onnxruntime-library"); got != want {
		t.Errorf("without HEADTUNE_HOME RecordFile = %s, want %s", got, want)
	}
}
