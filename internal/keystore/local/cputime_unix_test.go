//go:build unix

package local

import (
	"syscall"
	"time"
)

// cpuTime is the user and system CPU time of the process so far: the
// benchmarks report it per operation, a figure that a busy machine inflates
// far less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
