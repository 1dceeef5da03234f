package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// background is a headtune process the test started and did not wait for.
type background struct {
	cmd    *exec.Cmd
	so, se bytes.Buffer
	done   chan struct{}
	cancel context.CancelFunc
	began  time.Time
	wall   time.Duration // set before done closes
}

func (c *cli) start(args ...string) *background {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	b := &background{done: make(chan struct{}), cancel: cancel, began: time.Now()}
	b.cmd = c.command(ctx, args...)
	b.cmd.Stdout, b.cmd.Stderr = &b.so, &b.se
	if err := b.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { b.cmd.Wait(); b.wall = time.Since(b.began); close(b.done) }()
	c.t.Cleanup(func() { b.kill(); cancel() })
	return b
}

func (b *background) running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

func (b *background) kill() {
	if b.running() {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
}

func (b *background) wait() *result {
	<-b.done
	return &result{args: b.cmd.Args[3:], stdout: b.so.String(), stderr: b.se.String(), code: b.cmd.ProcessState.ExitCode(), maxRSSKiB: maxRSS(b.cmd.ProcessState), wall: b.wall}
}

// watched is a run sampled while it ran: peak VmRSS and open descriptors.
type watched struct {
	*result
	peakRSSKiB int64 // peak resident set: the largest VmHWM sampled from /proc (see result.maxRSSKiB for why not ru_maxrss)
	peakFDs    int   // most entries seen in /proc/PID/fd
	peakThr    int   // most OS threads seen (/proc/PID/status Threads)
	samples    int
	killedFor  string // "", "timeout" or "memory"
}

// runWatched runs headtune, sampling /proc/PID every 10 ms, and SIGKILLs
// it when its resident memory passes rssLimitKiB or it runs longer than
// timeout, so that a runaway child cannot take the machine down.
func (c *cli) runWatched(timeout time.Duration, rssLimitKiB int64, args ...string) *watched {
	c.t.Helper()
	b := c.start(args...)
	w := &watched{}
	pid := b.cmd.Process.Pid
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-b.done:
			break loop
		case <-tick.C:
		}
		if rss, hwm, thr := procStatus(pid); rss > 0 {
			w.peakThr = max(w.peakThr, thr)
			w.samples++
			w.peakRSSKiB = max(w.peakRSSKiB, hwm)
			if rss > rssLimitKiB && w.killedFor == "" {
				w.killedFor = "memory"
				b.kill()
			}
		}
		if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
			w.peakFDs = max(w.peakFDs, len(ents))
		}
		if time.Now().After(deadline) && w.killedFor == "" {
			w.killedFor = "timeout"
			b.kill()
		}
	}
	w.result = b.wait()
	if w.samples == 0 {
		w.peakRSSKiB = w.maxRSSKiB // too short to sample: an upper bound
	}
	return w
}

// procStatus reads VmRSS and VmHWM (KiB) and the thread count of a live
// process (zeros when it is gone).
func procStatus(pid int) (rssKiB, hwmKiB int64, threads int) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				hwmKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	return rssKiB, hwmKiB, threads
}

