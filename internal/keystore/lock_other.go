//go:build !unix

package keystore

// lockState is a no-op where flock is unavailable: run one keygate per
// state file there.
func lockState(string) (func(), error) { return func() {}, nil }
