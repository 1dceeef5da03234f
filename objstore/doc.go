// Package objstore opens object storage locations by URL and reads and
// writes their objects with retries: the edge where datasets, shard plans
// and sealed cache segments leave the local disk.
//
// A location is a bucket plus a key prefix, written as a URL:
//
//	s3://bucket/prefix?region=eu-west-1          (default build)
//	gs://bucket/prefix                           (build tag gcs)
//	azblob://container/prefix                    (build tag azure)
//	file:///abs/folder, or a plain local path    (always)
//	mem://name/prefix                            (always; one process only, for tests)
//
// Query parameters are those of the gocloud.dev driver (for S3: region,
// endpoint, use_path_style, disable_https, profile, ...). Credentials come
// from each cloud's usual environment (AWS_* variables and shared config,
// GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*), never from flags.
//
// Drivers a deployment does not need stay out of the binary: S3 is in the
// default build and can be left out with the build tag nos3; Google Cloud
// Storage and Azure Blob Storage are added with the tags gcs and azure.
// Opening a URL whose driver is not built in fails with a message naming
// the tag.
//
// Reads and writes retry transient failures (throttling, 5xx, timeouts,
// connection resets) with exponential backoff and jitter (RetryPolicy);
// missing objects and failed preconditions are not retried. A write is
// atomic: the object appears whole or not at all. CreateIfAbsent writes an
// object only if no object has the key, atomically across processes and
// machines (S3 If-None-Match, GCS generation 0, Azure If-None-Match, a hard
// link on a file system), so exactly one of several racing writers wins.
//
// With HEADTUNE_NET_LOOPBACK_ONLY=1 every connection the drivers open
// must go to a loopback address; anything else fails instead of sending
// traffic (tests and air-gapped runs set it). In that mode the GCS driver
// needs STORAGE_EMULATOR_HOST and the Azure driver a key, SAS token or
// connection string: looking up default credentials could ask a cloud
// metadata service, so it is refused.
//
// Every driver is tested against a fake on 127.0.0.1 (objstoretest): S3
// with gofakes3, GCS with fake-gcs-server (-tags gcs), Azure with Azurite
// (-tags azure; scripts/setup-azurite.sh installs it).
package objstore
