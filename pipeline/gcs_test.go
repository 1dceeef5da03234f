//go:build gcs

package pipeline

import (
	"testing"

	"github.com/headtune/headtune/objstore/objstoretest"
)

// TestGCSShardRoundTrip: plan, shard extract and merge through a fake GCS.
func TestGCSShardRoundTrip(t *testing.T) {
	f := objstoretest.StartGCS(t, "bucket")
	cloudRoundTrip(t, f.Put, f.URL)
	if n := f.MetadataRequests(); n > 0 {
		t.Errorf("%d requests went to the metadata server: a credentials lookup", n)
	}
}

// TestGCSShardChanged: objects deleted or rewritten after the plan are
// skipped and named.
func TestGCSShardChanged(t *testing.T) {
	f := objstoretest.StartGCS(t, "bucket")
	cloudChanged(t, f.Put, f.Delete, f.URL)
}
