//go:build azure

package pipeline

import (
	"testing"

	"github.com/headtune/headtune/objstore/objstoretest"
)

// TestAzureShardRoundTrip: plan, shard extract and merge through Azurite.
func TestAzureShardRoundTrip(t *testing.T) {
	f := objstoretest.StartAzure(t, objstoretest.UniqueContainer())
	cloudRoundTrip(t, f.Put, f.URL)
}

// TestAzureShardChanged: objects deleted or rewritten after the plan are
// skipped and named.
func TestAzureShardChanged(t *testing.T) {
	f := objstoretest.StartAzure(t, objstoretest.UniqueContainer())
	cloudChanged(t, f.Put, f.Delete, f.URL)
}
