//go:build gcs

package objstore_test

import (
	"testing"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
)

func init() {
	clouds["gcs"] = cloud{
		open: func(t *testing.T, prefix string) (*objstore.Location, fake) {
			f := objstoretest.StartGCS(t, "bucket")
			t.Cleanup(func() {
				if n := f.MetadataRequests(); n > 0 {
					t.Errorf("%d requests went to the metadata server: a credentials lookup", n)
				}
			})
			return open(t, f.URL(prefix)), f
		},
		sdkAttempts: 3,
		retried:     []int{503, 500, 429},
	}
}

// TestGCSLoopbackOnly: with the guard set, an emulator host that is not
// loopback fails before any connection is made, and without an emulator
// host no credentials lookup is tried.
func TestGCSLoopbackOnly(t *testing.T) {
	objstoretest.StartGCS(t, "bucket") // sets the environment
	t.Setenv("STORAGE_EMULATOR_HOST", "192.0.2.1:9")
	checkLoopbackGuard(t, "gs://bucket/x", "STORAGE_EMULATOR_HOST", "refusing to look up Google credentials", "an emulator host")
}
