package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache"
	"github.com/headtune/headtune/internal/testasset"
)

// headtuneBin is the binary TestMain builds; ortLib the ONNX Runtime library
// handed to it ("" when none was found: tests that run a model skip).
var (
	headtuneBin string
	ortLib      string
	buildErr    error
)

// buildTags are the build tags the headtune binary is built with: the
// tests of a driver behind a tag (gcs_test.go, azure_test.go) add it.
var buildTags []string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "headtune-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	headtuneBin = filepath.Join(tmp, "headtune")
	args := []string{"build", "-o", headtuneBin}
	if len(buildTags) > 0 {
		args = append(args, "-tags", strings.Join(buildTags, ","))
	}
	build := exec.Command("go", append(args, "../cmd/headtune")...)
	if out, err := build.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/headtune: %v\n%s", err, out)
	}
	ortLib = findORT()
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// findORT looks where the binary would: the environment, then the
// repository's .deps folder.
func findORT() string {
	for _, p := range []string{os.Getenv("HEADTUNE_ORT_LIB"), os.Getenv("ONNXRUNTIME_SHARED_LIBRARY_PATH"), "../.deps/onnxruntime/libonnxruntime.so.1"} {
		if p == "" {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs
			}
		}
	}
	return ""
}

// needBinary skips (ORT missing) or fails (build broken) before a test that
// runs headtune on a model.
func needBinary(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if ortLib == "" {
		testasset.Skip(t, "ONNX Runtime library not found (run `make setup` or set HEADTUNE_ORT_LIB)")
	}
}

// cli runs headtune in a private home, cache and working folder.
type cli struct {
	t     testing.TB
	dir   string // working folder of the child
	home  string
	cache string
	env   []string // extra KEY=VALUE
}

func newCLI(t testing.TB) *cli {
	t.Helper()
	needBinary(t)
	dir := t.TempDir()
	c := &cli{t: t, dir: dir, home: filepath.Join(dir, "home"), cache: filepath.Join(dir, "cache")}
	return c
}

// result is one finished headtune process.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int
	// maxRSSKiB is the child's ru_maxrss. Linux starts it at the parent's
	// peak resident size when Go execs the child (vfork-style clone shares the
	// parent's memory until exec), so it overstates small children of a
	// large test process; runWatched's VmHWM samples do not.
	maxRSSKiB int64
	wall      time.Duration
}

func (r *result) String() string {
	return fmt.Sprintf("headtune %s: exit %d\nstderr: %s", strings.Join(r.args, " "), r.code, r.stderr)
}

func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	// One ORT thread: the machine is shared and the tests compare results,
	// not speed.
	full := append([]string{"--threads", "1"}, args...)
	cmd := exec.CommandContext(ctx, headtuneBin, full...)
	cmd.Dir = c.dir
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HEADTUNE_") || strings.HasPrefix(kv, "ONNXRUNTIME_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HEADTUNE_HOME="+c.home, "HEADTUNE_CACHE="+c.cache, "HEADTUNE_ORT_LIB="+ortLib)
	cmd.Env = append(env, c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs headtune to completion (2 minutes at most).
func (c *cli) run(args ...string) *result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := &result{args: args, stdout: so.String(), stderr: se.String(), wall: time.Since(start)}
	if ctx.Err() != nil {
		c.t.Fatalf("headtune %s: still running after 2 minutes\nstderr: %s", strings.Join(args, " "), se.String())
	}
	if cmd.ProcessState == nil {
		c.t.Fatalf("headtune %s: %v", strings.Join(args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	r.maxRSSKiB = maxRSS(cmd.ProcessState)
	return r
}

// ok runs headtune and fails the test unless it exits 0.
func (c *cli) ok(args ...string) *result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("%v", r)
	}
	return r
}

func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}

// extractSummary is the part of `extract --json` the tests read.
type extractSummary struct {
	Images   int    `json:"images"`
	Computed int    `json:"computed"`
	Reused   int    `json:"reused"`
	Skipped  int    `json:"skipped"`
	CacheDir string `json:"cache_dir"`
	View     string `json:"view"`
	Dim      int    `json:"feature_dim"`
	Skips    []struct {
		Path   string `json:"path"`
		Reason string `json:"reason"`
	} `json:"skips"`
}

func parseExtract(t testing.TB, r *result) extractSummary {
	t.Helper()
	var s extractSummary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("extract --json output is not JSON (%v): %q\n%v", err, r.stdout, r)
	}
	return s
}

// cachedFeatures reads every row a view lists: path -> features.
func cachedFeatures(t testing.TB, view string) (map[string][]float32, []featcache.ViewEntry) {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(view))
	entries, err := featcache.ReadView(dir, strings.TrimSuffix(filepath.Base(view), ".csv"))
	if err != nil {
		t.Fatalf("read view %s: %v", view, err)
	}
	r, err := featcache.OpenDir(dir)
	if err != nil {
		t.Fatalf("open cache %s: %v", dir, err)
	}
	defer r.Close()
	out := make(map[string][]float32, len(entries))
	for _, e := range entries {
		v := make([]float32, r.Dim())
		ok, err := r.Get(e.Key, v)
		if err != nil || !ok {
			t.Fatalf("cache %s: row of %s (view %s): ok=%v err=%v", dir, e.Path, view, ok, err)
		}
		out[e.Path] = v
	}
	return out, entries
}

// maxAbsDiff returns the largest |a-b| and whether the two are bit for bit
// equal; a length mismatch counts as +Inf.
func maxAbsDiff(a, b []float32) (float64, bool) {
	if len(a) != len(b) {
		return math.Inf(1), false
	}
	d, same := 0.0, true
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			same = false
		}
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d, same
}

// oneLineError checks that a failed command printed exactly one line on
// stderr, starting "headtune: ", containing every want substring.
func oneLineError(t testing.TB, r *result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("headtune %s: exit 0, want an error", strings.Join(r.args, " "))
		return
	}
	msg := strings.TrimRight(r.stderr, "\n")
	if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "headtune: ") {
		t.Errorf("headtune %s: stderr is not one line starting \"headtune: \":\n%s", strings.Join(r.args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("headtune %s: error %q does not mention %q", strings.Join(r.args, " "), msg, w)
		}
	}
}

// errorLine checks that a failed command's last stderr line starts
// "headtune: " and contains every want substring, and that it is the only
// such line (progress lines before it are allowed).
func errorLine(t testing.TB, r *result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("headtune %s: exit 0, want an error", strings.Join(r.args, " "))
		return
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "headtune: ") || strings.Count(r.stderr, "headtune: ") != 1 {
		t.Errorf("headtune %s: stderr does not end with one \"headtune: \" line:\n%s", strings.Join(r.args, " "), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("headtune %s: error %q does not mention %q", strings.Join(r.args, " "), last, w)
		}
	}
}

// listFiles returns every regular file under root, relative, sorted.
func listFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// snapshot maps each file under root to its content (for "left intact").
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range listFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatalf("snapshot %s: %v", root, err)
		}
		out[f] = string(data)
	}
	return out
}

// writeDataset wraps WriteDataset for tests.
func writeDataset(t testing.TB, root string, opt DatasetOptions) []string {
	t.Helper()
	paths, err := WriteDataset(root, opt)
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// writeModel writes a generated backbone into dir and returns its path.
func writeModel(t testing.TB, dir, kind string, size int) string {
	t.Helper()
	p := filepath.Join(dir, kind+".onnx")
	if err := WriteBackbone(p, kind, size); err != nil {
		t.Fatal(err)
	}
	return p
}
