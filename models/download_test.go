package models

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDownloadVerifiesAndRenames(t *testing.T) {
	content := fixtureModel(t, 4096)
	fs := newFileServer(t, content)
	dir := t.TempDir()
	dst := filepath.Join(dir, "m.onnx")

	var mu sync.Mutex
	var calls []int64
	err := testDownloader(0).Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), func(done, total int64) {
		mu.Lock()
		calls = append(calls, done)
		mu.Unlock()
		if total != int64(len(content)) {
			t.Errorf("progress total %d, want %d", total, len(content))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes differ from the %d served", len(got), len(content))
	}
	noLeftovers(t, dir)
	if len(calls) < 2 || calls[len(calls)-1] != int64(len(content)) {
		t.Fatalf("progress calls %v do not end at %d", calls, len(content))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] < calls[i-1] {
			t.Fatalf("progress went backwards: %v", calls)
		}
	}
}

func TestDownloadRejectsWrongContent(t *testing.T) {
	content := fixtureModel(t, 4096)
	corrupt := append([]byte(nil), content...)
	corrupt[len(corrupt)/2] ^= 0xff
	tests := []struct {
		name     string
		served   []byte
		wantSize int64
		wantSHA  string
		wantMsg  string
	}{
		{"flipped byte", corrupt, int64(len(content)), sha(content), "SHA-256 mismatch"},
		{"shorter file", content[:len(content)-10], int64(len(content)), sha(content), "size mismatch"},
		{"longer file", append(append([]byte(nil), content...), 1, 2, 3), int64(len(content)), sha(content), "size mismatch"},
		{"hash only", corrupt, 0, sha(content), "SHA-256 mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFileServer(t, tc.served)
			dir := t.TempDir()
			dst := filepath.Join(dir, "m.onnx")
			err := testDownloader(2).Download(context.Background(), fs.url(), dst, tc.wantSize, tc.wantSHA, nil)
			var ce *ChecksumError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ChecksumError", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			if tc.wantMsg == "SHA-256 mismatch" && (!strings.Contains(err.Error(), tc.wantSHA) || !strings.Contains(err.Error(), sha(tc.served))) {
				t.Errorf("error %q does not name expected and actual hashes", err)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("destination exists after a failed verification")
			}
			noLeftovers(t, dir)
			if n := len(fs.recorded()); n != 1 {
				t.Errorf("checksum failure was retried: %d requests", n)
			}
		})
	}
}

func TestDownloadResumesAfterInterruption(t *testing.T) {
	content := fixtureModel(t, 8192)
	fs := newFileServer(t, content)
	cut := len(content) / 3
	fs.cutAfter, fs.cutCount = cut, 1
	dir := t.TempDir()
	dst := filepath.Join(dir, "m.onnx")
	d := testDownloader(0)

	err := d.Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil)
	if err == nil {
		t.Fatal("interrupted download reported success")
	}
	st, serr := os.Stat(dst + PartialSuffix)
	if serr != nil {
		t.Fatalf("partial file not kept: %v", serr)
	}
	if st.Size() == 0 || st.Size() >= int64(len(content)) {
		t.Fatalf("partial file has %d bytes, want between 0 and %d", st.Size(), len(content))
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("destination exists after an interrupted download")
	}

	if err := d.Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, content) {
		t.Fatal("resumed download differs from the served file")
	}
	reqs := fs.recorded()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	wantRange := "bytes=" + strconv.FormatInt(st.Size(), 10) + "-"
	if reqs[1].Range != wantRange {
		t.Errorf("second request Range %q, want %q", reqs[1].Range, wantRange)
	}
	if reqs[1].IfRange != fs.etag {
		t.Errorf("second request If-Range %q, want the ETag %q", reqs[1].IfRange, fs.etag)
	}
	noLeftovers(t, dir)
}

func TestDownloadRetriesResumeInOneCall(t *testing.T) {
	content := fixtureModel(t, 8192)
	fs := newFileServer(t, content)
	fs.cutAfter, fs.cutCount = len(content)/4, 2 // two interruptions
	dst := filepath.Join(t.TempDir(), "m.onnx")
	if err := testDownloader(3).Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, content) {
		t.Fatal("download differs from the served file")
	}
	reqs := fs.recorded()
	if len(reqs) != 3 || reqs[1].Range == "" || reqs[2].Range == "" || reqs[1].Range == reqs[2].Range {
		t.Fatalf("requests %+v: want 3 with two different resume ranges", reqs)
	}
}

func TestDownloadRestartsWhenRangeIgnoredOrFileChanged(t *testing.T) {
	content := fixtureModel(t, 4096)
	other := fixtureModel(t, 4000)
	tests := []struct {
		name    string
		partial []byte // left by an earlier run
		setup   func(fs *fileServer)
		want    []byte
	}{
		{"server ignores Range", content[:1000], func(fs *fileServer) { fs.ignoreRange = true }, content},
		{"file changed on the server", other[:1000], func(fs *fileServer) {}, content},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFileServer(t, tc.want)
			tc.setup(fs)
			dir := t.TempDir()
			dst := filepath.Join(dir, "m.onnx")
			os.WriteFile(dst+PartialSuffix, tc.partial, 0o644)
			// The validator of the version the partial came from.
			os.WriteFile(dst+validatorSuffix, []byte(`"`+sha(other)[:16]+`"`), 0o644)
			if tc.name == "server ignores Range" {
				os.WriteFile(dst+validatorSuffix, []byte(fs.etag), 0o644)
			}
			if err := testDownloader(0).Download(context.Background(), fs.url(), dst, int64(len(tc.want)), sha(tc.want), nil); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dst)
			if !bytes.Equal(got, tc.want) {
				t.Fatal("download differs from the served file")
			}
			if r := fs.recorded(); len(r) != 1 || r[0].Range != "bytes=1000-" {
				t.Fatalf("requests %+v: want one resume attempt from byte 1000", r)
			}
			noLeftovers(t, dir)
		})
	}
}

