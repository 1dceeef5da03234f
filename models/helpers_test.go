package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headtune/headtune/backbone"
)

// fixtureModel builds a small valid ONNX model: image [N,3,16,16] -> 1x1
// conv to `channels` -> global average pool -> flatten ("features",
// [N,channels]) -> Gemm to 5 classes ("logits"). Weights are random but
// deterministic, so the file is a few hundred KB and has many chunks.
func fixtureModel(t testing.TB, channels int) []byte {
	t.Helper()
	r := rand.New(rand.NewSource(int64(channels)))
	w := make([]float32, channels*3)
	for i := range w {
		w[i] = r.Float32() - 0.5
	}
	fc := make([]float32, 5*channels)
	for i := range fc {
		fc[i] = r.Float32() - 0.5
	}
	b := backbone.NewBuilder("fixture")
	x := b.Input("image", -1, 3, 16, 16)
	cw := b.Initializer("conv_w", []int64{int64(channels), 3, 1, 1}, w)
	c := b.Op("Conv", "conv", []string{x, cw})
	p := b.Op("GlobalAveragePool", "pool", []string{c})
	b.Node("Flatten", []string{p}, []string{"features"}, backbone.AttrInt("axis", 1))
	fw := b.Initializer("fc_w", []int64{5, int64(channels)}, fc)
	b.Node("Gemm", []string{"features", fw}, []string{"logits"}, backbone.AttrInt("transB", 1))
	b.Output("features", -1, int64(channels))
	b.Output("logits", -1, 5)
	data, err := backbone.MarshalModel(b.Model(0))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileServer serves one file at /model.onnx with configurable misbehaviour
// and records the Range and If-Range headers of every request.
type fileServer struct {
	*httptest.Server

	mu       sync.Mutex
	content  []byte
	etag     string
	requests []recordedRequest

	// cutAfter > 0: the next cutCount responses stop after this many body
	// bytes and the connection is closed.
	cutAfter int
	cutCount int
	// ignoreRange answers every request with 200 and the full body.
	ignoreRange bool
	// stallAfter > 0: responses stop after this many bytes and hang until
	// the client goes away.
	stallAfter int
	// status != 0 answers with that status and no body.
	status int
}

type recordedRequest struct {
	Range, IfRange string
}

func newFileServer(t testing.TB, content []byte) *fileServer {
	fs := &fileServer{content: content, etag: `"` + sha(content)[:16] + `"`}
	fs.Server = httptest.NewServer(http.HandlerFunc(fs.serve))
	if !strings.HasPrefix(fs.URL, "http://127.0.0.1:") {
		t.Fatalf("test server is not on 127.0.0.1: %s", fs.URL)
	}
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) url() string { return fs.URL + "/model.onnx" }

func (fs *fileServer) setContent(b []byte) {
	fs.mu.Lock()
	fs.content = b
	fs.etag = `"` + sha(b)[:16] + `"`
	fs.mu.Unlock()
}

func (fs *fileServer) recorded() []recordedRequest {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]recordedRequest(nil), fs.requests...)
}

func (fs *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.requests = append(fs.requests, recordedRequest{Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range")})
	content, etag := fs.content, fs.etag
	cut := 0
	if fs.cutCount > 0 {
		cut = fs.cutAfter
		fs.cutCount--
	}
	ignore, stall, status := fs.ignoreRange, fs.stallAfter, fs.status
	fs.mu.Unlock()

	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("ETag", etag)
	if ignore {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusOK)
		w.Write(content)
		return
	}
	if cut == 0 && stall == 0 {
		http.ServeContent(w, r, "model.onnx", time.Time{}, bytes.NewReader(content))
		return
	}
	// Misbehaving answer: honour a simple Range, then stop early.
	start := 0
	if rg := r.Header.Get("Range"); rg != "" && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
		var n int
		if _, err := fmt.Sscanf(rg, "bytes=%d-", &n); err == nil && n < len(content) {
			start = n
		}
	}
	body := content[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if start > 0 {
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(content)-1)+"/"+strconv.Itoa(len(content)))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	limit := cut
	if stall > 0 {
		limit = stall
	}
	if limit > len(body) {
		limit = len(body)
	}
	w.Write(body[:limit])
	w.(http.Flusher).Flush()
	if stall > 0 {
		<-r.Context().Done()
		return
	}
	// Close the connection mid-body.
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// noLeftovers fails when dir holds partial downloads or temporary folders.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		n := info.Name()
		if strings.HasSuffix(n, PartialSuffix) || strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, ".old-") || strings.HasSuffix(n, validatorSuffix) {
			t.Errorf("leftover %s", p)
		}
		return nil
	})
}

// testDownloader never waits long: tests stay fast and deterministic.
func testDownloader(retries int) *Downloader {
	d := NewDownloader()
	d.Retries = retries
	d.RetryDelay = time.Millisecond
	d.StallTimeout = 5 * time.Second
	return d
}
