//go:build azure

package e2e

import (
	"testing"

	"github.com/headtune/headtune/objstore/objstoretest"
)

func init() { buildTags = append(buildTags, "azure") }

// TestAzureRoundTrip: plan, sharded extract, merge and predict --out with
// azblob:// URLs, against Azurite on 127.0.0.1.
func TestAzureRoundTrip(t *testing.T) {
	f := objstoretest.StartAzure(t, objstoretest.UniqueContainer())
	cloudRoundTrip(t, bucket{env: objstoretest.AzureEnv(f.Endpoint), put: f.Put, get: f.Get, url: f.URL})
}
