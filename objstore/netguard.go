package objstore

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// LoopbackOnlyEnv, set to 1, makes every connection the drivers open
// refuse any address that is not loopback.
const LoopbackOnlyEnv = "HEADTUNE_NET_LOOPBACK_ONLY"

func loopbackOnly() bool { return os.Getenv(LoopbackOnlyEnv) == "1" }

// refuseNonLoopback is a net.Dialer Control function: it runs after name
// resolution with the address about to be dialled.
func refuseNonLoopback(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%s set: refusing to dial %s: %w", LoopbackOnlyEnv, address, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s set: refusing to dial %s (not a loopback address)", LoopbackOnlyEnv, address)
	}
	return nil
}

// LoopbackOnlyClient returns an HTTP client that can reach loopback
// addresses only, proxies ignored: tests hand it to SDKs so that a
// mistake fails instead of sending traffic.
func LoopbackOnlyClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: refuseNonLoopback}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         func(ctx context.Context, n, a string) (net.Conn, error) { return d.DialContext(ctx, n, a) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
}
