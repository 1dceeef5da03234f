package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PartialSuffix is appended to a download's destination while it is
// incomplete or unverified. A file with this suffix is never a usable model.
const PartialSuffix = ".partial"

// validatorSuffix names the side file that remembers the server's ETag or
// Last-Modified for the partial file, so a resumed request can send If-Range
// and never splice two versions of a file together.
const validatorSuffix = ".partial.etag"

// Progress receives the number of bytes of the final file present so far and
// the expected total (-1 when unknown). It is called from the downloading
// goroutine after every chunk (at most every 256 KiB), once before the first
// chunk, and must return quickly.
type Progress func(done, total int64)

// Downloader fetches single files over HTTP(S) with resume, size and SHA-256
// verification, and an atomic final rename. The zero value is not usable;
// start from NewDownloader. A Downloader is safe for concurrent use on
// different destinations.
type Downloader struct {
	// Client does the requests. Its Timeout must be 0: large files take
	// longer than any fixed limit; StallTimeout bounds silence instead.
	Client *http.Client
	// StallTimeout aborts an attempt when no byte arrives for this long.
	StallTimeout time.Duration
	// Retries is how many more attempts follow a network failure or a 5xx
	// answer; each resumes where the previous one stopped.
	Retries int
	// RetryDelay is the pause before the first retry; it doubles each time.
	RetryDelay time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// NewDownloader returns a Downloader with production settings: 30 s to
// connect and to receive response headers, 60 s stall limit, 3 retries.
func NewDownloader() *Downloader {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		// Compression would make Range offsets refer to encoded bytes.
		DisableCompression: true,
	}
	return &Downloader{
		Client:       &http.Client{Transport: tr},
		StallTimeout: 60 * time.Second,
		Retries:      3,
		RetryDelay:   time.Second,
		UserAgent:    "headtune (+https://github.com/headtune/headtune)",
	}
}

var defaultDownloader = NewDownloader()

// Download fetches url into dst with NewDownloader's settings; see
// (*Downloader).Download.
func Download(ctx context.Context, url, dst string, wantSize int64, wantSHA256 string, progress Progress) error {
	return defaultDownloader.Download(ctx, url, dst, wantSize, wantSHA256, progress)
}

// ChecksumError reports a completed download whose size or SHA-256 differs
// from the expected one. The partial file has been deleted.
type ChecksumError struct {
	URL                   string
	WantSize, GotSize     int64  // WantSize 0: not checked
	WantSHA256, GotSHA256 string // WantSHA256 "": not checked
}

func (e *ChecksumError) Error() string {
	if e.WantSize > 0 && e.WantSize != e.GotSize {
		return fmt.Sprintf("download %s: size mismatch: expected %d bytes, got %d; the file was deleted", e.URL, e.WantSize, e.GotSize)
	}
	return fmt.Sprintf("download %s: SHA-256 mismatch: expected %s, got %s; the file was deleted", e.URL, e.WantSHA256, e.GotSHA256)
}

