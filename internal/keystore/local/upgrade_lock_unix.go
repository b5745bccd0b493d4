//go:build unix

package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// lockV2 takes the lock of format-2 keygate, which flocked the side file
// <state>.lock (format 3 locks the directory instead, so the two do not see
// each other's lock). A format-2 keygate still running on the state makes
// the upgrade fail instead of racing its writes. No lock file: nothing to
// take.
func lockV2(path string) (unlock func(), err error) {
	f, err := os.Open(path) // flock needs no write access
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open format-2 lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("a keygate of the previous release (state format 2) is running on this state (it holds %s): stop it, then start this keygate to upgrade the state", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
