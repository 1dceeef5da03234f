package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// RetryPolicy says how often and how patiently a transient failure is
// retried: attempt k (from 1) waits a random time in [d/2, d] with
// d = min(Base * 2^(k-1), Max) before the next try.
type RetryPolicy struct {
	Attempts int           // tries in all, at least 1
	Base     time.Duration // first backoff
	Max      time.Duration // largest backoff
}

// DefaultRetry makes 8 attempts over about 15 s: enough to ride out
// throttling bursts (S3 SlowDown, GCS 429) and a restarting endpoint. The
// cloud SDKs retry on their own underneath, a few times each.
var DefaultRetry = RetryPolicy{Attempts: 8, Base: 200 * time.Millisecond, Max: 5 * time.Second}

// Stats counts what a location did; safe for concurrent use.
type Stats struct {
	Reads, Writes, Retries  atomic.Int64
	BytesRead, BytesWritten atomic.Int64
}

// ErrNotExist is matched (errors.Is) by the error of reading a key that
// does not exist.
var ErrNotExist = errors.New("object does not exist")

// ErrTooLarge is matched by ReadInto's error for an object over its limit.
var ErrTooLarge = errors.New("object is larger than the limit")

// IsNotExist reports whether err says the object is missing.
func IsNotExist(err error) bool {
	return errors.Is(err, ErrNotExist) || gcerrors.Code(err) == gcerrors.NotFound
}

// statusCodes find the HTTP status of a failed request in the error types
// of the SDKs behind build tags (each driver file adds its own).
var statusCodes []func(error) (int, bool)

// transient reports whether err is worth retrying: throttling, server
// errors, timeouts of one request, broken connections. Missing objects,
// refused permissions, failed preconditions and bad arguments are final,
// as is the caller's own cancellation.
func transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.FailedPrecondition, gcerrors.PermissionDenied,
		gcerrors.InvalidArgument, gcerrors.AlreadyExists, gcerrors.Unimplemented, gcerrors.Canceled:
		return false
	case gcerrors.ResourceExhausted, gcerrors.Internal, gcerrors.DeadlineExceeded:
		return true
	}
	code, ok := 0, false
	var hs interface{ HTTPStatusCode() int } // AWS SDK response errors
	if errors.As(err, &hs) {
		code, ok = hs.HTTPStatusCode(), true
	}
	for _, f := range statusCodes {
		if ok {
			break
		}
		code, ok = f(err)
	}
	if ok {
		if code >= 500 || code == 429 || code == 408 {
			return true
		} else if code >= 400 {
			return false
		}
	}
	var ae interface{ ErrorCode() string } // API error codes (S3 and others)
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded",
			"InternalError", "ServiceUnavailable", "TooManyRequests", "ServerBusy", "OperationTimedOut":
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// GCS and Azure report throttling and server errors in their own types;
	// their messages carry the status.
	msg := err.Error()
	for _, s := range []string{"Error 429", "Error 500", "Error 502", "Error 503", "Error 504", "RESPONSE 5", "RESPONSE 429", "connection reset"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// do runs f until it succeeds, fails for good, or the attempts run out.
func (l *Location) do(ctx context.Context, what string, f func() error) error {
	p := l.Retry
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	var err error
	for k := 1; ; k++ {
		if err = f(); err == nil || !transient(ctx, err) || k >= p.Attempts {
			break
		}
		if l.stats != nil {
			l.stats.Retries.Add(1)
		}
		d := p.Base << (k - 1)
		if d > p.Max || d <= 0 {
			d = p.Max
		}
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (after %d attempts; last error: %v)", what, ctx.Err(), k, err)
		case <-t.C:
		}
	}
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return fmt.Errorf("%s: %w", what, ErrNotExist)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ObjectInfo describes an object as a read saw it.
type ObjectInfo struct {
	Size    int64
	ModTime time.Time
}

// ReadInto reads the object rel into buf (reused when large enough) and
// returns the bytes; objects larger than max bytes are refused before they
// are read. Transient failures restart the read.
func (l *Location) ReadInto(ctx context.Context, rel string, buf []byte, max int64) ([]byte, ObjectInfo, error) {
	var info ObjectInfo
	key := l.Key(rel)
	err := l.do(ctx, "read "+l.Describe(rel), func() error {
		r, err := l.Bucket.NewReader(ctx, key, nil)
		if err != nil {
			return err
		}
		defer r.Close()
		info = ObjectInfo{Size: r.Size(), ModTime: r.ModTime()}
		if info.Size > max {
			return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, info.Size, max)
		}
		if int64(cap(buf)) < info.Size+1 {
			buf = make([]byte, info.Size+1+info.Size/4)
		}
		n, err := io.ReadFull(r, buf[:info.Size])
		buf = buf[:n]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		return nil
	})
	if err != nil {
		return buf[:0], info, err
	}
	l.stats.Reads.Add(1)
	l.stats.BytesRead.Add(int64(len(buf)))
	return buf, info, nil
}

// ReadAll reads the whole object rel (at most max bytes).
func (l *Location) ReadAll(ctx context.Context, rel string, max int64) ([]byte, error) {
	b, _, err := l.ReadInto(ctx, rel, nil, max)
	return b, err
}

