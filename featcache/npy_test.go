package featcache

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteNPY(t *testing.T) {
	dir := t.TempDir()
	X := []float32{1, -2.5, float32(math.Inf(1)), 0, 3, 4}
	y := []int32{7, -1}
	px, py := filepath.Join(dir, "X.npy"), filepath.Join(dir, "y.npy")
	if err := WriteNPYFloat32(px, X, 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPYInt32(py, y); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPYFloat32(px, X, 3, 3); err == nil {
		t.Fatal("shape mismatch accepted")
	}
	for _, tc := range []struct {
		path, descr, shape string
		n                  int
	}{{px, "'<f4'", "(2, 3)", len(X)}, {py, "'<i4'", "(2,)", len(y)}} {
		b := fileBytes(t, tc.path)
		if string(b[:8]) != "\x93NUMPY\x01\x00" {
			t.Fatalf("%s: bad magic %q", tc.path, b[:8])
		}
		hl := int(binary.LittleEndian.Uint16(b[8:]))
		if (10+hl)%64 != 0 || b[10+hl-1] != '\n' {
			t.Fatalf("%s: header of %d bytes not padded to 64", tc.path, hl)
		}
		head := string(b[10 : 10+hl])
		if !strings.Contains(head, tc.descr) || !strings.Contains(head, tc.shape) {
			t.Fatalf("%s: header %q", tc.path, head)
		}
		if len(b)-10-hl != 4*tc.n {
			t.Fatalf("%s: %d data bytes, want %d", tc.path, len(b)-10-hl, 4*tc.n)
		}
		body := b[10+hl:]
		for i := 0; i < tc.n; i++ {
			v := binary.LittleEndian.Uint32(body[4*i:])
			if tc.path == px && v != math.Float32bits(X[i]) || tc.path == py && int32(v) != y[i] {
				t.Fatalf("%s: value %d wrong", tc.path, i)
			}
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("temporary files left: %d entries", len(ents))
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import numpy").Run(); err != nil {
		return // the byte checks above suffice without numpy
	}
	out, err := exec.Command("/usr/bin/python3", "-c",
		"import numpy as np,sys; X=np.load(sys.argv[1]); y=np.load(sys.argv[2]); print(X.shape, X.dtype, X[1].tolist(), y.tolist())", px, py).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "(2, 3) float32 [0.0, 3.0, 4.0] [7, -1]" {
		t.Fatalf("numpy.load: %v %s", err, out)
	}
}
