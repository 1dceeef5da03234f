package pipeline

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadLastRunOldRelativeRecord: records written before paths were made
// absolute hold the view relative to the folder extract ran in; reading one
// from elsewhere must find the view under the cache root.
func TestReadLastRunOldRelativeRecord(t *testing.T) {
	root := t.TempDir()
	want := filepath.Join(root, "0123456789abcdef", "views", "ds-1a2b3c4d.csv")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("path,label,split,key,row\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, view, cacheDir string }{
		{"relative to another folder", "work/relcache/0123456789abcdef/views/ds-1a2b3c4d.csv", "work/relcache/0123456789abcdef"},
		{"bare cache-relative", "0123456789abcdef/views/ds-1a2b3c4d.csv", "0123456789abcdef"},
		{"absolute", want, filepath.Dir(filepath.Dir(want))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := `{"dataset": "ds", "model": "m.onnx", "cache_dir": "` + tc.cacheDir + `", "view": "` + tc.view + `"}`
			if err := os.WriteFile(filepath.Join(root, lastRunFile), []byte(rec), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := ReadLastRun(root)
			if err != nil {
				t.Fatal(err)
			}
			if l.View != want {
				t.Errorf("View = %q, want %q", l.View, want)
			}
			if l.CacheDir != filepath.Dir(filepath.Dir(want)) {
				t.Errorf("CacheDir = %q, want %q", l.CacheDir, filepath.Dir(filepath.Dir(want)))
			}
		})
	}
}
