package featcache

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestRealDiskFull fills a 1 MiB tmpfs until a commit fails with ENOSPC and
// checks that the error says so and that everything committed before stays
// readable and verified. It needs root and mount(8); otherwise it skips
// (TestWriteFailures covers the same paths with injected failures).
func TestRealDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	const dim = 1024 // 4 KiB rows, 4 per batch
	id := testIdentity(dim)
	w := mustWriter(t, mnt, id)
	var err error
	committed := 0
	for i := 0; i < 1000 && err == nil; i += 4 {
		keys, rows := batch(i, i+4, dim)
		if err = w.Append(keys, rows); err == nil {
			committed = i + 4
		}
	}
	w.Close()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("filling the disk gave %v, want ENOSPC", err)
	}
	if committed < 100 {
		t.Fatalf("only %d rows fit in 1 MiB", committed)
	}
	r, err := Open(mnt, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkItems(t, r, committed)
	rep, err := Verify(Dir(mnt, id))
	if err != nil || !rep.OK() {
		t.Fatalf("Verify after disk full: %+v, %v", rep, err)
	}
}
