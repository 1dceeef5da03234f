//go:build gcs

package objstoretest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/headtune/headtune/objstore"
)

// FakeGCS is an in-process fake Google Cloud Storage (fake-gcs-server)
// serving one bucket on 127.0.0.1 over plain HTTP. Its Faults count, delay
// and fail requests.
type FakeGCS struct {
	Faults
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	Bucket   string

	srv      *httptest.Server
	gcs      *fakestorage.Server
	metadata atomic.Int64
}

// GCSEnv is the environment a process needs to reach the fake at endpoint
// (http://127.0.0.1:PORT): the emulator host, no application default
// credentials to find, the metadata server pointed at the fake itself
// (so that a lookup that should not happen shows in MetadataRequests
// instead of leaving the machine), loopback-only dialling.
func GCSEnv(endpoint string) []string {
	host := strings.TrimPrefix(endpoint, "http://")
	return []string{
		"STORAGE_EMULATOR_HOST=" + host, "STORAGE_EMULATOR_HOST_GRPC=",
		"GOOGLE_APPLICATION_CREDENTIALS=", "CLOUDSDK_CONFIG=/nonexistent-headtune-test",
		"GCE_METADATA_HOST=" + host,
		objstore.LoopbackOnlyEnv + "=1",
	}
}

// StartGCS starts a fake GCS with one empty bucket and sets the test
// process's environment (GCSEnv) for the duration of t.
func StartGCS(t testing.TB, bucket string) *FakeGCS {
	t.Helper()
	f, err := StartGCSServer(bucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	for _, kv := range GCSEnv(f.Endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return f
}

// StartGCSServer starts a fake GCS with one empty bucket without touching
// the environment; Close stops it.
func StartGCSServer(bucket string) (*FakeGCS, error) {
	// NoListener: fake-gcs-server's own listener would be TLS on every
	// interface; the handler is served here, on loopback, behind Faults.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// The client reads objects through the XML API at the emulator host,
	// which the fake serves only on its "public host".
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Scheme: "http", PublicHost: ln.Addr().String()})
	if err != nil {
		ln.Close()
		return nil, err
	}
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	f := &FakeGCS{Bucket: bucket, gcs: gcs}
	storage := gcs.HTTPHandler()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/computeMetadata/") {
			f.metadata.Add(1)
			http.Error(w, "the fake GCS is no metadata server", http.StatusNotFound)
			return
		}
		storage.ServeHTTP(w, r)
	})
	f.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: f.wrap(handler, writeGCSError)}}
	f.srv.Start()
	f.Endpoint = f.srv.URL
	return f, nil
}

// Close stops the server.
func (f *FakeGCS) Close() {
	f.srv.Close()
	f.gcs.Stop()
}

// URL returns the gs:// URL of prefix in the fake bucket (the endpoint
// comes from STORAGE_EMULATOR_HOST).
func (f *FakeGCS) URL(prefix string) string {
	return "gs://" + f.Bucket + "/" + strings.TrimPrefix(prefix, "/")
}

// MetadataRequests returns the number of requests that reached the fake
// as the metadata server (GCSEnv points GCE_METADATA_HOST here): any is a
// credentials lookup that, outside the test, would have left the machine.
func (f *FakeGCS) MetadataRequests() int64 { return f.metadata.Load() }

// Put stores an object directly in the backend (no HTTP).
func (f *FakeGCS) Put(key string, data []byte) error {
	f.gcs.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: f.Bucket, Name: key}, Content: data})
	return nil
}

// Get returns an object's bytes straight from the backend.
func (f *FakeGCS) Get(key string) ([]byte, error) {
	o, err := f.gcs.GetObject(f.Bucket, key)
	if err != nil {
		return nil, err
	}
	return o.Content, nil
}

// Delete removes an object directly in the backend.
func (f *FakeGCS) Delete(key string) error {
	return f.gcs.Backend().DeleteObject(f.Bucket, key)
}

// Keys lists the keys under prefix, straight from the backend.
func (f *FakeGCS) Keys(prefix string) ([]string, error) {
	objs, _, err := f.gcs.ListObjects(f.Bucket, prefix, "", false)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Name
	}
	return out, nil
}

func writeGCSError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, fmt.Sprintf(`{"error":{"code":%d,"message":"injected by the test","errors":[{"reason":"backendError","message":"injected by the test"}]}}`, code))
}
