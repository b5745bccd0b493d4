package e2e

import "syscall"

// sysProcAttr asks the kernel to send keygate SIGTERM if the test binary
// dies, so a crashed or interrupted run leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
