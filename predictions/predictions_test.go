package predictions

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var rows = []Row{
	{Path: "a/one.jpg", Class: "cat", Probability: 0.75, TopK: []Scored{{"cat", 0.75}, {"dog", 0.25}}, Embedding: []float32{1, -0.5}},
	{Path: "a/two, with comma.png", Error: "decode: not an image"},
	{Path: "b/three \"quoted\".jpg", Class: Unknown, Probability: 0.4, TopK: []Scored{{"dog", 0.4}, {"cat", 0.35}}, Embedding: []float32{0, 2}},
}

// TestRoundTrip writes rows in every format and reads back the paths with
// the format's own resume reader.
func TestRoundTrip(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			f, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			w := f.New(&buf, Options{Embeddings: true, Header: true})
			for _, r := range rows {
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			done, err := f.Done(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("reading back %s: %v\n%s", name, err, buf.String())
			}
			want := map[string]bool{}
			for _, r := range rows {
				want[r.Path] = true
			}
			if !reflect.DeepEqual(done, want) {
				t.Errorf("%s: read back %v, want %v\n%s", name, done, want, buf.String())
			}
		})
	}
}

// TestGolden pins each format's bytes (run with -update after an intended
// change).
func TestGolden(t *testing.T) {
	for _, name := range Names() {
		f, _ := Lookup(name)
		var buf bytes.Buffer
		w := f.New(&buf, Options{Embeddings: true, Header: true})
		for _, r := range rows {
			w.Write(r)
		}
		w.Close()
		golden(t, filepath.Join("testdata", "rows."+name), buf.Bytes())
	}
}

func TestForPath(t *testing.T) {
	for _, tc := range []struct{ path, format, err string }{
		{"p.csv", "csv", ""},
		{"out/P.CSV", "csv", ""},
		{"p.jsonl", "jsonl", ""},
		{"p.json", "jsonl", ""},
		{"p.txt", "text", ""},
		{"p.tsv", "", "no prediction format writes .tsv files"},
		{"preds", "", "no file extension"},
	} {
		f, err := ForPath(tc.path)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ForPath(%q) error %v, want one saying %q", tc.path, err, tc.err)
		case tc.err == "" && (err != nil || f.Name != tc.format):
			t.Errorf("ForPath(%q) = %v, %v, want %s", tc.path, f, err, tc.format)
		}
	}
	if _, err := Lookup("xml"); err == nil || !strings.Contains(err.Error(), "csv, jsonl, text") {
		t.Errorf("Lookup(xml) error %v, want the list of formats", err)
	}
}

// TestResumeCutsTornLine: a job killed mid-row leaves a partial last line;
// Create with Resume drops it, reports the complete rows, and appends after
// them (no second CSV header).
func TestResumeCutsTornLine(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			f, _ := Lookup(name)
			path := filepath.Join(t.TempDir(), "p"+f.Exts[0])
			var buf bytes.Buffer
			w := f.New(&buf, Options{Header: true})
			w.Write(rows[0])
			w.Write(rows[2])
			full := buf.String()
			torn := full[:len(full)-5] // the second row lost its end
			if err := os.WriteFile(path, []byte(torn), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := Create(path, CreateOptions{Resume: true})
			if err != nil {
				t.Fatal(err)
			}
			if !out.Done[rows[0].Path] || out.Done[rows[2].Path] || len(out.Done) != 1 {
				t.Errorf("resume found %v, want only %q", out.Done, rows[0].Path)
			}
			if err := out.Write(rows[2]); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != full {
				t.Errorf("after resume the file is\n%s\nwant\n%s", got, full)
			}
		})
	}
}

// TestCreateTruncates: without Resume an old file is replaced, header
// included.
func TestCreateTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "p.csv")
	for i := 0; i < 2; i++ {
		out, err := Create(path, CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out.Write(rows[0])
		out.Close()
	}
	got, _ := os.ReadFile(path)
	if n := strings.Count(string(got), "\n"); n != 2 {
		t.Errorf("file has %d lines, want header and one row:\n%s", n, got)
	}
}

func TestResumeRefusesOtherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.jsonl")
	os.WriteFile(path, []byte("path,class\na.jpg,cat\n"), 0o644)
	if _, err := Create(path, CreateOptions{Resume: true}); err == nil || !strings.Contains(err.Error(), "not a jsonl predictions file") {
		t.Errorf("resuming a CSV as JSON Lines: %v", err)
	}
}

func FuzzDone(f *testing.F) {
	f.Add([]byte("path,class\na.jpg,cat\n"))
	f.Add([]byte("{\"path\":\"a.jpg\"}\n"))
	f.Add([]byte("a.jpg\tcat\t(cat 1.000)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range Names() {
			fm, _ := Lookup(name)
			done, err := fm.Done(bytes.NewReader(data))
			if err == nil && done == nil {
				t.Fatalf("%s: nil set without an error", name)
			}
		}
	})
}
