package featcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// newCache writes items [0, n) in batches of 4 and returns the folder.
func newCache(t *testing.T, dim, n int) (root, dir string) {
	t.Helper()
	root = t.TempDir()
	w := mustWriter(t, root, testIdentity(dim))
	for i := 0; i < n; i += 4 {
		keys, rows := batch(i, min(i+4, n), dim)
		if err := w.Append(keys, rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return root, w.Dir()
}

func patchFile(t *testing.T, path string, off int64, f func(b []byte)) {
	t.Helper()
	b := fileBytes(t, path)
	f(b[off:])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedTails: leftovers of a killed append (partial index record,
// uncommitted data rows) are invisible to readers, notes to Verify, and
// dropped by the next writer.
func TestInterruptedTails(t *testing.T) {
	const dim = 8
	for _, tc := range []struct {
		name             string
		indexTail        int // bytes of a next record appended to rows.idx
		dataTail         int // bytes appended to features.f32
		wantIdxB, wantDB int64
	}{
		{"partial record", 20, dim * 4, 20, dim * 4},
		{"full record without data checksum", RecordSize, 0, RecordSize, 0},
		{"data only", 0, 3*dim*4 + 5, 0, 3*dim*4 + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newCache(t, dim, 10)
			idx, data := filepath.Join(dir, indexName), filepath.Join(dir, dataName)
			var rec [RecordSize]byte
			putRecord(rec[:], record{key: itemKey(10), row: 10, crc: 1})
			rec[RecordSize-1] ^= 0xff // torn: its own checksum fails
			appendFile(t, idx, rec[:tc.indexTail])
			appendFile(t, data, make([]byte, tc.dataTail))
			r, err := Open(root, testIdentity(dim))
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, r, 10)
			r.Close()
			rep, err := Verify(dir)
			if err != nil || !rep.OK() || rep.UncommittedIndexBytes != tc.wantIdxB || rep.UncommittedDataBytes != tc.wantDB {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
			w := mustWriter(t, root, testIdentity(dim))
			keys, rows := batch(10, 12, dim)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			w.Close()
			rep, err = Verify(dir)
			if err != nil || !rep.OK() || len(rep.Notes) != 0 || rep.Verified != 12 {
				t.Fatalf("Verify after resume = %+v, %v", rep, err)
			}
		})
	}
}

// TestCorruptionAndRepair damages the cache in ways a crash cannot and
// checks that readers refuse or flag it, Verify names it, Repair drops
// exactly the untrustworthy part, and a writer recomputes it.
func TestCorruptionAndRepair(t *testing.T) {
	const dim, n = 8, 12
	rowBytes := int64(dim * 4)
	for _, tc := range []struct {
		name        string
		damage      func(t *testing.T, dir string)
		openFails   bool  // Open refuses (index damage)
		badRows     []int // Row() fails and Verify lists these
		dropped     []int // items Repair drops
		wantProblem string
	}{
		{
			name: "flipped bit in a data row",
			damage: func(t *testing.T, dir string) {
				patchFile(t, filepath.Join(dir, dataName), 5*rowBytes+3, func(b []byte) { b[0] ^= 0x10 })
			},
			badRows: []int{5}, dropped: []int{5}, wantProblem: "fail their checksum",
		},
		{
			name: "flipped bit in an index record",
			damage: func(t *testing.T, dir string) {
				patchFile(t, filepath.Join(dir, indexName), RecordSize*(1+3)+40, func(b []byte) { b[0] ^= 1 })
			},
			openFails: true, dropped: []int{3}, wantProblem: "intact records after it",
		},
		{
			name: "truncated data file",
			damage: func(t *testing.T, dir string) {
				if err := os.Truncate(filepath.Join(dir, dataName), 10*rowBytes+1); err != nil {
					t.Fatal(err)
				}
			},
			openFails: true, dropped: []int{10, 11}, wantProblem: "past the end",
		},
		{
			name: "duplicate record",
			damage: func(t *testing.T, dir string) {
				// Rewrite record 7 to carry item 2's key (with a valid checksum).
				patchFile(t, filepath.Join(dir, indexName), RecordSize*(1+7), func(b []byte) {
					r, _ := decodeRecord(b)
					r.key = itemKey(2)
					putRecord(b, r)
				})
			},
			dropped: []int{7}, wantProblem: "repeat an earlier hash",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newCache(t, dim, n)
			tc.damage(t, dir)
			id := testIdentity(dim)

			r, err := Open(root, id)
			if tc.openFails {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "repair") {
					t.Fatalf("Open of a damaged index: %v, want ErrCorrupt with a repair hint", err)
				}
				if _, err := OpenWriter(context.Background(), root, id, WriterOptions{}); err == nil || !strings.Contains(err.Error(), "repair") {
					t.Fatalf("OpenWriter of a damaged index: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				dst := make([]float32, dim)
				for row := 0; row < n; row++ {
					err := r.Row(row, dst)
					if slices.Contains(tc.badRows, row) != (err != nil) {
						t.Fatalf("Row(%d) = %v", row, err)
					}
					if err != nil && !errors.Is(err, ErrCorrupt) {
						t.Fatalf("Row(%d) = %v, want ErrCorrupt", row, err)
					}
				}
				r.Close()
			}

			rep, err := Verify(dir)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "; "), tc.wantProblem) {
				t.Fatalf("Verify problems %q, want one with %q", rep.Problems, tc.wantProblem)
			}
			if !slices.Equal(rep.BadRows, tc.badRows) {
				t.Fatalf("Verify BadRows = %v, want %v", rep.BadRows, tc.badRows)
			}

			fix, err := Repair(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fix.Dropped() != len(tc.dropped) || fix.Kept != n-len(tc.dropped) {
				t.Fatalf("Repair = %+v, want %d dropped", fix, len(tc.dropped))
			}
			rep, err = Verify(dir)
			if err != nil || !rep.OK() || len(rep.Notes) != 0 {
				t.Fatalf("Verify after Repair = %+v, %v", rep, err)
			}
			if again, err := Repair(dir); err != nil || again.Dropped() != 0 || again.Kept != fix.Kept {
				t.Fatalf("second Repair = %+v, %v", again, err)
			}

			// Kept items keep their rows; dropped ones are recomputed by a
			// writer into new rows.
			w := mustWriter(t, root, id)
			for i := 0; i < n; i++ {
				if w.Has(itemKey(i)) == slices.Contains(tc.dropped, i) {
					t.Fatalf("after Repair, Has(item %d) = %v", i, w.Has(itemKey(i)))
				}
			}
			keys, rows := batch(0, n, dim)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			w.Close()
			r, err = Open(root, id)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, want := make([]float32, dim), make([]float32, dim)
			for i := 0; i < n; i++ {
				row, ok := r.Lookup(itemKey(i))
				if !ok {
					t.Fatalf("item %d missing after recompute", i)
				}
				if !slices.Contains(tc.dropped, i) && row != i {
					t.Fatalf("kept item %d moved to row %d", i, row)
				}
				if err := r.Row(row, got); err != nil {
					t.Fatal(err)
				}
				itemRow(i, want)
				if !sameBits(got, want) {
					t.Fatalf("item %d: wrong features after repair", i)
				}
			}
			if rep, err := Verify(dir); err != nil || !rep.OK() {
				t.Fatalf("final Verify = %+v, %v", rep, err)
			}
		})
	}
}

func TestRepairUnreadableManifest(t *testing.T) {
	_, dir := newCache(t, 4, 4)
	if err := os.WriteFile(filepath.Join(dir, manifestName), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir)
	if err != nil || rep.OK() {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := Repair(dir); err == nil || !strings.Contains(err.Error(), "delete the folder") {
		t.Fatalf("Repair = %v", err)
	}
}

func TestList(t *testing.T) {
	root, dir := newCache(t, 4, 6)
	if err := WriteView(dir, "train", []ViewEntry{{Path: "a.jpg", Key: itemKey(0)}}); err != nil {
		t.Fatal(err)
	}
	other := testIdentity(5)
	other.ModelHash = "another model"
	w := mustWriter(t, root, other)
	w.Close()
	if err := os.Mkdir(filepath.Join(root, "unrelated"), 0o755); err != nil {
		t.Fatal(err)
	}
	infos, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Fatalf("List found %d folders, want 2: %+v", len(infos), infos)
	}
	var found bool
	for _, in := range infos {
		if in.Dir == dir {
			found = true
			if in.Err != nil || in.Rows != 6 || in.DataBytes != 6*4*4 || in.ID != testIdentity(4).ID() || !slices.Equal(in.Views, []string{"train"}) {
				t.Fatalf("Info = %+v", in)
			}
		}
	}
	if !found {
		t.Fatalf("List missed %s", dir)
	}
	if infos, err := List(filepath.Join(root, "nope")); err != nil || len(infos) != 0 {
		t.Fatalf("List of a missing root = %v, %v", infos, err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("HEADTUNE_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, err := DefaultDir(); err != nil || d != "/x/cache/headtune/features" {
		t.Fatalf("DefaultDir = %q, %v", d, err)
	}
	t.Setenv("HEADTUNE_CACHE_DIR", "/y")
	if d, err := DefaultDir(); err != nil || d != "/y" {
		t.Fatalf("DefaultDir with HEADTUNE_CACHE_DIR = %q, %v", d, err)
	}
}

// TestInterruptedCreation: a writer killed while creating the folder leaves
// a folder with only some of its files; all of them read as an empty cache.
func TestInterruptedCreation(t *testing.T) {
	for _, keep := range [][]string{{lockName}, {lockName, manifestName}} {
		t.Run(strings.Join(keep, "+"), func(t *testing.T) {
			root, dir := newCache(t, 4, 0)
			for _, name := range []string{manifestName, indexName, dataName} {
				if !slices.Contains(keep, name) {
					os.Remove(filepath.Join(dir, name))
				}
			}
			rep, err := Verify(dir)
			if err != nil || !rep.OK() || rep.Records != 0 || len(rep.Notes) == 0 {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
			if fix, err := Repair(dir); err != nil || fix.Kept != 0 {
				t.Fatalf("Repair = %+v, %v", fix, err)
			}
			if r, err := Open(root, testIdentity(4)); err == nil {
				if r.Len() != 0 {
					t.Fatalf("Len = %d", r.Len())
				}
				r.Close()
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			w := mustWriter(t, root, testIdentity(4))
			keys, rows := batch(0, 2, 4)
			if err := w.Append(keys, rows); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if rep, err := Verify(dir); err != nil || !rep.OK() || rep.Verified != 2 {
				t.Fatalf("Verify after resume = %+v, %v", rep, err)
			}
		})
	}
}
