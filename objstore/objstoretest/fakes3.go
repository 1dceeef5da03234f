// Package objstoretest runs an in-process fake S3 server on 127.0.0.1 for
// tests, with fault injection (throttling, server errors, truncated
// bodies). Nothing it starts listens on or dials anything but loopback.
package objstoretest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/headtune/headtune/objstore"
)

// FakeS3 is a fake S3 endpoint serving one bucket.
type FakeS3 struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	Bucket   string
	// Requests counts every request the server received, by method.
	Requests sync.Map // string -> *atomic.Int64

	srv     *httptest.Server
	backend *s3mem.Backend
	mu      sync.Mutex
	fault   func(r *http.Request) int // status to fail with, 0 to serve
	delay   func(r *http.Request) time.Duration
}

// Env is the environment a process needs to reach a FakeS3: static
// credentials, no instance-metadata fallback, loopback-only dialling.
func Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=fake", "AWS_SECRET_ACCESS_KEY=fake", "AWS_SESSION_TOKEN=",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PROFILE=",
		objstore.LoopbackOnlyEnv + "=1",
	}
}

// Start starts a fake S3 with one empty bucket and sets the test process's
// environment (Env) for the duration of t.
func Start(t testing.TB, bucket string) *FakeS3 {
	t.Helper()
	for _, kv := range Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	f, err := StartServer(bucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// Close stops the server.
func (f *FakeS3) Close() { f.srv.Close() }

// StartServer starts a fake S3 with one empty bucket on 127.0.0.1 without
// touching the environment (benchmarks set Env themselves); Close stops
// it.
func StartServer(bucket string) (*FakeS3, error) {
	f := &FakeS3{Bucket: bucket, backend: s3mem.New()}
	if err := f.backend.CreateBucket(bucket); err != nil {
		return nil, err
	}
	handler := gofakes3.New(f.backend).Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := f.Requests.LoadOrStore(r.Method, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		f.mu.Lock()
		fault, delay := f.fault, f.delay
		f.mu.Unlock()
		if delay != nil {
			if d := delay(r); d > 0 {
				time.Sleep(d)
			}
		}
		if fault != nil {
			if code := fault(r); code != 0 {
				writeError(w, code)
				return
			}
		}
		handler.ServeHTTP(w, r)
	})}}
	f.srv.Start()
	f.Endpoint = f.srv.URL
	return f, nil
}

// URL returns the s3:// URL of prefix in the fake bucket, with the
// endpoint and path-style parameters set. Response checksums are checked
// only when asked for: gofakes3 sends the whole object's CRC with a ranged
// read, which the SDK would otherwise compare with the range (real S3
// sends none for a range).
func (f *FakeS3) URL(prefix string) string {
	return "s3://" + f.Bucket + "/" + strings.TrimPrefix(prefix, "/") + "?endpoint=" + f.Endpoint +
		"&use_path_style=true&region=us-east-1&disable_https=true&response_checksum_validation=when_required"
}

// SetFault installs fn, asked for every request: a non-zero status fails
// the request with that status (503 as S3's SlowDown, 500 as
// InternalError, anything else as a bare error). nil removes it.
func (f *FakeS3) SetFault(fn func(r *http.Request) int) {
	f.mu.Lock()
	f.fault = fn
	f.mu.Unlock()
}

// SetDelay installs fn, asked for every request: the server waits that
// long before answering (a slow store, so that tests can act mid-run).
func (f *FakeS3) SetDelay(fn func(r *http.Request) time.Duration) {
	f.mu.Lock()
	f.delay = fn
	f.mu.Unlock()
}

// Keys lists the keys under prefix, straight from the backend.
func (f *FakeS3) Keys(prefix string) ([]string, error) {
	p := gofakes3.NewPrefix(&prefix, nil)
	res, err := f.backend.ListBucket(f.Bucket, &p, gofakes3.ListBucketPage{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range res.Contents {
		out = append(out, o.Key)
	}
	return out, nil
}

// Get returns an object's bytes straight from the backend.
func (f *FakeS3) Get(key string) ([]byte, error) {
	o, err := f.backend.GetObject(f.Bucket, key, nil)
	if err != nil {
		return nil, err
	}
	defer o.Contents.Close()
	return io.ReadAll(o.Contents)
}

// FailFirst makes the first n requests for each object key whose path
// contains substr fail with status code; it returns a counter of the
// failures served.
func (f *FakeS3) FailFirst(substr string, n int, code int) *atomic.Int64 {
	var mu sync.Mutex
	seen := map[string]int{}
	served := new(atomic.Int64)
	f.SetFault(func(r *http.Request) int {
		if !strings.Contains(r.URL.Path, substr) {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		key := r.Method + " " + r.URL.Path
		if seen[key] < n {
			seen[key]++
			served.Add(1)
			return code
		}
		return 0
	})
	return served
}

// Count returns the number of requests with method received so far.
func (f *FakeS3) Count(method string) int64 {
	c, ok := f.Requests.Load(method)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// Put stores an object directly in the backend (no HTTP).
func (f *FakeS3) Put(key string, data []byte) error {
	_, err := f.backend.PutObject(f.Bucket, key, map[string]string{}, strings.NewReader(string(data)), int64(len(data)), nil)
	return err
}

// Delete removes an object directly in the backend.
func (f *FakeS3) Delete(key string) error {
	_, err := f.backend.DeleteObject(f.Bucket, key)
	return err
}

func writeError(w http.ResponseWriter, code int) {
	s3code := "InternalError"
	switch code {
	case http.StatusServiceUnavailable:
		s3code = "SlowDown"
	case http.StatusTooManyRequests:
		s3code = "TooManyRequests"
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + s3code + `</Code><Message>injected by the test</Message></Error>`))
}
