package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headtune/headtune/featcache"
)

// Environment knobs of the crash test (scripts/reliability.sh sets them).
const (
	envCrashSeed  = "HEADTUNE_CRASH_SEED"  // seed of kill delays and worker counts (default 1)
	envCrashKills = "HEADTUNE_CRASH_KILLS" // extract kills (default 50, 10 with -short); predict gets half
)

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// killRun starts headtune and SIGKILLs it after delay unless it finishes
// first. It reports whether it was killed, and the finished result if not.
func (c *cli) killRun(delay time.Duration, args ...string) (killed bool, r *result) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	finished := func() *result {
		return &result{args: args, stdout: so.String(), stderr: se.String(), code: cmd.ProcessState.ExitCode(), wall: time.Since(began)}
	}
	select {
	case <-done:
		return false, finished()
	case <-timer.C:
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() {
			// It finished between the timer and the signal.
			return false, finished()
		}
		return true, nil
	}
}

// verifiedRows is the number of committed feature rows under cache (0 when
// no identity folder exists yet), checked with `headtune cache verify`.
func (c *cli) verifiedRows(t *testing.T, cache string) int {
	t.Helper()
	infos, err := featcache.List(cache)
	if err != nil || len(infos) == 0 {
		return 0 // killed before the cache folder was made
	}
	r := c.run("cache", "verify", "--cache", cache, "--json")
	var reps []featcache.VerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil {
		t.Fatalf("cache verify --json after a kill: %v\n%v", err, r)
	}
	if r.code != 0 || len(reps) != 1 || !reps[0].OK() {
		t.Fatalf("cache %s does not verify after a kill: %+v\n%v", cache, reps, r)
	}
	if reps[0].Duplicates != 0 {
		t.Errorf("cache %s holds %d duplicate rows: finished work was recomputed", cache, reps[0].Duplicates)
	}
	return reps[0].Records
}

