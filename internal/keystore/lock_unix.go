//go:build unix

package keystore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockState takes an exclusive advisory lock on path, so that two keygate
// processes never append to the same state log (which would corrupt it).
// The lock dies with the process, so a crash never leaves it stale.
func lockState(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state %s is in use by another keygate process", path)
		}
		return nil, fmt.Errorf("lock state %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
