package objstore

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"gocloud.dev/blob"
)

// Location is a bucket and a key prefix inside it: where a dataset, a
// shard plan or a segment folder lives. Keys handed to its methods are
// relative to Prefix. A Location is safe for concurrent use.
type Location struct {
	// Bucket is the opened bucket; keys are Prefix + relative key.
	Bucket *blob.Bucket
	// Prefix is "" or ends in "/".
	Prefix string
	// Retry governs every read and write made through the Location.
	Retry RetryPolicy

	base  string // scheme://bucket/ (no query: it may hold an endpoint, never credentials)
	dir   string // for file locations, the folder the bucket maps to
	owned *sync.Once
	stats *Stats
}

// opener opens the bucket a URL names; the prefix is taken from the URL
// path by Open for every scheme but file.
type opener func(ctx context.Context, u *url.URL, create bool) (*blob.Bucket, error)

var (
	openers  = map[string]opener{}
	missing  = map[string]string{} // scheme -> how to build it in
	schemeMu sync.Mutex
)

// register adds a driver; called from the init of each driver file.
func register(scheme string, o opener) {
	schemeMu.Lock()
	defer schemeMu.Unlock()
	openers[scheme] = o
	delete(missing, scheme)
}

func init() {
	missing["s3"] = "build without -tags nos3"
	missing["gs"] = "build with -tags gcs"
	missing["azblob"] = "build with -tags azure"
}

// Schemes lists the URL schemes this build can open, sorted.
func Schemes() []string {
	schemeMu.Lock()
	defer schemeMu.Unlock()
	out := []string{"file"}
	for s := range openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// IsURL reports whether s names an object storage location (scheme://...)
// rather than a local path.
func IsURL(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	for _, r := range s[:i] {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Open opens the location raw names for reading: a URL (s3://bucket/prefix,
// file:///folder, ...) or a local folder path. The URL path after the
// bucket is the key prefix.
func Open(ctx context.Context, raw string) (*Location, error) { return open(ctx, raw, false) }

// Create is Open for a location that will be written: a local folder is
// created if missing. Buckets themselves are never created.
func Create(ctx context.Context, raw string) (*Location, error) { return open(ctx, raw, true) }

func open(ctx context.Context, raw string, create bool) (*Location, error) {
	if !IsURL(raw) {
		return openDir(raw, create)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("location %q: %w", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "file" {
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("location %s: file URLs name a local folder (file:///abs/path), not host %q", raw, u.Host)
		}
		if len(u.Query()) > 0 {
			return nil, fmt.Errorf("location %s: file URLs take no query parameters", raw)
		}
		return openDir(u.Path, create)
	}
	schemeMu.Lock()
	o, ok := openers[scheme]
	tag, known := missing[scheme]
	schemeMu.Unlock()
	if !ok {
		if known {
			return nil, fmt.Errorf("location %s: %s:// support is not in this build of headtune (%s)", redact(u), scheme, tag)
		}
		return nil, fmt.Errorf("location %s: unknown scheme %q (this build opens %s)", redact(u), scheme, strings.Join(Schemes(), ", "))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("location %s: no bucket name", redact(u))
	}
	b, err := o(ctx, u, create)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", redact(u), err)
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	l := &Location{
		Bucket: b, Prefix: prefix, Retry: DefaultRetry,
		base: scheme + "://" + u.Host + "/", owned: new(sync.Once), stats: new(Stats),
	}
	if scheme == "mem" {
		l.owned = nil // shared by every Open of the name for the life of the process
	}
	return l, nil
}

// redact drops the query (it may name an endpoint or a profile; never
// print more of a URL than the user needs to recognise it).
func redact(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	v.User = nil
	return v.String()
}

// Sub returns the location rel (a folder below l) sharing l's bucket.
// Closing it does nothing; close l.
func (l *Location) Sub(rel string) *Location {
	rel = strings.Trim(rel, "/")
	s := *l
	s.owned = nil
	if rel != "" {
		s.Prefix = l.Prefix + rel + "/"
	}
	return &s
}

// Key returns the bucket key of rel.
func (l *Location) Key(rel string) string { return l.Prefix + rel }

// Describe returns a URL-like name of rel for messages: scheme://bucket/key
// or the local file path.
func (l *Location) Describe(rel string) string {
	if l.dir != "" {
		return filepath.Join(l.dir, filepath.FromSlash(l.Prefix+rel))
	}
	return l.base + l.Prefix + rel
}

// String names the location itself (see Describe).
func (l *Location) String() string {
	if l.dir != "" {
		return filepath.Join(l.dir, filepath.FromSlash(l.Prefix))
	}
	return l.base + l.Prefix
}

// LocalDir returns the local folder of a file location, and "" for a
// bucket.
func (l *Location) LocalDir() string {
	if l.dir == "" {
		return ""
	}
	return filepath.Join(l.dir, filepath.FromSlash(l.Prefix))
}

// Stats returns the counters of the location (shared by its Sub locations).
func (l *Location) Stats() *Stats { return l.stats }

// Close closes the bucket of a location returned by Open or Create.
func (l *Location) Close() error {
	if l == nil || l.owned == nil {
		return nil
	}
	var err error
	l.owned.Do(func() { err = l.Bucket.Close() })
	return err
}
