package featcache

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	data := []byte("not really a JPEG")
	k := HashBytes(data)
	if k != Key(sha256.Sum256(data)) {
		t.Fatal("HashBytes is not SHA-256")
	}
	k2, err := HashReader(strings.NewReader(string(data)))
	if err != nil || k2 != k {
		t.Fatalf("HashReader = %v, %v; want %v", k2, err, k)
	}
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if k3, err := HashFile(p); err != nil || k3 != k {
		t.Fatalf("HashFile = %v, %v; want %v", k3, err, k)
	}
	if _, err := HashFile(p + ".missing"); err == nil || !strings.Contains(err.Error(), "img.missing") {
		t.Fatalf("HashFile of a missing file: %v", err)
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{k.String(), true},
		{strings.ToUpper(k.String()), true},
		{k.String()[:63], false},
		{k.String() + "0", false},
		{"zz" + k.String()[2:], false},
		{"", false},
	} {
		got, err := ParseKey(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseKey(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if tc.ok && got != k {
			t.Errorf("ParseKey(%q) = %v, want %v", tc.in, got, k)
		}
	}
}

func TestIdentityID(t *testing.T) {
	base := testIdentity(8)
	mod := func(f func(*Identity)) Identity { id := base; f(&id); return id }
	for _, tc := range []struct {
		name string
		id   Identity
		same bool
	}{
		{"reformatted JSON", mod(func(id *Identity) {
			id.Preprocess = []byte(" {\n \"layout\": \"NHWC\", \"scale\":0.003921569,\"width\":224, \"height\":224 }\n")
		}), true},
		{"other dimension", mod(func(id *Identity) { id.Dim = 16 }), true},
		{"other model", mod(func(id *Identity) { id.ModelHash += "0" }), false},
		{"other tensor", mod(func(id *Identity) { id.FeatureTensor = "logits" }), false},
		{"other preprocessing", mod(func(id *Identity) {
			id.Preprocess = []byte(`{"width":224,"height":224,"scale":1,"layout":"NHWC"}`)
		}), false},
		{"tensor/model swap", mod(func(id *Identity) { id.ModelHash, id.FeatureTensor = id.FeatureTensor, id.ModelHash }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.id.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tc.id.ID() == base.ID(); got != tc.same {
				t.Fatalf("same ID = %v, want %v", got, tc.same)
			}
			if len(tc.id.ID()) != 64 {
				t.Fatalf("ID %q is not 64 hex digits", tc.id.ID())
			}
		})
	}
	for _, tc := range []struct {
		name string
		id   Identity
	}{
		{"no model hash", mod(func(id *Identity) { id.ModelHash = " " })},
		{"no tensor", mod(func(id *Identity) { id.FeatureTensor = "" })},
		{"zero dim", mod(func(id *Identity) { id.Dim = 0 })},
		{"huge dim", mod(func(id *Identity) { id.Dim = MaxDim + 1 })},
		{"bad JSON", mod(func(id *Identity) { id.Preprocess = []byte(`{"width":`) })},
		{"trailing JSON", mod(func(id *Identity) { id.Preprocess = []byte(`{} {}`) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.id.Validate(); err == nil {
				t.Fatal("Validate accepted an invalid identity")
			}
			if _, err := OpenWriter(context.Background(), t.TempDir(), tc.id, WriterOptions{}); err == nil {
				t.Fatal("OpenWriter accepted an invalid identity")
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, dim := range []int{1, 3, 384, 2048} {
		t.Run("D="+strconv.Itoa(dim), func(t *testing.T) {
			root := t.TempDir()
			id := testIdentity(dim)
			w := mustWriter(t, root, id)
			if w.Dir() != Dir(root, id) || w.Dim() != dim {
				t.Fatalf("Dir/Dim = %s/%d", w.Dir(), w.Dim())
			}
			// Batches overlap by 2 items: repeats must be skipped.
			for _, b := range [][2]int{{0, 5}, {3, 9}, {9, 9}, {9, 20}} {
				keys, rows := batch(b[0], b[1], dim)
				if err := w.Append(keys, rows); err != nil {
					t.Fatal(err)
				}
			}
			// A repeat inside one batch: the first vector wins.
			keys, rows := batch(20, 22, dim)
			keys = append(keys, keys[0])
			rows = append(rows, make([]float32, dim)...)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			if w.Len() != 22 || !w.Has(itemKey(21)) || w.Has(itemKey(22)) {
				t.Fatalf("writer Len = %d", w.Len())
			}
			if err := w.Append(keys[:1], rows[:dim+1]); err == nil {
				t.Fatal("Append accepted a rows slice of the wrong length")
			}
			r, err := Open(root, id)
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, r, 22)
			r.Close()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Append(keys, rows); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close: %v", err)
			}
			// Reopen for writing: committed rows are known, new rows continue.
			w = mustWriter(t, root, id)
			if w.Len() != 22 || !w.Has(itemKey(0)) {
				t.Fatalf("reopened writer Len = %d", w.Len())
			}
			keys, rows = batch(15, 30, dim)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			w.Close()
			r, err = Open(root, id)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			checkItems(t, r, 30)
			rep, err := Verify(r.Dir())
			if err != nil || !rep.OK() || rep.Verified != 30 || len(rep.Notes) != 0 {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
			// Data is plain float32 rows, as documented for numpy.
			raw := fileBytes(t, filepath.Join(r.Dir(), dataName))
			if len(raw) != 30*dim*4 {
				t.Fatalf("features.f32 has %d bytes, want %d", len(raw), 30*dim*4)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	root := t.TempDir()
	id := testIdentity(4)
	if _, err := Open(root, id); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of an empty root: %v, want fs.ErrNotExist", err)
	}
	w := mustWriter(t, root, id)
	w.Close()
	r, err := Open(root, id) // created but empty
	if err != nil || r.Len() != 0 {
		t.Fatalf("Open of an empty cache: %v", err)
	}
	if err := r.Row(0, make([]float32, 4)); err == nil {
		t.Fatal("Row(0) of an empty cache succeeded")
	}
	r.Close()
	other := id
	other.Dim = 5
	if _, err := Open(root, other); err == nil || !strings.Contains(err.Error(), "dimension") {
		t.Fatalf("Open with another dimension: %v", err)
	}
	if _, err := OpenWriter(context.Background(), root, other, WriterOptions{}); err == nil {
		t.Fatal("OpenWriter with another dimension succeeded")
	}
	// A backbone.json from another identity in this folder (prefix collision).
	m := newManifest(id)
	m.ModelHash = "other"
	m.ID = m.identity().ID()
	data, _ := marshalManifest(m)
	if err := os.WriteFile(filepath.Join(Dir(root, id), manifestName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root, id); err == nil || !strings.Contains(err.Error(), "collision") {
		t.Fatalf("Open with a foreign backbone.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(Dir(root, id), manifestName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = OpenWriter(context.Background(), root, id, WriterOptions{})
	if err == nil || !strings.Contains(err.Error(), manifestName) {
		t.Fatalf("OpenWriter with a broken backbone.json: %v", err)
	}
}
