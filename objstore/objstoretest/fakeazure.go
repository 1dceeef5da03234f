//go:build azure

package objstoretest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/headtune/headtune/internal/testasset"
	"github.com/headtune/headtune/objstore"
)

// Azurite's well-known development account (public; it opens nothing but
// a local emulator).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// AzuriteEnv names the blob service script of an Azurite installation
// (node_modules/azurite/dist/src/blob/main.js); by default the tests look
// in .deps/azurite, where scripts/setup-azurite.sh installs it.
const AzuriteEnv = "HEADTUNE_AZURITE"

// FakeAzure is Azurite's blob service (a node process on 127.0.0.1, in
// memory, telemetry off) with one empty container, reached through a
// proxy on 127.0.0.1 whose Faults count, delay and fail requests.
type FakeAzure struct {
	Faults
	// Endpoint is the proxy, http://127.0.0.1:PORT.
	Endpoint  string
	Container string

	stop   func() // kills Azurite, removes its folder
	proxy  *httptest.Server
	direct *container.Client // Azurite itself, past the proxy
}

// AzuriteMain returns the path of Azurite's blob service script, or an
// error saying how to install it.
func AzuriteMain() (string, error) {
	p := os.Getenv(AzuriteEnv)
	if p == "" {
		root, err := testasset.RepoRoot()
		if err != nil {
			return "", err
		}
		p = filepath.Join(root, ".deps", "azurite", "node_modules", "azurite", "dist", "src", "blob", "main.js")
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("azurite not found (%v): run scripts/setup-azurite.sh, or set %s to its dist/src/blob/main.js", err, AzuriteEnv)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("node not on PATH, needed to run Azurite: %v", err)
	}
	return p, nil
}

// AzureEnv is the environment a process needs to reach the fake at
// endpoint with the development account's key: the emulator's address,
// no other credential source, loopback-only dialling.
func AzureEnv(endpoint string) []string {
	return []string{
		"AZURE_STORAGE_ACCOUNT=" + AzuriteAccount, "AZURE_STORAGE_KEY=" + AzuriteKey,
		"AZURE_STORAGE_IS_LOCAL_EMULATOR=true", "AZURE_STORAGE_PROTOCOL=http",
		"AZURE_STORAGE_DOMAIN=" + strings.TrimPrefix(endpoint, "http://"),
		"AZURE_STORAGE_SAS_TOKEN=", "AZURE_STORAGE_CONNECTION_STRING=", "AZURE_STORAGEBLOB_CONNECTIONSTRING=",
		"AZURE_STORAGE_IS_CDN=",
		objstore.LoopbackOnlyEnv + "=1",
	}
}

// StartAzure starts Azurite with one empty container and sets the test
// process's environment (AzureEnv) for the duration of t. Without Azurite
// the test skips (fails under CI=true, see internal/testasset).
func StartAzure(t testing.TB, containerName string) *FakeAzure {
	t.Helper()
	main, err := AzuriteMain()
	if err != nil {
		testasset.Skip(t, "%v", err)
	}
	f, err := StartAzureServer(main, containerName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	for _, kv := range AzureEnv(f.Endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return f
}

var listening = regexp.MustCompile(`listens on (http://127\.0\.0\.1:[0-9]+)`)

// StartAzureServer runs Azurite's blob service script main on a free
// port of 127.0.0.1 and creates the container; Close stops it.
func StartAzureServer(main, containerName string) (*FakeAzure, error) {
	work, err := os.MkdirTemp("", "headtune-azurite-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("node", main, "--blobHost", "127.0.0.1", "--blobPort", "0",
		"--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck")
	cmd.Dir = work // anything it writes stays here
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("start azurite: %w", err)
	}
	f := &FakeAzure{Container: containerName}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(work)
	}
	found := make(chan string, 1)
	var seen bytes.Buffer // Azurite's output until it listens; read after scanned is closed
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if !sent {
				seen.WriteString(sc.Text() + "\n")
				if m := listening.FindStringSubmatch(sc.Text()); m != nil {
					found <- m[1]
					sent = true
				}
			}
		}
		if !sent {
			close(found)
		}
	}()
	var direct string
	select {
	case u, ok := <-found:
		if !ok {
			stop()
			<-scanned
			return nil, fmt.Errorf("azurite exited before listening: %s%s", seen.String(), stderr.String())
		}
		direct = u
	case <-time.After(60 * time.Second):
		stop()
		<-scanned
		return nil, fmt.Errorf("azurite did not listen within 60 s: %s%s", seen.String(), stderr.String())
	}
	target, _ := url.Parse(direct)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = objstore.LoopbackOnlyClient().Transport
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return nil, err
	}
	f.proxy = &httptest.Server{Listener: ln, Config: &http.Server{Handler: f.wrap(rp, writeAzureError)}}
	f.proxy.Start()
	f.Endpoint = f.proxy.URL
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		f.proxy.Close()
		stop()
		return nil, err
	}
	f.direct, err = container.NewClientWithSharedKeyCredential(direct+"/"+AzuriteAccount+"/"+containerName, cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: objstore.LoopbackOnlyClient()}})
	if err == nil {
		_, err = f.direct.Create(context.Background(), nil)
	}
	if err != nil {
		f.proxy.Close()
		stop()
		return nil, fmt.Errorf("azurite: create container %s: %w", containerName, err)
	}
	f.stop = stop
	return f, nil
}

// Close stops the proxy and Azurite.
func (f *FakeAzure) Close() {
	f.proxy.Close()
	f.stop()
}

// URL returns the azblob:// URL of prefix in the fake container (the
// endpoint comes from AzureEnv).
func (f *FakeAzure) URL(prefix string) string {
	return "azblob://" + f.Container + "/" + strings.TrimPrefix(prefix, "/")
}

// Put stores an object in Azurite directly (past the proxy's faults).
func (f *FakeAzure) Put(key string, data []byte) error {
	_, err := f.direct.NewBlockBlobClient(key).UploadBuffer(context.Background(), data, nil)
	return err
}

// Get returns an object's bytes from Azurite directly.
func (f *FakeAzure) Get(key string) ([]byte, error) {
	r, err := f.direct.NewBlobClient(key).DownloadStream(context.Background(), nil)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	return io.ReadAll(r.Body)
}

// Delete removes an object in Azurite directly.
func (f *FakeAzure) Delete(key string) error {
	_, err := f.direct.NewBlobClient(key).Delete(context.Background(), nil)
	return err
}

// UniqueContainer returns a container name no other test uses.
func UniqueContainer() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "c" + hex.EncodeToString(b[:])
}

func writeAzureError(w http.ResponseWriter, code int) {
	azCode := "InternalError"
	switch code {
	case http.StatusServiceUnavailable:
		azCode = "ServerBusy"
	case http.StatusForbidden:
		azCode = "AuthorizationFailure"
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", azCode)
	w.WriteHeader(code)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>`+azCode+`</Code><Message>injected by the test</Message></Error>`)
}