// waitForLock waits until the cache's lock file names pid (the writer has
// the lock and started work), up to 20 s.
func waitForLock(t *testing.T, cache string, b *background) {
	t.Helper()
	want := strconv.Itoa(b.cmd.Process.Pid)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		locks, _ := filepath.Glob(filepath.Join(cache, "*", "lock"))
		for _, l := range locks {
			if data, err := os.ReadFile(l); err == nil && strings.TrimSpace(string(data)) == want {
				return
			}
		}
		if !b.running() {
			t.Fatalf("extract ended before it was seen holding the lock: %v", b.wait())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("extract (pid %s) did not take the cache lock within 20 s", want)
}

// TestConcurrentExtract: two extracts on one cache are refused with a clear
// message or serialised with --wait-lock, never interleaved; the lock of a
// killed extract is recovered at once.
func TestConcurrentExtract(t *testing.T) {
	c := newCLI(t)
	ds := filepath.Join(c.dir, "ds")
	n := len(writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 300, Seed: 5}))
	model := writeModel(t, c.dir, "resnet", 224) // 224 px: runs long enough to overlap
	args := []string{"extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet", "--batch", "8", "--workers", "1"}

	t.Run("refused-then-serialised", func(t *testing.T) {
		cache := filepath.Join(c.dir, "cache-a")
		a := c.start(append(args, "--cache", cache)...)
		waitForLock(t, cache, a)
		w := c.start(append(args, "--cache", cache, "--wait-lock")...)
		b := c.run(append(args, "--cache", cache)...)
		if !a.running() {
			t.Fatalf("the first extract finished before the second was refused: the test checked nothing (make the run longer)")
		}
		oneLineError(t, b, "in use", "process "+strconv.Itoa(a.cmd.Process.Pid), cache)
		if b.stdout != "" {
			t.Errorf("refused extract wrote to stdout: %q", b.stdout)
		}
		ra := a.wait()
		if ra.code != 0 {
			t.Fatalf("first extract: %v", ra)
		}
		rw := w.wait()
		if rw.code != 0 {
			t.Fatalf("waiting extract: %v", rw)
		}
		sa, sw := parseExtract(t, ra), parseExtract(t, rw)
		if sa.Computed != n || sw.Computed != 0 || sw.Reused != n {
			t.Errorf("first computed %d, waiting one computed %d reused %d; want %d, 0, %d (the waiting run must start after the first finished)", sa.Computed, sw.Computed, sw.Reused, n, n)
		}
		if rows := c.verifiedRows(t, cache); rows != n {
			t.Errorf("cache holds %d rows for %d images", rows, n)
		}
	})

	t.Run("two-datasets-wait", func(t *testing.T) {
		// Two datasets, one backbone, one cache: both with --wait-lock.
		cache := filepath.Join(c.dir, "cache-two")
		ds2 := filepath.Join(c.dir, "ds2")
		n2 := len(writeDataset(t, ds2, DatasetOptions{Classes: 2, PerClass: 200, Seed: 55}))
		a := c.start(append(args, "--cache", cache, "--wait-lock")...)
		b := c.start("extract", ds2, "--model", model, "--preset", "imagenet", "--json", "--quiet", "--batch", "8", "--workers", "1", "--cache", cache, "--wait-lock")
		ra, rb := a.wait(), b.wait()
		if ra.code != 0 || rb.code != 0 {
			t.Fatalf("concurrent extracts with --wait-lock:\n%v\n%v", ra, rb)
		}
		sa, sb := parseExtract(t, ra), parseExtract(t, rb)
		if sa.Computed != n || sb.Computed != n2 {
			t.Errorf("computed %d and %d, want %d and %d", sa.Computed, sb.Computed, n, n2)
		}
		fa, ea := cachedFeatures(t, sa.View)
		fb, eb := cachedFeatures(t, sb.View)
		if len(ea) != n || len(eb) != n2 || len(fa) != n || len(fb) != n2 {
			t.Errorf("views list %d and %d images, want %d and %d", len(ea), len(eb), n, n2)
		}
		if rows := c.verifiedRows(t, cache); rows != n+n2 {
			t.Errorf("cache holds %d rows for %d+%d images", rows, n, n2)
		}
	})

	t.Run("stale-lock", func(t *testing.T) {
		cache := filepath.Join(c.dir, "cache-b")
		a := c.start(append(args, "--cache", cache)...)
		waitForLock(t, cache, a)
		time.Sleep(300 * time.Millisecond)
		a.kill()
		committed := c.verifiedRows(t, cache)
		// The dead writer's PID is still in the lock file; the kernel
		// dropped its flock, so a new writer gets in without waiting.
		r := c.ok(append(args, "--cache", cache)...)
		s := parseExtract(t, r)
		if s.Computed != n-committed {
			t.Errorf("after a killed writer with %d committed rows: computed %d, want %d", committed, s.Computed, n-committed)
		}
		if rows := c.verifiedRows(t, cache); rows != n {
			t.Errorf("cache holds %d rows for %d images", rows, n)
		}
	})
}
