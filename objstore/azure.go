//go:build azure

package objstore

import (
	"context"
	"net/url"

	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
)

// The Azure Blob Storage driver (build tag azure) takes the account from
// AZURE_STORAGE_ACCOUNT and credentials from AZURE_STORAGE_KEY,
// AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING or Azure's
// default credential chain.
func init() {
	register("azblob", func(ctx context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
		return (&azureblob.URLOpener{}).OpenBucketURL(ctx, u)
	})
}
