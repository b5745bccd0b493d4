package local

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// fileSystem is every file operation the journal performs on the state
// directory: the seam under which tests inject storage faults (a failed or
// slow fsync, ENOSPC, a short write, a failed rename). osFS is the real one.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	// Open opens a file for reading as a stream (the snapshot).
	Open(name string) (io.ReadCloser, error)
	// OpenFile is used for new files only (O_CREATE|O_EXCL evidence copies).
	OpenFile(name string, flag int, perm fs.FileMode) (stateFile, error)
	// CreateTemp creates a new file (mode 0600) to be renamed into place.
	CreateTemp(dir, pattern string) (stateFile, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// SyncDir fsyncs a directory, making renames and creations in it durable.
	SyncDir(dir string) error
}

// stateFile is an open state file.
type stateFile interface {
	Name() string
	Write(p []byte) (int, error)
	Sync() error
	Close() error
	// Stat tells, through its link count, whether the file is still in the
	// directory (a log removed or replaced while keygate runs must not
	// acknowledge writes that a restart would not find).
	Stat() (fs.FileInfo, error)
}

// osFS is the real file system.
type osFS struct{}

var _ fileSystem = osFS{}

func (osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

func (osFS) Open(name string) (io.ReadCloser, error) { return os.Open(name) }

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (stateFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) CreateTemp(dir, pattern string) (stateFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
