//go:build azure

package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
)

// The Azure Blob Storage driver (build tag azure) takes the account from
// AZURE_STORAGE_ACCOUNT and credentials from, in this order,
// AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN,
// AZURE_STORAGE_CONNECTION_STRING, or else Azure's default credential
// chain (environment, workload identity, managed identity, Azure CLI).
// AZURE_STORAGE_IS_LOCAL_EMULATOR, AZURE_STORAGE_PROTOCOL and
// AZURE_STORAGE_DOMAIN (or the URL parameters localemu, protocol, domain)
// point it at an emulator such as Azurite.
func init() {
	register("azblob", func(ctx context.Context, u *url.URL, _ bool) (*blob.Bucket, error) {
		o := &azureblob.URLOpener{MakeClient: azureClient, ServiceURLOptions: *azureblob.NewDefaultServiceURLOptions()}
		return o.OpenBucketURL(ctx, u)
	})
	statusCodes = append(statusCodes, func(err error) (int, bool) {
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			return re.StatusCode, true
		}
		return 0, false
	})
}

// azureClient is gocloud's default client maker with two changes: the
// loopback guard applies to every request, and the SDK's own retry makes
// three tries (like the AWS SDK's), leaving the rest to Location's retry.
func azureClient(svcURL azureblob.ServiceURL, name azureblob.ContainerName) (*container.Client, error) {
	opts := &container.ClientOptions{}
	opts.Retry = policy.RetryOptions{MaxRetries: 2}
	if loopbackOnly() {
		opts.Transport = LoopbackOnlyClient()
	}
	containerURL, err := url.JoinPath(string(svcURL), string(name))
	if err != nil {
		return nil, err
	}
	account, key := os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY")
	conn := os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
	if conn == "" {
		conn = os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING")
	}
	switch {
	case account != "" && key != "":
		cred, err := azblob.NewSharedKeyCredential(account, key)
		if err != nil {
			return nil, fmt.Errorf("AZURE_STORAGE_KEY: %w", err)
		}
		return container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
	case os.Getenv("AZURE_STORAGE_SAS_TOKEN") != "":
		return container.NewClientWithNoCredential(containerURL, opts) // the token is in svcURL
	case conn != "":
		return container.NewClientFromConnectionString(conn, string(name), opts)
	case loopbackOnly():
		// The default chain's managed identity probe asks the instance
		// metadata service (169.254.169.254), which is not on loopback.
		return nil, fmt.Errorf("%s is set and no AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING is: refusing Azure's default credential chain", LoopbackOnlyEnv)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("azure credentials: %w", err)
	}
	return container.NewClient(containerURL, cred, opts)
}
