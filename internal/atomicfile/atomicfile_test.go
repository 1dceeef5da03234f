package atomicfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	for _, data := range [][]byte{[]byte("first"), bytes.Repeat([]byte{7}, 1<<20), {}} {
		if err := Write(p, data); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, %v; want %d", len(got), err, len(data))
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want only out.bin", len(entries))
	}
}

func TestWriteNamedFallback(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := writeNamed(dir, p, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
}

func TestWriteErrorNamesPathOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	p := filepath.Join(dir, "out.bin")
	err := Write(p, []byte("x"))
	if err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
	if strings.Count(err.Error(), p) != 1 || strings.Contains(err.Error(), ".tmp") {
		t.Fatalf("error should name %s once and no temporary file: %v", p, err)
	}
}

// TestWriteRemovesStaleTemporaries: a writer killed between link and rename
// leaves .NAME.tmp-PID-N; the next write of NAME removes it when PID is
// gone, and leaves a running writer's file and other files alone (BUGS.md
// #6).
func TestWriteRemovesStaleTemporaries(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "h.head")
	// A PID that is certainly not running: a child that has exited and
	// been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	stale := []string{".h.head.tmp-" + strconv.Itoa(dead) + "-5", ".h.head.tmp-" + strconv.Itoa(dead) + "-123456"}
	kept := []string{
		".h.head.tmp-" + strconv.Itoa(os.Getppid()) + "-5", // a live writer
		".other.head.tmp-" + strconv.Itoa(dead) + "-5",     // another file's
		".h.head.tmp-notapid",
		"h.head.bak",
	}
	for _, n := range append(append([]string{}, stale...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Write(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("stale %s was left", n)
		}
	}
	for _, n := range kept {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed: %v", n, err)
		}
	}
}
