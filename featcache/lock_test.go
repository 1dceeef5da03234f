package featcache

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLockSameProcess(t *testing.T) {
	root := t.TempDir()
	id := testIdentity(4)
	w := mustWriter(t, root, id)
	_, err := OpenWriter(context.Background(), root, id, WriterOptions{})
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	if le.PID != os.Getpid() || !strings.Contains(err.Error(), w.Dir()) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("error %q should name %s and pid %d", err, w.Dir(), os.Getpid())
	}
	// Repair needs the lock too.
	if _, err := Repair(w.Dir()); !errors.Is(err, ErrLocked) {
		t.Fatalf("Repair during a write: %v, want ErrLocked", err)
	}
	// Waiting with a deadline gives up with both reasons.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	_, err = OpenWriter(ctx, root, id, WriterOptions{Wait: true, RetryDelay: 10 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting writer past its deadline: %v", err)
	}
	// Waiting writers are serialised: the second gets the lock once the
	// first closes, and sees its rows.
	keys, rows := batch(0, 3, 4)
	done := make(chan *Writer)
	go func() {
		w2, err := OpenWriter(context.Background(), root, id, WriterOptions{Wait: true, RetryDelay: 5 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		done <- w2
	}()
	time.Sleep(30 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("second writer got the lock while the first held it")
	default:
	}
	if err := w.Append(keys, rows); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w2 := <-done
	if w2 == nil {
		t.FailNow()
	}
	if w2.Len() != 3 {
		t.Fatalf("second writer sees %d rows, want 3", w2.Len())
	}
	w2.Close()
}

// TestLockOtherProcess: a writer in another process refuses ours with its
// PID; once it is killed with SIGKILL its lock is gone.
func TestLockOtherProcess(t *testing.T) {
	root := t.TempDir()
	id := testIdentity(4)
	cmd := childCmd(t, "hold", root, "FC_DIM=4")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v", line, err)
	}
	_, err = OpenWriter(context.Background(), root, id, WriterOptions{})
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("writer beside a live one: %v, want ErrLocked by pid %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	w, err := OpenWriter(context.Background(), root, id, WriterOptions{})
	if err != nil {
		t.Fatalf("lock of a killed writer not recovered: %v", err)
	}
	w.Close()
}
