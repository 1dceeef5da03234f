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
