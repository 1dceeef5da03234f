package objstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
)

var fastRetry = objstore.RetryPolicy{Attempts: 8, Base: time.Millisecond, Max: 10 * time.Millisecond}

// fake is what the tests need of a fake cloud server (objstoretest).
type fake interface {
	Put(key string, data []byte) error
	FailFirst(substr string, n, code int) *atomic.Int64
	SetFault(fn func(r *http.Request) int)
	Count(method string) int64
}

// cloud is a driver tested against a fake server.
type cloud struct {
	open func(t *testing.T, prefix string) (*objstore.Location, fake)
	// sdkAttempts is how often the cloud's SDK tries a request by itself:
	// a fault that outlasts it shows whether objstore retries on top.
	sdkAttempts int
	// retried are the statuses the retry test injects.
	retried []int
}

// clouds are the drivers with a fake server in this build: S3 always, GCS
// and Azure with their build tags (gcs_test.go, azure_test.go).
var clouds = map[string]cloud{
	"s3": {
		open: func(t *testing.T, prefix string) (*objstore.Location, fake) {
			f := objstoretest.Start(t, "bucket")
			return open(t, f.URL(prefix)), f
		},
		sdkAttempts: 3,
		retried:     []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusTooManyRequests},
	},
}

// backends opens one empty location per driver the tests can run offline.
func backends(t *testing.T) map[string]func(t *testing.T) *objstore.Location {
	m := map[string]func(t *testing.T) *objstore.Location{
		"mem": func(t *testing.T) *objstore.Location {
			return open(t, "mem://"+strings.ReplaceAll(t.Name(), "/", "-")+"/pre/fix")
		},
		"file": func(t *testing.T) *objstore.Location {
			return open(t, "file://"+t.TempDir())
		},
	}
	for name, c := range clouds {
		m[name] = func(t *testing.T) *objstore.Location {
			l, _ := c.open(t, "pre/fix")
			return l
		}
	}
	return m
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
			l := mk(t)
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
			l := mk(t)
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
// backoff until the read succeeds, also when they outlast the SDK's own
// retries; refusals are not retried.
func TestRetryThrottling(t *testing.T) {
	ctx := context.Background()
	for name, c := range clouds {
		t.Run(name, func(t *testing.T) {
			l, f := c.open(t, "data")
			if err := f.Put("data/img.jpg", []byte("pixels")); err != nil {
				t.Fatal(err)
			}
			n := int64(c.sdkAttempts + 1)
			for _, code := range c.retried {
				served := f.FailFirst("img.jpg", int(n), code)
				got, err := l.ReadAll(ctx, "img.jpg", 100)
				if err != nil || string(got) != "pixels" {
					t.Errorf("status %d: ReadAll = %q, %v; want the object after retries", code, got, err)
				}
				if served.Load() != n {
					t.Errorf("status %d: %d failures served, want %d", code, served.Load(), n)
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
		})
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
		if scheme, _, _ := strings.Cut(tc.url, ":"); tc.want == "-tags "+map[string]string{"gs": "gcs", "azblob": "azure"}[scheme] && slices.Contains(objstore.Schemes(), scheme) {
			// Built with that driver: opening a bucket would look up the
			// cloud's default credentials (gcs_test.go, azure_test.go test it).
			continue
		}
		l, err := objstore.Open(ctx, tc.url)
		if err == nil {
			l.Close()
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
