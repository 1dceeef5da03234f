package testnpm

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteFacePhotos: the six demo photos land in the folder, in name
// order, each a JPEG identical to what FacePhotos returns.
func TestWriteFacePhotos(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	paths := WriteFacePhotos(t, dir)
	want := []string{"sample1.jpg", "sample2.jpg", "sample3.jpg", "sample4.jpg", "sample5.jpg", "sample6.jpg"}
	var got []string
	for _, p := range paths {
		if filepath.Dir(p) != dir {
			t.Errorf("%s not in %s", p, dir)
		}
		got = append(got, filepath.Base(p))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0xff, 0xd8}) || !bytes.Equal(b, FacePhotos(t)[filepath.Base(p)]) {
			t.Errorf("%s: %d bytes, not the JPEG in the tarball", p, len(b))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("wrote %v, want %v", got, want)
	}
}
