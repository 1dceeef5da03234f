package objstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
)

var fastRetry = objstore.RetryPolicy{Attempts: 8, Base: time.Millisecond, Max: 10 * time.Millisecond}

// backends opens one empty location per driver the tests can run offline.
func backends(t *testing.T) map[string]func(t *testing.T) (*objstore.Location, *objstoretest.FakeS3) {
	return map[string]func(t *testing.T) (*objstore.Location, *objstoretest.FakeS3){
		"mem": func(t *testing.T) (*objstore.Location, *objstoretest.FakeS3) {
			return open(t, "mem://"+strings.ReplaceAll(t.Name(), "/", "-")+"/pre/fix"), nil
		},
		"file": func(t *testing.T) (*objstore.Location, *objstoretest.FakeS3) {
			return open(t, "file://"+t.TempDir()), nil
		},
		"s3": func(t *testing.T) (*objstore.Location, *objstoretest.FakeS3) {
			f := objstoretest.Start(t, "bucket")
			return open(t, f.URL("pre/fix")), f
		},
	}
}

func open(t *testing.T, url string) *objstore.Location {
	t.Helper()
	l, err := objstore.Create(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	l.Retry = fastRetry
	t.Cleanup(func() { l.Close() })
	return l
}

func TestReadWriteListDelete(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			l, _ := mk(t)
			files := map[string]string{"b/2.jpg": "two", "a/1.jpg": "one", "a/x/3.png": "three", "top.csv": "csv"}
			for k, v := range files {
				if err := l.WriteAll(ctx, k, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			err := l.Walk(ctx, "", func(o objstore.Object) error {
				got = append(got, fmt.Sprintf("%s:%d", o.Rel, o.Size))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"a/1.jpg:3", "a/x/3.png:5", "b/2.jpg:3", "top.csv:3"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Walk = %v, want %v", got, want)
			}
			dirs, nfiles, err := l.Dirs(ctx, "")
			if err != nil || fmt.Sprint(dirs) != "[a b]" || nfiles != 1 {
				t.Errorf("Dirs = %v, %d files, %v; want [a b], 1 file", dirs, nfiles, err)
			}
			buf := make([]byte, 0, 2)
			data, info, err := l.ReadInto(ctx, "a/x/3.png", buf, 100)
			if err != nil || string(data) != "three" || info.Size != 5 {
				t.Errorf("ReadInto = %q, %+v, %v", data, info, err)
			}
			if _, _, err := l.ReadInto(ctx, "a/x/3.png", nil, 4); err == nil || !errors.Is(err, objstore.ErrTooLarge) {
				t.Errorf("ReadInto over the limit: err = %v, want a size limit error", err)
			}
			_, _, err = l.ReadInto(ctx, "nope.jpg", nil, 100)
			if !objstore.IsNotExist(err) || !strings.Contains(err.Error(), "nope.jpg") {
				t.Errorf("missing object: err = %v, want not-exist naming the key", err)
			}
			if err := l.Delete(ctx, "a/1.jpg"); err != nil {
				t.Fatal(err)
			}
			if ok, err := l.Exists(ctx, "a/1.jpg"); ok || err != nil {
				t.Errorf("after Delete: Exists = %v, %v", ok, err)
			}
			if err := l.Delete(ctx, "a/1.jpg"); err != nil {
				t.Errorf("deleting a missing object: %v", err)
			}
			sub := l.Sub("a")
			if data, err := sub.ReadAll(ctx, "x/3.png", 10); err != nil || string(data) != "three" {
				t.Errorf("Sub(a).ReadAll(x/3.png) = %q, %v", data, err)
			}
		})
	}
}

// TestCreateIfAbsentOneWinner races writers on one key: exactly one wins
// and the object holds the winner's bytes.
func TestCreateIfAbsentOneWinner(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			l, _ := mk(t)
			const n = 8
			var wins atomic.Int64
			var winner atomic.Value
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := fmt.Sprintf("attempt %d", i)
					ok, err := l.CreateIfAbsent(ctx, "shard-1/DONE.json", []byte(body))
					if err != nil {
						t.Error(err)
					}
					if ok {
						wins.Add(1)
						winner.Store(body)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d writers won, want exactly 1", wins.Load())
			}
			got, err := l.ReadAll(ctx, "shard-1/DONE.json", 100)
			if err != nil || string(got) != winner.Load().(string) {
				t.Errorf("object = %q (%v), winner wrote %q", got, err, winner.Load())
			}
			if ok, err := l.CreateIfAbsent(ctx, "shard-1/DONE.json", []byte("late")); ok || err != nil {
				t.Errorf("late writer: created = %v, err = %v; want false, nil", ok, err)
			}
		})
	}
}

// TestRetryThrottling: throttling and server errors are retried with
// backoff until the read succeeds; refusals are not retried.
func TestRetryThrottling(t *testing.T) {
	ctx := context.Background()
	f := objstoretest.Start(t, "bucket")
	l := open(t, f.URL("data"))
	if err := f.Put("data/img.jpg", []byte("pixels")); err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusTooManyRequests} {
		served := f.FailFirst("img.jpg", 5, code) // more than the SDK's own 3 attempts
		got, err := l.ReadAll(ctx, "img.jpg", 100)
		if err != nil || string(got) != "pixels" {
			t.Errorf("status %d: ReadAll = %q, %v; want the object after retries", code, got, err)
		}
		if served.Load() != 5 {
			t.Errorf("status %d: %d failures served, want 5", code, served.Load())
		}
	}
	before := f.Count("GET")
	f.FailFirst("img.jpg", 100, http.StatusForbidden)
	if _, err := l.ReadAll(ctx, "img.jpg", 100); err == nil {
		t.Error("403: ReadAll succeeded, want an error")
	}
	if n := f.Count("GET") - before; n != 1 {
		t.Errorf("403 was requested %d times, want 1 (not retried)", n)
	}
	f.SetFault(nil)
	if l.Stats().Retries.Load() == 0 {
		t.Error("Stats.Retries = 0 after retried reads")
	}
}

// TestLoopbackOnly: with the guard set, a non-loopback endpoint fails
// before any connection is made.
func TestLoopbackOnly(t *testing.T) {
	objstoretest.Start(t, "bucket") // sets the environment
	l, err := objstore.Open(context.Background(), "s3://bucket/x?endpoint=http://192.0.2.1:9&use_path_style=true&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Retry = objstore.RetryPolicy{Attempts: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = l.ReadAll(ctx, "k", 10)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("err = %v, want the loopback guard's refusal", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ url, want string }{
		{"gs://bucket/x", "-tags gcs"},
		{"azblob://c/x", "-tags azure"},
		{"ftp://host/x", "unknown scheme"},
		{"file://host/x", "local folder"},
		{"file://" + filepath.Join(t.TempDir(), "missing"), "no such file"},
		{"s3:///x", "no bucket"},
	} {
		l, err := objstore.Open(ctx, tc.url)
		if err == nil {
			l.Close()
			if strings.HasPrefix(tc.url, "gs:") || strings.HasPrefix(tc.url, "azblob:") {
				continue // built with that driver
			}
			t.Errorf("Open(%s) succeeded, want an error mentioning %q", tc.url, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want it to mention %q", tc.url, err, tc.want)
		}
	}
	if !objstore.IsURL("s3://b/k") || objstore.IsURL("/tmp/x") || objstore.IsURL("C:/x") {
		t.Error("IsURL misclassifies")
	}
}
