//go:build gcs

package objstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Setenv("STORAGE_EMULATOR_HOST", "192.0.2.1:9")
	l, err := objstore.Open(ctx, "gs://bucket/x")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Retry = objstore.RetryPolicy{Attempts: 1}
	if _, err = l.ReadAll(ctx, "k", 10); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("err = %v, want the loopback guard's refusal", err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	if l, err := objstore.Open(ctx, "gs://bucket/x"); err == nil || !strings.Contains(err.Error(), "refusing to look up Google credentials") {
		if l != nil {
			l.Close()
		}
		t.Errorf("Open without an emulator host: err = %v, want a refusal to look up credentials", err)
	}
}
