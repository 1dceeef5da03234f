// Package objstoretest runs fake object stores on 127.0.0.1 for tests,
// with fault injection (throttling, server errors, delays): S3 (gofakes3,
// in process), Google Cloud Storage (fake-gcs-server, in process; build
// tag gcs) and Azure Blob Storage (Azurite, a node process; build tag
// azure). Nothing it starts listens on or dials anything but loopback.
package objstoretest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/headtune/headtune/objstore"
)

// FakeS3 is a fake S3 endpoint serving one bucket. Its Faults count,
// delay and fail requests.
type FakeS3 struct {
	Faults
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	Bucket   string

	srv     *httptest.Server
	backend *s3mem.Backend
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: f.wrap(gofakes3.New(f.backend).Server(), writeError)}}
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
