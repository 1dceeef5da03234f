package featcache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// ErrLocked is matched (errors.Is) by the error returned when another
// process holds a cache folder's writer lock. The concrete error is a
// *LockedError naming the folder and the holder's PID.
var ErrLocked = errors.New("feature cache is locked by another writer")

// LockedError says which folder is locked and by whom.
type LockedError struct {
	Dir string // the identity's folder
	PID int    // process holding the lock as it recorded itself; 0 if unknown
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("feature cache %s is in use by %s (another extract?); wait for it to finish or wait for the lock", e.Dir, who)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// dirLock is the exclusive advisory lock (flock(2) on Linux) that admits one
// writer per identity folder. The kernel drops it when the holding process
// dies, however it dies, so a stale lock never needs manual removal.
type dirLock struct {
	fl  *flock.Flock
	pid *os.File // kept open while locked: closing another descriptor drops fcntl locks on some systems
}

// defaultRetryDelay is how often a waiting writer polls the lock.
const defaultRetryDelay = 50 * time.Millisecond

// acquireLock takes dir's writer lock. With wait it polls until the lock is
// free or ctx ends; without, it fails at once with a *LockedError.
func acquireLock(ctx context.Context, dir string, wait bool, retry time.Duration) (*dirLock, error) {
	path := filepath.Join(dir, lockName)
	fl := flock.New(path, flock.SetPermissions(0o644))
	var ok bool
	var err error
	if wait {
		if retry <= 0 {
			retry = defaultRetryDelay
		}
		ok, err = fl.TryLockContext(ctx, retry)
	} else {
		ok, err = fl.TryLock()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w (gave up waiting: %w)", &LockedError{Dir: dir, PID: readLockPID(path)}, ctxErr)
		}
		return nil, opError("lock", path, err)
	}
	if !ok {
		return nil, &LockedError{Dir: dir, PID: readLockPID(path)}
	}
	// Record who holds it, for the message other writers get. Best effort:
	// the lock itself is what excludes them.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{fl: fl, pid: f}, nil
}

func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	if l.pid != nil {
		_ = l.pid.Truncate(0)
	}
	err := l.fl.Unlock()
	if l.pid != nil {
		l.pid.Close()
	}
	return err
}

func readLockPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
