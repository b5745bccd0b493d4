//go:build unix

package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// lockState takes an exclusive advisory lock (flock) on the state directory
// itself, so that two keygate processes never write the same state. The
// directory, not a file in it: the snapshot and the log are replaced by
// rename, and a side lock file can be deleted while keygate runs, letting a
// second writer in; removing files from the directory does not remove the
// lock. The lock dies with the process, so a crash never leaves it stale.
func lockState(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory %s is in use by another keygate process (one keygate per state directory)", dir)
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// linkCount returns how many directory entries name the file fi describes;
// ok is false where the platform does not say.
func linkCount(fi fs.FileInfo) (n uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true // uint32 on some platforms
}