func TestDownloadDamagedPartialIsCaught(t *testing.T) {
	content := fixtureModel(t, 4096)
	fs := newFileServer(t, content)
	dir := t.TempDir()
	dst := filepath.Join(dir, "m.onnx")
	bad := append([]byte(nil), content[:2000]...)
	bad[10] ^= 1
	os.WriteFile(dst+PartialSuffix, bad, 0o644)
	os.WriteFile(dst+validatorSuffix, []byte(fs.etag), 0o644)

	err := testDownloader(0).Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil)
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ChecksumError for a damaged partial file", err)
	}
	noLeftovers(t, dir)
	// The next attempt starts from zero and succeeds.
	if err := testDownloader(0).Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil); err != nil {
		t.Fatal(err)
	}
	if r := fs.recorded(); r[len(r)-1].Range != "" {
		t.Errorf("retry after a checksum error resumed (%q) instead of restarting", r[len(r)-1].Range)
	}
}

func TestDownloadCompletePartialNeedsNoRequest(t *testing.T) {
	content := fixtureModel(t, 1024)
	fs := newFileServer(t, content)
	dst := filepath.Join(t.TempDir(), "m.onnx")
	os.WriteFile(dst+PartialSuffix, content, 0o644)
	if err := testDownloader(0).Download(context.Background(), fs.url(), dst, int64(len(content)), sha(content), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(fs.recorded()); n != 0 {
		t.Fatalf("%d requests for a file already complete", n)
	}
}

func TestDownloadCancelAndStall(t *testing.T) {
	content := fixtureModel(t, 8192)
	tests := []struct {
		name    string
		stall   time.Duration
		cancel  bool
		wantErr string
	}{
		{"context cancelled", 10 * time.Second, true, "context canceled"},
		{"server stalls", 150 * time.Millisecond, false, "no data for"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFileServer(t, content)
			fs.stallAfter = len(content) / 2
			dir := t.TempDir()
			dst := filepath.Join(dir, "m.onnx")
			d := testDownloader(0)
			d.StallTimeout = tc.stall
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			progress := func(done, total int64) {
				if tc.cancel && done >= int64(fs.stallAfter) {
					once.Do(func() { time.AfterFunc(20*time.Millisecond, cancel) })
				}
			}
			start := time.Now()
			err := d.Download(ctx, fs.url(), dst, int64(len(content)), sha(content), progress)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.cancel && !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s to give up", time.Since(start))
			}
			st, serr := os.Stat(dst + PartialSuffix)
			if serr != nil || st.Size() != int64(fs.stallAfter) {
				t.Errorf("partial file %v, %v: want %d bytes kept for resume", st, serr, fs.stallAfter)
			}
		})
	}
}

func TestDownloadHTTPErrors(t *testing.T) {
	tests := []struct {
		status       int
		wantRequests int
	}{
		{http.StatusNotFound, 1},
		{http.StatusForbidden, 1},
		{http.StatusServiceUnavailable, 3}, // retried twice
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			fs := newFileServer(t, []byte("x"))
			fs.status = tc.status
			dst := filepath.Join(t.TempDir(), "m.onnx")
			err := testDownloader(2).Download(context.Background(), fs.url(), dst, 1, sha([]byte("x")), nil)
			var he *HTTPError
			if !errors.As(err, &he) || he.StatusCode != tc.status {
				t.Fatalf("got %v, want HTTPError %d", err, tc.status)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tc.status)) || !strings.Contains(err.Error(), fs.url()) {
				t.Errorf("error %q does not name the status and URL", err)
			}
			if n := len(fs.recorded()); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
		})
	}
}

func TestDownloadArgumentChecks(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "m.onnx")
	for _, tc := range []struct {
		size int64
		sha  string
	}{{10, "abc"}, {10, strings.Repeat("g", 64)}, {-1, ""}} {
		if err := Download(context.Background(), "http://127.0.0.1:1/x", dst, tc.size, tc.sha, nil); err == nil {
			t.Errorf("size %d sha %q accepted", tc.size, tc.sha)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes  5-9/10", 5, 10, true},
		{"bytes -5/10", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"bytes x-2/3", 0, 0, false},
		{"bytes 1-2/-3", 0, 0, false},
	}
	for _, tc := range tests {
		s, n, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (s != tc.start || n != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, s, n, ok, tc.start, tc.total, tc.ok)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes 1-2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start < 0 || total < -1 {
			t.Fatalf("%q parsed to start %d total %d", s, start, total)
		}
	})
}

// BenchmarkDownload measures a verified download from a local server
// against the baseline of copying the same response body to a file with
// io.Copy (no hashing, no resume bookkeeping).
func BenchmarkDownload(b *testing.B) {
	content := bytes.Repeat(fixtureModel(b, 4096), 64) // about 6 MB
	fs := newFileServer(b, content)
	dir := b.TempDir()
	b.Run("baseline-io.Copy", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		for i := 0; i < b.N; i++ {
			resp, err := http.Get(fs.url())
			if err != nil {
				b.Fatal(err)
			}
			f, _ := os.Create(filepath.Join(dir, "baseline"))
			io.Copy(f, resp.Body)
			resp.Body.Close()
			f.Close()
		}
	})
	b.Run("Download", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		d := testDownloader(0)
		want := sha(content)
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(dir, "m.onnx")
			if err := d.Download(context.Background(), fs.url(), dst, int64(len(content)), want, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
