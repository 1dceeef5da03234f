package objstoretest

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults counts the requests a fake server receives and injects failures
// and delays into them; every fake in this package embeds one, so tests
// of retries and of slow stores read the same for each cloud.
type Faults struct {
	// Requests counts every request the server received, by method.
	Requests sync.Map // string -> *atomic.Int64

	mu    sync.Mutex
	fault func(r *http.Request) int // status to fail with, 0 to serve
	delay func(r *http.Request) time.Duration
}

// wrap returns next behind the counters, delays and faults; writeError
// answers a failed request the way the cloud's own service would.
func (f *Faults) wrap(next http.Handler, writeError func(w http.ResponseWriter, code int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := f.Requests.LoadOrStore(r.Method, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		f.mu.Lock()
		fault, delay := f.fault, f.delay
		f.mu.Unlock()
		if delay != nil {
			if d := delay(r); d > 0 {
				time.Sleep(d)
			}
		}
		if fault != nil {
			if code := fault(r); code != 0 {
				writeError(w, code)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// SetFault installs fn, asked for every request: a non-zero status fails
// the request with that status (503 as the cloud's throttling or
// unavailable error, 500 as an internal error). nil removes it.
func (f *Faults) SetFault(fn func(r *http.Request) int) {
	f.mu.Lock()
	f.fault = fn
	f.mu.Unlock()
}

// SetDelay installs fn, asked for every request: the server waits that
// long before answering (a slow store, so that tests can act mid-run).
func (f *Faults) SetDelay(fn func(r *http.Request) time.Duration) {
	f.mu.Lock()
	f.delay = fn
	f.mu.Unlock()
}

// FailFirst makes the first n requests for each object key whose path
// contains substr fail with status code; it returns a counter of the
// failures served. A read that the client splits into several requests
// (metadata, then data) has each of them failed n times.
func (f *Faults) FailFirst(substr string, n int, code int) *atomic.Int64 {
	var mu sync.Mutex
	seen := map[string]int{}
	served := new(atomic.Int64)
	f.SetFault(func(r *http.Request) int {
		if !strings.Contains(r.URL.Path, substr) {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		key := r.Method + " " + r.URL.Path
		if seen[key] < n {
			seen[key]++
			served.Add(1)
			return code
		}
		return 0
	})
	return served
}

// Count returns the number of requests with method received so far.
func (f *Faults) Count(method string) int64 {
	c, ok := f.Requests.Load(method)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}
