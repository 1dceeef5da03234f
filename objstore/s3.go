//go:build !nos3

package objstore

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"
)

// The S3 driver is built in by default (leave it out with -tags nos3). It
// reads the same URL parameters as gocloud.dev's s3blob (region, endpoint,
// use_path_style, disable_https, profile, role, ...), and takes
// credentials from the AWS SDK's usual chain (AWS_* variables, shared
// config and credentials files, web identity, container and instance
// roles).
func init() {
	register("s3", openS3)
}

func openS3(ctx context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
	q := u.Query()
	var opts []func(*s3.Options)
	for _, key := range []string{"use_path_style", "s3ForcePathStyle"} {
		if v := q.Get(key); v != "" {
			q.Del(key)
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("invalid value for %q: %w", key, err)
			}
			opts = append(opts, func(o *s3.Options) { o.UsePathStyle = b })
		}
	}
	if v := q.Get("disable_https"); v != "" {
		q.Del("disable_https")
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %q: %w", "disable_https", err)
		}
		opts = append(opts, func(o *s3.Options) { o.EndpointOptions.DisableHTTPS = b })
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, q)
	if err != nil {
		return nil, err
	}
	if loopbackOnly() {
		cfg.HTTPClient = LoopbackOnlyClient()
	}
	client := s3.NewFromConfig(cfg, opts...)
	return s3blob.OpenBucket(ctx, client, u.Host, &s3blob.Options{RequestChecksumCalculation: cfg.RequestChecksumCalculation})
}
