package featcache

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestViewRoundTrip(t *testing.T) {
	dir := t.TempDir()
	entries := []ViewEntry{
		{Path: "cats/a.jpg", Label: "cat", Split: "train", Key: itemKey(0), Row: 0},
		{Path: `odd, "quoted"` + "\nname.png", Label: "dog, big", Split: "", Key: itemKey(1), Row: 7},
		{Path: "ünïcode/ß.jpg", Label: "", Split: "test", Key: itemKey(2), Row: 1 << 30},
	}
	if err := WriteView(dir, "train", entries); err != nil {
		t.Fatal(err)
	}
	got, err := ReadView(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, entries) {
		t.Fatalf("ReadView = %+v, want %+v", got, entries)
	}
	// Rewriting replaces the whole view (removed files drop out) and leaves
	// no temporary files.
	if err := WriteView(dir, "train", entries[:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadView(dir, "train"); len(got) != 1 {
		t.Fatalf("rewritten view has %d entries", len(got))
	}
	ents, _ := os.ReadDir(filepath.Join(dir, viewsDir))
	if len(ents) != 1 {
		t.Fatalf("views folder holds %d files, want 1", len(ents))
	}
	if err := WriteView(dir, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadView(dir, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("empty view: %v, %v", got, err)
	}
	for _, name := range []string{"", ".", "..", "../x", "a/b", ".hidden", strings.Repeat("n", 201)} {
		if err := WriteView(dir, name, entries); err == nil {
			t.Errorf("WriteView accepted name %q", name)
		}
	}
	if _, err := ReadView(dir, "missing"); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Fatalf("ReadView of a missing view: %v", err)
	}
}

func TestParseViewErrors(t *testing.T) {
	h := itemKey(0).String()
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "no header"},
		{"wrong header", "path,label,split,key,row\n", `"key"`},
		{"short record", "path,label,split,hash,row\na.jpg,cat,train," + h + "\n", "wrong number of fields"},
		{"bad hash", "path,label,split,hash,row\na.jpg,cat,train,xyz,0\n", "key"},
		{"negative row", "path,label,split,hash,row\na.jpg,cat,train," + h + ",-1\n", "row"},
		{"huge row", "path,label,split,hash,row\na.jpg,cat,train," + h + ",99999999999999\n", "row"},
		{"empty path", "path,label,split,hash,row\n,cat,train," + h + ",0\n", "empty path"},
		{"bad quote", "path,label,split,hash,row\n\"a.jpg,cat,train," + h + ",0\n", "quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseView(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseView error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
	got, err := ParseView(strings.NewReader("path,label,split,hash,row\r\nx.jpg,a,train," + strings.ToUpper(h) + ",3\r\n"))
	if err != nil || len(got) != 1 || got[0].Key != itemKey(0) || got[0].Row != 3 {
		t.Fatalf("CRLF view: %+v, %v", got, err)
	}
}

// TestDatasetView walks the rename / change / remove story of a dataset:
// a renamed file reuses its features, a changed file gets new ones, a
// removed file drops out of the view, and LoadMatrix follows the view.
func TestDatasetView(t *testing.T) {
	const dim = 16
	root := t.TempDir()
	id := testIdentity(dim)
	w := mustWriter(t, root, id)
	// Run 1: files a, b, c hold items 0, 1, 2.
	run := func(files map[string]int) []ViewEntry {
		var entries []ViewEntry
		var keys []Key
		var rows []float32
		row := make([]float32, dim)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			k := itemKey(files[n])
			if !w.Has(k) {
				keys = append(keys, k)
				itemRow(files[n], row)
				rows = append(rows, row...)
			}
			entries = append(entries, ViewEntry{Path: n, Label: n[:1], Split: "train", Key: k})
		}
		if err := w.Append(keys, rows); err != nil {
			t.Fatal(err)
		}
		for i := range entries {
			entries[i].Row, _ = w.Lookup(entries[i].Key)
		}
		if err := WriteView(w.Dir(), "ds", entries); err != nil {
			t.Fatal(err)
		}
		return entries
	}
	run(map[string]int{"a": 0, "b": 1, "c": 2})
	if w.Len() != 3 {
		t.Fatalf("Len = %d", w.Len())
	}
	// Run 2: b renamed to d (same bytes), c changed (new bytes), a removed.
	run(map[string]int{"d": 1, "c": 3})
	if w.Len() != 4 {
		t.Fatalf("after run 2 Len = %d, want 4 (only the changed file is new)", w.Len())
	}
	w.Close()

	r, err := Open(root, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	view, err := ReadView(r.Dir(), "ds")
	if err != nil {
		t.Fatal(err)
	}
	if len(view) != 2 || view[0].Path != "c" || view[1].Path != "d" {
		t.Fatalf("view = %+v", view)
	}
	X, N, D, err := LoadMatrix(r, view)
	if err != nil {
		t.Fatal(err)
	}
	if N != 2 || D != dim || len(X) != N*D {
		t.Fatalf("LoadMatrix shape %dx%d, len %d", N, D, len(X))
	}
	want := make([]float32, dim)
	for i, item := range []int{3, 1} {
		itemRow(item, want)
		if !sameBits(X[i*D:(i+1)*D], want) {
			t.Fatalf("row %d of the matrix is not item %d", i, item)
		}
	}
	view = append(view, ViewEntry{Path: "new.jpg", Key: itemKey(99)})
	if _, _, _, err := LoadMatrix(r, view); err == nil || !strings.Contains(err.Error(), "new.jpg") {
		t.Fatalf("LoadMatrix with an uncached file: %v", err)
	}
}

func FuzzReadView(f *testing.F) {
	var buf bytes.Buffer
	_ = encodeView(&buf, []ViewEntry{
		{Path: "a.jpg", Label: "cat", Split: "train", Key: itemKey(0), Row: 0},
		{Path: "b,\"c\".jpg", Label: "", Split: "val", Key: itemKey(1), Row: 12},
	})
	f.Add(buf.Bytes())
	f.Add([]byte("path,label,split,hash,row\n"))
	f.Add([]byte(""))
	f.Add([]byte("path,label,split,hash,row\nx,y,z,00,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseView(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses must survive a write/read round trip unchanged.
		var out bytes.Buffer
		if err := encodeView(&out, entries); err != nil {
			t.Fatalf("encode of parsed entries: %v", err)
		}
		again, err := ParseView(&out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("round trip changed %d entries into %d", len(entries), len(again))
		}
		for i := range entries {
			if entries[i].Path == "" || entries[i].Row < 0 {
				t.Fatalf("entry %d accepted: %+v", i, entries[i])
			}
			if again[i] != entries[i] {
				// encoding/csv normalises \r\n inside quoted fields to \n.
				a, b := again[i], entries[i]
				a.Path, b.Path = strings.ReplaceAll(a.Path, "\r", ""), strings.ReplaceAll(b.Path, "\r", "")
				a.Label, b.Label = strings.ReplaceAll(a.Label, "\r", ""), strings.ReplaceAll(b.Label, "\r", "")
				a.Split, b.Split = strings.ReplaceAll(a.Split, "\r", ""), strings.ReplaceAll(b.Split, "\r", "")
				if a != b {
					t.Fatalf("entry %d: %+v became %+v", i, entries[i], again[i])
				}
			}
		}
	})
}
