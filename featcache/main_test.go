package featcache

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The test binary doubles as the writer subprocess of the lock and crash
// tests: with childEnv set, TestMain runs the named child mode instead of
// the tests.
const childEnv = "FEATCACHE_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func envInt(name string) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		panic(fmt.Sprintf("test child: bad %s: %v", name, err)) // test harness misuse only
	}
	return v
}

// runChild implements the subprocess modes.
//
//	hold:    open a writer, print "locked", sleep until killed.
//	extract: append items [0, N) in batches of B, printing "C <batch>" before
//	         computing each batch that is not yet cached, then "DONE".
func runChild(mode string) error {
	root := os.Getenv("FC_ROOT")
	id := testIdentity(envInt("FC_DIM"))
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		out.Flush()
	}
	switch mode {
	case "hold":
		w, err := OpenWriter(context.Background(), root, id, WriterOptions{})
		if err != nil {
			return err
		}
		say("locked")
		time.Sleep(time.Hour)
		return w.Close()
	case "extract":
		n, b, dim := envInt("FC_N"), envInt("FC_B"), id.Dim
		w, err := OpenWriter(context.Background(), root, id, WriterOptions{Wait: true})
		if err != nil {
			return err
		}
		keys := make([]Key, b)
		rows := make([]float32, b*dim)
		for start := 0; start < n; start += b {
			end := min(start+b, n)
			todo := false
			for i := start; i < end; i++ {
				if !w.Has(itemKey(i)) {
					todo = true
					break
				}
			}
			if !todo {
				continue
			}
			say("C %d", start/b)
			k, r := keys[:end-start], rows[:(end-start)*dim]
			for i := start; i < end; i++ {
				k[i-start] = itemKey(i)
				itemRow(i, r[(i-start)*dim:(i-start+1)*dim])
			}
			if err := w.Append(k, r); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
		say("DONE")
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// childCmd prepares the test binary as a child in mode.
func childCmd(t testing.TB, mode, root string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + mode, "FC_ROOT=" + root}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}
