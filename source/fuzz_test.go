package source

import (
	"strings"
	"testing"
)

// FuzzParseManifest: any input either fails with an error or yields rows
// whose keys are clean and stay inside the manifest's folder.
func FuzzParseManifest(f *testing.F) {
	f.Add("path,label,split\nimg/1.jpg,cat,train\n")
	f.Add("label,path\ndog,a/../b.jpg\n")
	f.Add("path,label\n../x.jpg,cat\n")
	f.Add("\ufeffPath,Label\n\"a,b.jpg\",c\n")
	f.Fuzz(func(t *testing.T, data string) {
		_ = parseManifest(strings.NewReader(data), "fuzz.csv", func(line int, key, label, split string) error {
			if key == "" || key == "." || label == "" || key == ".." || strings.HasPrefix(key, "../") || strings.HasPrefix(key, "/") {
				t.Fatalf("line %d: key %q label %q accepted", line, key, label)
			}
			if split != "" && split != "train" && split != "val" && split != "test" {
				t.Fatalf("line %d: split %q", line, split)
			}
			return nil
		})
	})
}