// HTTPError is a final HTTP status the downloader does not handle.
type HTTPError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("download %s: server answered %s", e.URL, e.Status)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// bufPool holds copy buffers: a download of hundreds of MB must not fault in
// fresh memory per chunk, and concurrent downloads each need one.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Download fetches url into dst.
//
// Bytes go to dst+".partial". When that file exists from an interrupted run,
// its content is hashed again and the request asks for the rest with
// "Range: bytes=N-" (and If-Range with the validator the server gave, so a
// changed file restarts instead of being spliced). A 206 answer is appended;
// a 200 answer (server ignores ranges, or the file changed) restarts from
// zero. When the body ends, the size is checked against wantSize (when > 0)
// and the SHA-256 against wantSHA256 (lower-case hex, when not empty); only a
// verified file is synced and renamed to dst. A mismatch deletes the partial
// file and returns a *ChecksumError naming expected and actual values. An
// interrupted transfer keeps the partial file for the next call; network
// errors and 5xx answers are retried d.Retries times. ctx cancels at any
// point, keeping the partial file. dst is replaced if it exists.
func (d *Downloader) Download(ctx context.Context, url, dst string, wantSize int64, wantSHA256 string, progress Progress) error {
	wantSHA256 = strings.ToLower(strings.TrimSpace(wantSHA256))
	if wantSHA256 != "" && !sha256Hex.MatchString(wantSHA256) {
		return fmt.Errorf("download %s: expected SHA-256 %q is not 64 hex digits", url, wantSHA256)
	}
	if wantSize < 0 {
		return fmt.Errorf("download %s: negative expected size %d", url, wantSize)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	delay := d.RetryDelay
	for attempt := 0; ; attempt++ {
		err := d.attempt(ctx, url, dst, wantSize, wantSHA256, progress)
		if err == nil || attempt >= d.Retries || !retriable(ctx, err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("download %s: %w (partial file kept for resume)", url, ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// retriable says whether another attempt may succeed: transfer and network
// failures and 5xx answers, but not checksum errors, 4xx or cancellation.
func retriable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ce *ChecksumError
	if errors.As(err, &ce) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests
	}
	var fe *fileError
	return !errors.As(err, &fe)
}

// fileError marks local file-system failures, which retrying does not fix.
type fileError struct{ err error }

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// attempt makes one HTTP request and leaves either a verified dst, a partial
// file that can be resumed, or nothing (after a checksum error).
func (d *Downloader) attempt(ctx context.Context, url, dst string, wantSize int64, wantSHA256 string, progress Progress) error {
	partial := dst + PartialSuffix
	validatorPath := dst + validatorSuffix

	// What is already here, hashed again: a hash state cannot be saved
	// portably, and re-reading also catches a partial file damaged on disk
	// only at the final comparison, never silently.
	h := sha256.New()
	have, err := hashPrefix(partial, h, wantSize)
	if err != nil {
		return &fileError{fmt.Errorf("download %s: %w", url, err)}
	}
	if wantSize > 0 && have == wantSize {
		// Complete from a previous run, interrupted before the rename.
		progress(have, wantSize)
		return finish(url, partial, dst, validatorPath, wantSize, have, wantSHA256, h)
	}

	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	if d.UserAgent != "" {
		req.Header.Set("User-Agent", d.UserAgent)
	}
	req.Header.Set("Accept-Encoding", "identity")
	validator := ""
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if b, err := os.ReadFile(validatorPath); err == nil {
			validator = strings.TrimSpace(string(b))
			// If-Range needs a strong ETag or a date; a weak ETag would
			// make the server ignore the Range.
			if validator != "" && !strings.HasPrefix(validator, "W/") {
				req.Header.Set("If-Range", validator)
			}
		}
	}

	// The stall watchdog cancels the request when no byte arrives for
	// StallTimeout; each chunk re-arms it.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stalled := false
	var mu sync.Mutex
	var timer *time.Timer
	if d.StallTimeout > 0 {
		timer = time.AfterFunc(d.StallTimeout, func() {
			mu.Lock()
			stalled = true
			mu.Unlock()
			cancel()
		})
		defer timer.Stop()
	}
	req = req.WithContext(actx)

	resp, err := d.Client.Do(req)
	if err != nil {
		return d.transferError(ctx, url, err, &mu, &stalled)
	}
	defer resp.Body.Close()

	var f *os.File
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			// A range we did not ask for: start over rather than guess.
			return d.restart(url, partial, validatorPath, fmt.Errorf("server sent range %q for a request from byte %d", resp.Header.Get("Content-Range"), have))
		}
		if wantSize > 0 && total >= 0 && total != wantSize {
			os.Remove(partial)
			os.Remove(validatorPath)
			return &ChecksumError{URL: url, WantSize: wantSize, GotSize: total}
		}
		f, err = os.OpenFile(partial, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return &fileError{fmt.Errorf("download %s: %w", url, err)}
		}
	case resp.StatusCode == http.StatusOK:
		// Full body: either a fresh start, or the server ignored the range
		// or the file changed (If-Range failed). Start from zero.
		have = 0
		h.Reset()
		f, err = os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return &fileError{fmt.Errorf("download %s: %w", url, err)}
		}
		if cl := resp.ContentLength; wantSize > 0 && cl >= 0 && cl != wantSize {
			f.Close()
			os.Remove(partial)
			os.Remove(validatorPath)
			return &ChecksumError{URL: url, WantSize: wantSize, GotSize: cl}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The partial file is not a prefix of what the server has.
		return d.restart(url, partial, validatorPath, errors.New("server refused the resume range"))
	default:
		return &HTTPError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status}
	}
	defer f.Close()

	// Remember the validator of the version we are writing.
	if v := resp.Header.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
		validator = v
	} else if v := resp.Header.Get("Last-Modified"); v != "" {
		validator = v
	} else {
		validator = ""
	}
	if validator != "" {
		if err := os.WriteFile(validatorPath, []byte(validator), 0o644); err != nil {
			return &fileError{fmt.Errorf("download %s: %w", url, err)}
		}
	} else {
		os.Remove(validatorPath)
	}

	total := int64(-1)
	if wantSize > 0 {
		total = wantSize
	} else if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	progress(have, total)

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if timer != nil {
				timer.Reset(d.StallTimeout)
			}
			if wantSize > 0 && have+int64(n) > wantSize {
				f.Close()
				os.Remove(partial)
				os.Remove(validatorPath)
				return &ChecksumError{URL: url, WantSize: wantSize, GotSize: have + int64(n)}
			}
			if _, werr := f.Write(buf[:n]); werr != nil {
				return &fileError{fmt.Errorf("download %s: write %s: %w", url, partial, werr)}
			}
			h.Write(buf[:n])
			have += int64(n)
			progress(have, total)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return d.transferError(ctx, url, rerr, &mu, &stalled, have, total)
		}
	}
	if err := f.Sync(); err != nil {
		return &fileError{fmt.Errorf("download %s: sync %s: %w", url, partial, err)}
	}
	if err := f.Close(); err != nil {
		return &fileError{fmt.Errorf("download %s: close %s: %w", url, partial, err)}
	}
	if resp.ContentLength >= 0 && total >= 0 && have < total {
		// The body ended early without a transport error.
		return fmt.Errorf("download %s: connection closed after %d of %d bytes; the partial file is kept and the next attempt resumes", url, have, total)
	}
	return finish(url, partial, dst, validatorPath, wantSize, have, wantSHA256, h)
}

