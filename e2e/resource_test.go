package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// envLong enables the slow resource measurements (1k, 10k, 100k images).
const envLong = "HEADTUNE_LONG"

// resourceFigures is one measured run.
type resourceFigures struct {
	images    int
	cmd       string
	maxRSSMiB int64
	peakFDs   int
	peakThr   int
	wall      time.Duration
}

// measure extracts (into a fresh cache) and predicts (to a CSV) n tiny
// images with a tiny model, sampling memory, descriptors and threads.
func measure(t *testing.T, c *cli, n int) []resourceFigures {
	t.Helper()
	ds := filepath.Join(c.dir, "ds-"+strconv.Itoa(n))
	writeDataset(t, ds, DatasetOptions{Classes: 2, PerClass: n / 2, Width: 16, Height: 16, Seed: uint64(n)})
	model := filepath.Join(c.dir, "resnet.onnx")
	if _, err := os.Stat(model); err != nil {
		writeModel(t, c.dir, "resnet", 32)
	}
	cache := filepath.Join(c.dir, "cache-"+strconv.Itoa(n))
	limit := int64(4 << 20) // KiB: kill a runaway child at 4 GiB
	timeout := 30 * time.Minute
	ex := c.runWatched(timeout, limit, "extract", ds, "--model", model, "--preset", "imagenet", "--cache", cache, "--quiet", "--batch", "32")
	if ex.killedFor != "" || ex.code != 0 {
		t.Fatalf("extract %d images: killed for %q: %v", n, ex.killedFor, ex.result)
	}
	headFile := filepath.Join(c.dir, fmt.Sprintf("h-%d.head", n))
	c.ok("train", "--cache", cache, "--head", headFile, "--quiet", "--val", "0", "--test", "0")
	pr := c.runWatched(timeout, limit, "predict", "--head", headFile, ds, "--out", filepath.Join(c.dir, fmt.Sprintf("p-%d.csv", n)), "--quiet", "--batch", "32")
	if pr.killedFor != "" || pr.code != 0 {
		t.Fatalf("predict %d images: killed for %q: %v", n, pr.killedFor, pr.result)
	}
	os.RemoveAll(ds)
	var out []resourceFigures
	for _, w := range []*watched{ex, pr} {
		f := resourceFigures{images: n, cmd: w.args[0], maxRSSMiB: w.peakRSSKiB >> 10, peakFDs: w.peakFDs, peakThr: w.peakThr, wall: w.wall}
		t.Logf("%-7s %7d images: peak RSS %4d MiB, peak open fds %3d, peak threads %3d, wall %v",
			f.cmd, n, f.maxRSSMiB, f.peakFDs, f.peakThr, w.wall.Round(time.Millisecond))
		fmt.Printf("RESOURCE cmd=%s images=%d max_rss_mib=%d peak_fds=%d peak_threads=%d wall_s=%.1f\n",
			f.cmd, n, f.maxRSSMiB, f.peakFDs, f.peakThr, w.wall.Seconds())
		out = append(out, f)
	}
	return out
}

// TestResourceUse: memory, descriptors and threads of extract and predict do
// not grow with the number of images (200 vs 2,000). A memory bound, not a
// speed claim: the 2,000-image runs may take at most 64 MiB more than the
// 200-image ones, and no more descriptors (4) or threads (8) beyond a small slack.
func TestResourceUse(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: resource measurement")
	}
	c := newCLI(t)
	small, large := measure(t, c, 200), measure(t, c, 2000)
	for i := range small {
		s, l := small[i], large[i]
		if l.maxRSSMiB-s.maxRSSMiB > 64 {
			t.Errorf("%s: peak RSS %d MiB for 2000 images vs %d MiB for 200", s.cmd, l.maxRSSMiB, s.maxRSSMiB)
		}
		if l.peakFDs > s.peakFDs+4 {
			t.Errorf("%s: %d open descriptors for 2000 images vs %d for 200: a leak?", s.cmd, l.peakFDs, s.peakFDs)
		}
		// The Go runtime adds threads for blocking system calls as it
		// likes; only a steady climb would be a leak.
		if l.peakThr > s.peakThr+8 {
			t.Errorf("%s: %d threads for 2000 images vs %d for 200: a leak?", s.cmd, l.peakThr, s.peakThr)
		}
	}
}

// TestResourceUseLong measures 1k, 10k and 100k images (HEADTUNE_LONG=1;
// scripts/reliability.sh prints the figures). It fails only on growth far
// beyond what buffers explain: 128 MiB more RSS, or more descriptors or
// threads, at 100k than at 1k.
func TestResourceUseLong(t *testing.T) {
	if os.Getenv(envLong) != "1" {
		t.Skipf("set %s=1 to measure 1k/10k/100k images (minutes)", envLong)
	}
	c := newCLI(t)
	var runs [][]resourceFigures
	for _, n := range []int{1000, 10000, 100000} {
		runs = append(runs, measure(t, c, n))
	}
	first, last := runs[0], runs[len(runs)-1]
	for i := range first {
		if last[i].maxRSSMiB-first[i].maxRSSMiB > 128 {
			t.Errorf("%s: peak RSS %d MiB at 100k images vs %d MiB at 1k", first[i].cmd, last[i].maxRSSMiB, first[i].maxRSSMiB)
		}
		if last[i].peakFDs > first[i].peakFDs+4 || last[i].peakThr > first[i].peakThr+4 {
			t.Errorf("%s: fds %d->%d, threads %d->%d from 1k to 100k images", first[i].cmd, first[i].peakFDs, last[i].peakFDs, first[i].peakThr, last[i].peakThr)
		}
	}
}
