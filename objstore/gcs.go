//go:build gcs

package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"cloud.google.com/go/storage"

	"gocloud.dev/blob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/gcp"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// The Google Cloud Storage driver (build tag gcs) takes credentials from
// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
// user credentials, the metadata server on Google Cloud). With
// STORAGE_EMULATOR_HOST set (host:port of an emulator such as
// fake-gcs-server) every request goes there, unauthenticated, and no
// credentials are looked up. The URL parameter anonymous=true reads
// public buckets without credentials.
func init() {
	register("gs", openGCS)
	statusCodes = append(statusCodes, func(err error) (int, bool) {
		var ge *googleapi.Error
		if errors.As(err, &ge) {
			return ge.Code, true
		}
		return 0, false
	})
}

func openGCS(ctx context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
	var transport http.RoundTripper = gcp.DefaultTransport()
	var hc *http.Client
	if loopbackOnly() {
		hc = LoopbackOnlyClient()
		transport = hc.Transport
	}
	o := &gcsblob.URLOpener{}
	anon, _ := strconv.ParseBool(u.Query().Get("anonymous"))
	switch {
	case os.Getenv("STORAGE_EMULATOR_HOST") != "":
		// gcsblob's emulator path sends requests with http.DefaultClient;
		// the option below, applied after it, keeps the loopback guard.
		o.Client = gcp.NewAnonymousHTTPClient(transport)
		if hc != nil {
			o.Options.ClientOptions = []option.ClientOption{option.WithHTTPClient(hc)}
		}
	case loopbackOnly():
		// Looking up default credentials may ask the metadata server, which
		// is not on loopback.
		return nil, fmt.Errorf("%s is set and STORAGE_EMULATOR_HOST is not: refusing to look up Google credentials", LoopbackOnlyEnv)
	case anon:
		o.Client = gcp.NewAnonymousHTTPClient(transport)
	default:
		creds, err := gcp.DefaultCredentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("google cloud credentials: %w", err)
		}
		if o.Client, err = gcp.NewHTTPClient(transport, gcp.CredentialsTokenSource(creds)); err != nil {
			return nil, err
		}
	}
	b, err := o.OpenBucketURL(ctx, u)
	if err != nil {
		return nil, err
	}
	// The storage client retries a failed request until its context ends;
	// three tries each, like the AWS SDK's, leave the rest to Location's
	// own bounded retry, which counts them (Stats.Retries) and gives up.
	var sc *storage.Client
	if b.As(&sc) {
		sc.SetRetry(storage.WithMaxAttempts(3))
	}
	return b, nil
}