// restart deletes the partial file so the next attempt starts from zero and
// reports cause as retriable.
func (d *Downloader) restart(url, partial, validatorPath string, cause error) error {
	os.Remove(partial)
	os.Remove(validatorPath)
	return fmt.Errorf("download %s: %w; starting over", url, cause)
}

// transferError words a failure during the request or the body.
func (d *Downloader) transferError(ctx context.Context, url string, err error, mu *sync.Mutex, stalled *bool, counts ...int64) error {
	mu.Lock()
	st := *stalled
	mu.Unlock()
	where := ""
	if len(counts) == 2 {
		if counts[1] >= 0 {
			where = fmt.Sprintf(" after %d of %d bytes", counts[0], counts[1])
		} else {
			where = fmt.Sprintf(" after %d bytes", counts[0])
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("download %s: %w%s (partial file kept for resume)", url, ctx.Err(), where)
	case st:
		return fmt.Errorf("download %s: no data for %s%s; the partial file is kept and the next attempt resumes", url, d.StallTimeout, where)
	default:
		return fmt.Errorf("download %s: interrupted%s: %w; the partial file is kept and the next attempt resumes", url, where, err)
	}
}

// finish checks size and hash and renames the partial file into place.
func finish(url, partial, dst, validatorPath string, wantSize, have int64, wantSHA256 string, h hash.Hash) error {
	got := hex.EncodeToString(h.Sum(nil))
	if (wantSize > 0 && have != wantSize) || (wantSHA256 != "" && got != wantSHA256) {
		os.Remove(partial)
		os.Remove(validatorPath)
		return &ChecksumError{URL: url, WantSize: wantSize, GotSize: have, WantSHA256: wantSHA256, GotSHA256: got}
	}
	if err := os.Rename(partial, dst); err != nil {
		return &fileError{fmt.Errorf("download %s: %w", url, err)}
	}
	os.Remove(validatorPath)
	syncDir(filepath.Dir(dst))
	return nil
}

// hashPrefix feeds the existing partial file into h and returns its length.
// A partial file longer than wantSize cannot be a prefix and is deleted.
func hashPrefix(partial string, h hash.Hash, wantSize int64) (int64, error) {
	f, err := os.Open(partial)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if wantSize > 0 && st.Size() > wantSize {
		f.Close()
		os.Remove(partial)
		return 0, nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(h, f, *bp)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", partial, err)
	}
	return n, nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", given
// as -1).
func parseContentRange(s string) (start, total int64, ok bool) {
	s = strings.TrimSpace(s)
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(strings.TrimSpace(tot), 10, 64)
	if err != nil || total < 0 {
		return 0, 0, false
	}
	return start, total, true
}

// syncDir makes a rename in dir durable; errors are ignored because some
// file systems do not support syncing directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
