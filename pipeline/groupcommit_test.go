package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache"
)

func groupTestIdentity(dim int) featcache.Identity {
	return featcache.Identity{
		ModelHash:     "sha256:0123456789abcdef",
		FeatureTensor: "features",
		Preprocess:    []byte(`{"width":8,"height":8}`),
		Dim:           dim,
	}
}

// TestGroupCommitKeepsEveryBatch: batches added while commits are paced
// and in flight all reach the cache, in order, once close returns.
func TestGroupCommitKeepsEveryBatch(t *testing.T) {
	const dim, batches = 4, 300
	root := t.TempDir()
	id := groupTestIdentity(dim)
	w, err := featcache.OpenWriter(context.Background(), root, id, featcache.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGroupCommit(w)
	for i := 0; i < batches; i++ {
		k := featcache.HashBytes([]byte{byte(i), byte(i >> 8)})
		if err := g.add([]featcache.Key{k}, []float32{float32(i), 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r, err := featcache.Open(root, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != batches {
		t.Fatalf("cache holds %d rows, want %d", r.Len(), batches)
	}
	row := make([]float32, dim)
	for i := 0; i < batches; i++ {
		k := featcache.HashBytes([]byte{byte(i), byte(i >> 8)})
		n, ok := r.Lookup(k)
		if !ok || n != i {
			t.Fatalf("batch %d: row %d, found %v; want row %d", i, n, ok, i)
		}
		if err := r.Row(n, row); err != nil || row[0] != float32(i) {
			t.Fatalf("batch %d: row %v (%v)", i, row, err)
		}
	}
}

// TestGroupCommitReportsFailure: once a commit fails, later adds and close
// return its error instead of queueing more.
func TestGroupCommitReportsFailure(t *testing.T) {
	root := t.TempDir()
	w, err := featcache.OpenWriter(context.Background(), root, groupTestIdentity(1), featcache.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // every Append now fails
	g := newGroupCommit(w)
	if err := g.add([]featcache.Key{featcache.HashBytes([]byte{1})}, []float32{1}); err != nil {
		t.Fatalf("first add: %v (nothing has failed yet)", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		failed := g.err != nil
		g.mu.Unlock()
		if failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the commit of the first batch never failed")
		}
		time.Sleep(time.Millisecond)
	}
	if err := g.add([]featcache.Key{featcache.HashBytes([]byte{2})}, []float32{2}); !errors.Is(err, featcache.ErrClosed) {
		t.Fatalf("add after a failed commit: %v, want the commit's error", err)
	}
	if err := g.close(); !errors.Is(err, featcache.ErrClosed) {
		t.Fatalf("close: %v, want the commit's error", err)
	}
}
