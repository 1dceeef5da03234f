package featcache

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestAppendAllocs: steady-state appends of 32 x 2048 floats allocate no
// more than map growth (amortised to well under one allocation per call).
func TestAppendAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("fsyncs 60 batches of 256 KiB")
	}
	const dim, n = 2048, 32
	w := mustWriter(t, t.TempDir(), testIdentity(dim))
	defer w.Close()
	keys, rows := batch(0, n, dim)
	if err := w.Append(keys, rows); err != nil { // sizes the buffers
		t.Fatal(err)
	}
	next := n
	allocs := testing.AllocsPerRun(60, func() {
		for i := range keys {
			keys[i] = itemKey(next + i) // itemKey allocates nothing
		}
		next += n
		if err := w.Append(keys, rows); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("Append allocates %.1f times per batch, want at most 1 (map growth)", allocs)
	}
	r, err := Open(filepath.Dir(w.Dir()), testIdentity(dim))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dst := make([]float32, dim)
	if a := testing.AllocsPerRun(100, func() {
		if err := r.Row(5, dst); err != nil {
			t.Fatal(err)
		}
	}); a != 0 && littleEndian {
		t.Fatalf("Row allocates %.1f times per call", a)
	}
}

// BenchmarkAppend commits batches of 32 x 2048 float32 (256 KiB) and
// compares with the bare file operations a commit needs (two writes, two
// fsyncs) on the same disk.
func BenchmarkAppend(b *testing.B) {
	const dim, n = 2048, 32
	keys, rows := batch(0, n, dim)
	b.Run("featcache", func(b *testing.B) {
		w := mustWriter(b, b.TempDir(), testIdentity(dim))
		defer w.Close()
		b.SetBytes(int64(len(rows) * 4))
		b.ReportAllocs()
		next := 0
		for b.Loop() {
			for i := range keys {
				keys[i] = itemKey(next + i)
			}
			next += n
			if err := w.Append(keys, rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-write-fsync", func(b *testing.B) {
		dir := b.TempDir()
		data, _ := os.Create(filepath.Join(dir, "d"))
		idx, _ := os.Create(filepath.Join(dir, "i"))
		defer data.Close()
		defer idx.Close()
		buf := make([]byte, len(rows)*4)
		putF32s(buf, rows)
		recs := make([]byte, n*RecordSize)
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := data.Write(buf); err != nil {
				b.Fatal(err)
			}
			data.Sync()
			if _, err := idx.Write(recs); err != nil {
				b.Fatal(err)
			}
			idx.Sync()
		}
	})
}

// BenchmarkOpen opens a cache of 100k rows (D=8) and compares with reading
// its index file.
func BenchmarkOpen(b *testing.B) {
	const dim, rows, per = 8, 100_000, 5000
	root := b.TempDir()
	id := testIdentity(dim)
	w := mustWriter(b, root, id)
	for i := 0; i < rows; i += per {
		k, r := batch(i, i+per, dim)
		if err := w.Append(k, r); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	b.Run("Open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := Open(root, id)
			if err != nil || r.Len() != rows {
				b.Fatal(err)
			}
			r.Close()
		}
	})
	b.Run("OpenWriter", func(b *testing.B) {
		for b.Loop() {
			w, err := OpenWriter(context.Background(), root, id, WriterOptions{})
			if err != nil || w.Len() != rows {
				b.Fatal(err)
			}
			w.Close()
		}
	})
	b.Run("baseline-ReadFile-index", func(b *testing.B) {
		for b.Loop() {
			if _, err := os.ReadFile(filepath.Join(Dir(root, id), indexName)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRow reads 2048-float rows with checksum verification and
// compares with a bare ReadAt of the same bytes.
func BenchmarkRow(b *testing.B) {
	const dim, n = 2048, 256
	root := b.TempDir()
	id := testIdentity(dim)
	w := mustWriter(b, root, id)
	k, rows := batch(0, n, dim)
	if err := w.Append(k, rows); err != nil {
		b.Fatal(err)
	}
	w.Close()
	r, err := Open(root, id)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	dst := make([]float32, dim)
	b.Run("Row", func(b *testing.B) {
		b.SetBytes(dim * 4)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := r.Row(i%n, dst); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Lookup+Row", func(b *testing.B) {
		b.SetBytes(dim * 4)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			row, ok := r.Lookup(k[i%n])
			if !ok {
				b.Fatal("missing")
			}
			if err := r.Row(row, dst); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("baseline-ReadAt", func(b *testing.B) {
		f, _ := os.Open(filepath.Join(r.Dir(), dataName))
		defer f.Close()
		buf := f32Bytes(dst)
		b.SetBytes(dim * 4)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := f.ReadAt(buf, int64(i%n)*dim*4); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
