package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
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
