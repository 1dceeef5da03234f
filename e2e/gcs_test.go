//go:build gcs

package e2e

import (
	"testing"

	"github.com/headtune/headtune/objstore/objstoretest"
)

func init() { buildTags = append(buildTags, "gcs") }

// TestGCSRoundTrip: plan, sharded extract, merge and predict --out with
// gs:// URLs, against fake-gcs-server on 127.0.0.1.
func TestGCSRoundTrip(t *testing.T) {
	f := objstoretest.StartGCS(t, "bucket")
	cloudRoundTrip(t, bucket{env: objstoretest.GCSEnv(f.Endpoint), put: f.Put, get: f.Get, url: f.URL})
	if n := f.MetadataRequests(); n > 0 {
		t.Errorf("%d requests went to the metadata server: a credentials lookup", n)
	}
}