// TestCrashResume is issue 2's crash test and issue 7: extract and
// `predict --resume` are SIGKILLed at seeded random moments many times; after
// each kill the cache verifies, a resumed run computes only what was not
// committed, and the final features and predictions equal an uninterrupted
// run bit for bit.
func TestCrashResume(t *testing.T) {
	c := newCLI(t)
	seed := uint64(envInt(t, envCrashSeed, 1))
	kills := 50
	if testing.Short() {
		kills = 10
	}
	kills = envInt(t, envCrashKills, kills)
	rng := rand.New(rand.NewPCG(seed, 0xc2a5))

	ds := filepath.Join(c.dir, "ds")
	paths := writeDataset(t, ds, DatasetOptions{Classes: 3, PerClass: 500, Seed: seed, LabelNoise: 0.2})
	n := len(paths)
	model := writeModel(t, c.dir, "resnet", 32)
	base := []string{"extract", ds, "--model", model, "--preset", "imagenet", "--json", "--quiet", "--batch", "8"}

	refCache := filepath.Join(c.dir, "ref")
	refRun := c.ok(append(base, "--cache", refCache, "--workers", "2")...)
	ref := parseExtract(t, refRun)
	refFeat, _ := cachedFeatures(t, ref.View)
	// Kill delays span a whole uninterrupted run, start-up included (about
	// half a second for 1,500 images here).
	span := refRun.wall
	t.Logf("seed %d, %d images, uninterrupted extract %v", seed, n, span.Round(time.Millisecond))

	start := time.Now()
	round, killed, completed := 0, 0, 0
	inRound, longest := 0, 0 // kills in the current round, most in one round
	var gained []int         // rows committed by each killed run
	cache := ""
	newRound := func() { round++; cache = filepath.Join(c.dir, fmt.Sprintf("crash-%d", round)) }
	newRound()
	for {
		before := c.verifiedRows(t, cache)
		delay := time.Duration(rng.Float64() * float64(span))
		if killed >= kills {
			delay = time.Hour // finish the last round
		}
		workers := strconv.Itoa(1 + rng.IntN(3))
		wasKilled, r := c.killRun(delay, append(base, "--cache", cache, "--workers", workers)...)
		if wasKilled {
			killed++
			inRound++
			longest = max(longest, inRound)
			after := c.verifiedRows(t, cache)
			if after < before {
				t.Fatalf("kill %d: committed rows went from %d to %d", killed, before, after)
			}
			gained = append(gained, after-before)
			continue
		}
		if r.code != 0 {
			t.Fatalf("resumed extract failed: %v", r)
		}
		sum := parseExtract(t, r)
		if sum.Computed != n-before || sum.Reused != before {
			t.Errorf("round %d: resume with %d committed rows computed %d and reused %d; want %d and %d",
				round, before, sum.Computed, sum.Reused, n-before, before)
		}
		got, _ := cachedFeatures(t, sum.View)
		for p, v := range refFeat {
			if d, same := maxAbsDiff(v, got[p]); !same {
				t.Fatalf("round %d: features of %s differ from the uninterrupted run (max |diff| %.3g)", round, p, d)
			}
		}
		if rows := c.verifiedRows(t, cache); rows != n {
			t.Errorf("round %d: %d rows committed for %d images", round, rows, n)
		}
		completed++
		if inRound == 0 && r.wall < span {
			// An uninterrupted run from an empty cache, faster than the
			// reference (warm file cache, idle machine): kill delays
			// should span this one.
			span = r.wall
		}
		if killed >= kills {
			break
		}
		inRound = 0
		newRound()
	}
	mid := 0
	for _, g := range gained {
		if g > 0 && g < n {
			mid++
		}
	}
	t.Logf("extract: %d kills survived over %d completed rounds (at most %d kills before one round completed) in %v; %d kills landed mid-extraction (rows committed by the killed run strictly between 0 and %d); final kill span %v",
		killed, completed, longest, time.Since(start).Round(time.Millisecond), mid, n, span.Round(time.Millisecond))
	fmt.Printf("RELIABILITY extract_kills=%d rounds=%d longest_round=%d mid_kills=%d seconds=%.1f\n", killed, completed, longest, mid, time.Since(start).Seconds())

	// predict --resume on the exported model.
	head := filepath.Join(c.dir, "h.head")
	c.ok("train", "--cache", refCache, "--head", head, "--quiet")
	exported := filepath.Join(c.dir, "m.onnx")
	c.ok("export", "--head", head, "-o", exported)
	pbase := []string{"predict", "--model", exported, ds, "--quiet", "--batch", "8", "--top", "3"}
	// JSON Lines carries full float32 precision; CSV is what most users
	// write. Each gets half of the predict kills.
	for _, ext := range []string{".jsonl", ".csv"} {
		refOut := filepath.Join(c.dir, "ref"+ext)
		c.ok(append(pbase, "--out", refOut, "--workers", "2")...)
		refRows := readRows(t, refOut)
		if len(refRows) != n {
			t.Fatalf("uninterrupted predict wrote %d rows for %d images", len(refRows), n)
		}
		pkills := kills / 4
		start = time.Now()
		out := filepath.Join(c.dir, "p"+ext)
		pk, pmid, prev := 0, 0, 0
		for {
			delay := time.Duration(rng.Float64() * float64(span))
			if pk >= pkills {
				delay = time.Hour
			}
			wasKilled, r := c.killRun(delay, append(pbase, "--out", out, "--resume", "--workers", strconv.Itoa(1+rng.IntN(3)))...)
			rows := readRows(t, out) // fails on duplicates and on torn lines other than the last
			for p, row := range rows {
				if row != refRows[p] {
					t.Fatalf("predict kill %d: row of %s is %s, uninterrupted run wrote %s", pk, p, row, refRows[p])
				}
			}
			if wasKilled {
				pk++
				if len(rows) > prev && len(rows) < n {
					pmid++
				}
				prev = len(rows)
				continue
			}
			if r.code != 0 {
				t.Fatalf("resumed predict failed: %v", r)
			}
			if len(rows) != n {
				t.Fatalf("predict finished with %d rows for %d images", len(rows), n)
			}
			if pk >= pkills {
				break
			}
			os.Remove(out)
			prev = 0
		}
		t.Logf("predict --resume --out %s: %d kills survived in %v, %d of them mid-run (new rows kept, not all written)", ext, pk, time.Since(start).Round(time.Millisecond), pmid)
		fmt.Printf("RELIABILITY predict%s_kills=%d mid_kills=%d seconds=%.1f\n", strings.ReplaceAll(ext, ".", "_"), pk, pmid, time.Since(start).Seconds())
	}
}

// readRows reads a predictions file (.jsonl or .csv): path -> the row's
// text. Every line but a torn last one must parse, a CSV has one header, and
// no path may appear twice.
func readRows(t *testing.T, path string) map[string]string {
	t.Helper()
	if strings.HasSuffix(path, ".jsonl") {
		return readJSONL(t, path)
	}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i != len(data)-1 {
		data = data[:i+1]
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rows := map[string]string{}
	for i, r := range recs {
		if i == 0 {
			if r[0] != "path" {
				t.Fatalf("%s: first row %q is not the header", path, r)
			}
			continue
		}
		if r[0] == "path" {
			t.Fatalf("%s: header repeated at row %d", path, i+1)
		}
		if _, dup := rows[r[0]]; dup {
			t.Fatalf("%s: %s appears twice: finished work was redone", path, r[0])
		}
		rows[r[0]] = strings.Join(r, "\x00")
	}
	return rows
}

// readJSONL reads a predictions file: path -> the row's JSON text. Every
// line but a torn last one must parse, and no path may appear twice.
func readJSONL(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i != len(data)-1 {
		data = data[:i+1] // a torn last line, rewritten by the next --resume
	}
	rows := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		line := sc.Text()
		var row struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%s line %d: %v: %q", path, lines, err, line)
		}
		if _, dup := rows[row.Path]; dup {
			t.Fatalf("%s: %s appears twice: finished work was redone", path, row.Path)
		}
		rows[row.Path] = line
	}
	return rows
}
