//go:build azure

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
	for _, kv := range objstoretest.AzureEnv("http://127.0.0.1:9") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A non-loopback emulator domain is refused by gocloud itself; a
	// connection string can name any endpoint.
	t.Setenv("AZURE_STORAGE_KEY", "")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=http;AccountName="+objstoretest.AzuriteAccount+
		";AccountKey="+objstoretest.AzuriteKey+";BlobEndpoint=http://192.0.2.1:9/"+objstoretest.AzuriteAccount+";")
	l, err := objstore.Open(ctx, "azblob://c/x")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Retry = objstore.RetryPolicy{Attempts: 1}
	if _, err = l.ReadAll(ctx, "k", 10); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("err = %v, want the loopback guard's refusal", err)
	}
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	if l, err := objstore.Open(ctx, "azblob://c/x"); err == nil || !strings.Contains(err.Error(), "refusing Azure's default credential chain") {
		if l != nil {
			l.Close()
		}
		t.Errorf("Open without a key: err = %v, want a refusal of the default credential chain", err)
	}
}