// WriteAll replaces the object rel with data, atomically (readers see the
// old or the new object, never part of one).
func (l *Location) WriteAll(ctx context.Context, rel string, data []byte) error {
	err := l.do(ctx, "write "+l.Describe(rel), func() error {
		return l.Bucket.Upload(ctx, l.Key(rel), bytes.NewReader(data), &blob.WriterOptions{ContentType: contentType(rel)})
	})
	if err == nil {
		l.stats.Writes.Add(1)
		l.stats.BytesWritten.Add(int64(len(data)))
	}
	return err
}

// CreateIfAbsent writes data under rel only if no object has that key, and
// reports whether this call created it. Of several writers racing on one
// key, across processes and machines, exactly one gets true. A retry after
// a lost response that finds the object with exactly data in it counts as
// created.
func (l *Location) CreateIfAbsent(ctx context.Context, rel string, data []byte) (bool, error) {
	var created bool
	err := l.do(ctx, "create "+l.Describe(rel), func() error {
		if l.dir != "" {
			var err error
			created, err = l.createLocal(l.Key(rel), data)
			return err
		}
		err := l.Bucket.Upload(ctx, l.Key(rel), bytes.NewReader(data), &blob.WriterOptions{IfNotExist: true, ContentType: contentType(rel)})
		if gcerrors.Code(err) == gcerrors.FailedPrecondition {
			created = false
			return nil
		}
		created = err == nil
		return err
	})
	if err != nil {
		return false, err
	}
	if !created {
		// Was it us, with a response lost on the way back?
		have, rerr := l.ReadAll(ctx, rel, int64(len(data))+1)
		if rerr == nil && bytes.Equal(have, data) {
			return true, nil
		}
		return false, nil
	}
	l.stats.Writes.Add(1)
	l.stats.BytesWritten.Add(int64(len(data)))
	return true, nil
}

// Delete removes the object rel; a missing object is not an error.
func (l *Location) Delete(ctx context.Context, rel string) error {
	err := l.do(ctx, "delete "+l.Describe(rel), func() error {
		err := l.Bucket.Delete(ctx, l.Key(rel))
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil
		}
		return err
	})
	return err
}

// Exists reports whether the object rel exists.
func (l *Location) Exists(ctx context.Context, rel string) (bool, error) {
	var ok bool
	err := l.do(ctx, "stat "+l.Describe(rel), func() error {
		var err error
		ok, err = l.Bucket.Exists(ctx, l.Key(rel))
		return err
	})
	return ok, err
}

// Object is one listed object: its key relative to the location, size,
// modification time and MD5 (nil when the store does not report one).
type Object struct {
	Rel     string
	Size    int64
	ModTime time.Time
	MD5     []byte
}

// Walk lists every object below the location (recursively) in key order,
// one page at a time (memory is bounded by the page, not the listing), and
// calls fn for each. A failed page is retried.
func (l *Location) Walk(ctx context.Context, sub string, fn func(Object) error) error {
	return l.list(ctx, sub, "", func(o *blob.ListObject) error {
		if o.IsDir {
			return nil
		}
		return fn(Object{Rel: o.Key[len(l.Prefix):], Size: o.Size, ModTime: o.ModTime, MD5: o.MD5})
	})
}

// Dirs lists the immediate "folders" below sub (keys up to the next "/"),
// without the trailing slash, sorted.
func (l *Location) Dirs(ctx context.Context, sub string) (dirs []string, files int, err error) {
	prefix := l.Prefix + sub
	err = l.list(ctx, sub, "/", func(o *blob.ListObject) error {
		name := o.Key[len(prefix):]
		if o.IsDir {
			dirs = append(dirs, name[:len(name)-1])
		} else {
			files++
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return dirs, files, nil
}

// list calls fn for every entry below sub in key order (with delimiter
// set, "folders" come as IsDir entries), fetching one page at a time so
// that memory is bounded by the page; a failed page is retried.
func (l *Location) list(ctx context.Context, sub, delimiter string, fn func(*blob.ListObject) error) error {
	prefix := l.Prefix + sub
	var token []byte = blob.FirstPageToken
	for {
		var page []*blob.ListObject
		var next []byte
		err := l.do(ctx, "list "+l.Describe(sub), func() error {
			var err error
			page, next, err = l.Bucket.ListPage(ctx, token, 1000, &blob.ListOptions{Prefix: prefix, Delimiter: delimiter})
			return err
		})
		if err != nil {
			return err
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(next) == 0 {
			return nil
		}
		token = next
	}
}

func contentType(rel string) string {
	switch {
	case strings.HasSuffix(rel, ".json"):
		return "application/json"
	case strings.HasSuffix(rel, ".csv"):
		return "text/csv"
	}
	return "application/octet-stream"
}

// ReadRange reads n bytes of the object rel starting at off (n < 0: to
// the end), and returns them with the object's full size.
func (l *Location) ReadRange(ctx context.Context, rel string, off, n int64) ([]byte, int64, error) {
	var out []byte
	var size int64
	err := l.do(ctx, "read "+l.Describe(rel), func() error {
		r, err := l.Bucket.NewRangeReader(ctx, l.Key(rel), off, n, nil)
		if err != nil {
			return err
		}
		defer r.Close()
		size = r.Size()
		out, err = io.ReadAll(r)
		return err
	})
	return out, size, err
}
