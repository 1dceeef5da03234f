//go:build azure

package objstore_test

import (
	"testing"

	"github.com/headtune/headtune/objstore"
	"github.com/headtune/headtune/objstore/objstoretest"
)

func init() {
	clouds["azure"] = cloud{
		open: func(t *testing.T, prefix string) (*objstore.Location, fake) {
			f := objstoretest.StartAzure(t, objstoretest.UniqueContainer())
			return open(t, f.URL(prefix)), f
		},
		sdkAttempts: 3,
		retried:     []int{503, 500},
	}
}

// TestAzureLoopbackOnly: with the guard set, an emulator address that is
// not loopback fails before any connection is made, and without a key,
// SAS token or connection string the default credential chain (whose
// managed identity probe asks 169.254.169.254) is refused.
func TestAzureLoopbackOnly(t *testing.T) {
	objstoretest.Setenv(t, objstoretest.AzureEnv("http://127.0.0.1:9"))
	// A non-loopback emulator domain is refused by gocloud itself; a
	// connection string can name any endpoint.
	t.Setenv("AZURE_STORAGE_KEY", "")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=http;AccountName="+objstoretest.AzuriteAccount+
		";AccountKey="+objstoretest.AzuriteKey+";BlobEndpoint=http://192.0.2.1:9/"+objstoretest.AzuriteAccount+";")
	checkLoopbackGuard(t, "azblob://c/x", "AZURE_STORAGE_CONNECTION_STRING", "refusing Azure's default credential chain", "a key")
}
