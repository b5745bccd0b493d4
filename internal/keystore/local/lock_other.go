//go:build !unix

package local

import "io/fs"

// lockState is a no-op where flock is unavailable: run one keygate per
// state directory there.
func lockState(string) (func(), error) { return func() {}, nil }

// linkCount is unknown where the platform does not report it.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }
