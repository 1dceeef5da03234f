//go:build gcs

package objstore

import (
	"context"
	"net/url"

	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"
)

// The Google Cloud Storage driver (build tag gcs) takes credentials from
// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
// user credentials, the metadata server on Google Cloud).
func init() {
	register("gs", func(ctx context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
		return (&gcsblob.URLOpener{}).OpenBucketURL(ctx, u)
	})
}
