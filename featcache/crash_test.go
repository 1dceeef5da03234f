package featcache

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrashResume kills an extracting writer process with SIGKILL at seeded
// random moments, at least 50 times, and after each kill checks that:
//   - the cache opens and verifies (a torn tail is allowed, as a note);
//   - committed items never disappear and are exactly a prefix of the work,
//     bit-exact;
//   - the run only computed batches that were not committed when it
//     started, and at most one batch it computed is not committed (the
//     batch in flight);
//
// and finally that the resumed cache equals an uninterrupted run's byte for
// byte. FEATCACHE_CRASH_SEED picks another seed.
func TestCrashResume(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("FEATCACHE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FEATCACHE_CRASH_SEED: %v", err)
		}
		seed = v
	}
	const (
		dim      = 96
		batchN   = 8
		items    = 2000 // 250 batches
		minKills = 50
		maxTries = 400
	)
	kills := minKills
	if testing.Short() {
		kills = 10
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	env := []string{"FC_DIM=" + strconv.Itoa(dim), "FC_B=" + strconv.Itoa(batchN), "FC_N=" + strconv.Itoa(items)}
	root := t.TempDir()
	id := testIdentity(dim)

	committed := func() map[int]bool { // batch -> fully committed
		r, err := Open(root, id)
		if errors.Is(err, fs.ErrNotExist) {
			return map[int]bool{}
		}
		if err != nil {
			t.Fatalf("open after kill: %v", err)
		}
		defer r.Close()
		n := r.Len()
		checkItems(t, r, n)
		m := make(map[int]bool, n/batchN)
		for b := 0; (b+1)*batchN <= n; b++ {
			m[b] = true
		}
		return m
	}

	// The uninterrupted reference run.
	ref := t.TempDir()
	runToEnd(t, ref, env)
	refData := fileBytes(t, filepath.Join(Dir(ref, id), dataName))
	refIndex := fileBytes(t, filepath.Join(Dir(ref, id), indexName))
	sameAsRef := func(what string) {
		t.Helper()
		for _, f := range []struct {
			name string
			want []byte
		}{{dataName, refData}, {indexName, refIndex}} {
			got := fileBytes(t, filepath.Join(Dir(root, id), f.name))
			if !bytes.Equal(got, f.want) {
				t.Fatalf("%s: %s differs from an uninterrupted run (%d vs %d bytes)", what, f.name, len(got), len(f.want))
			}
		}
		r, err := Open(root, id)
		if err != nil {
			t.Fatal(err)
		}
		checkItems(t, r, items)
		r.Close()
	}

	killed, prevLen, completions := 0, 0, 0
	var stats struct{ inFlight, tornIndex, tornData int }
	for try := 0; killed < kills; try++ {
		if try == maxTries {
			t.Fatalf("only %d kills landed during work in %d tries", killed, maxTries)
		}
		before := committed()
		cmd := childCmd(t, "extract", root, env...)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(25 * time.Millisecond))))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		computed := parseComputed(t, out.String())
		for _, b := range computed {
			if before[b] {
				t.Fatalf("kill %d: recomputed batch %d, committed before the run started", killed, b)
			}
		}
		rep, err := Verify(Dir(root, id))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // killed before the folder existed
			}
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("kill %d: cache does not verify: %v", killed, rep.Problems)
		}
		if rep.UncommittedIndexBytes > 0 {
			stats.tornIndex++
		}
		if rep.UncommittedDataBytes > 0 {
			stats.tornData++
		}
		after := committed()
		if rep.Records < prevLen {
			t.Fatalf("kill %d: %d committed items shrank to %d", killed, prevLen, rep.Records)
		}
		prevLen = rep.Records
		lost := 0
		for _, b := range computed {
			if !after[b] {
				lost++
			}
		}
		if lost > 1 {
			t.Fatalf("kill %d: %d computed batches not committed; at most the one in flight may be lost", killed, lost)
		}
		stats.inFlight += lost
		if len(computed) > 0 {
			killed++
		}
		if rep.Records == items { // finished between kills: compare, start over
			sameAsRef("completed between kills")
			completions++
			root, prevLen = t.TempDir(), 0
		}
	}
	t.Logf("%d kills during work, %d runs completed between kills, %d batches lost in flight, torn index tails %d, torn data tails %d",
		killed, completions, stats.inFlight, stats.tornIndex, stats.tornData)
	runToEnd(t, root, env)
	sameAsRef("resumed after kills")
}

// runToEnd runs an extract child to completion.
func runToEnd(t *testing.T, root string, env []string) {
	t.Helper()
	cmd := childCmd(t, "extract", root, env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "DONE") {
		t.Fatalf("uninterrupted extract run: %v", err)
	}
}

func parseComputed(t *testing.T, out string) []int {
	var bs []int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "C "); ok {
			b, err := strconv.Atoi(rest)
			if err != nil {
				t.Fatalf("child output %q", sc.Text())
			}
			bs = append(bs, b)
		}
	}
	return bs
}
