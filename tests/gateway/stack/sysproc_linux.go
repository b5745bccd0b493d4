package stack

import "syscall"

// sysProcAttr puts a child in its own process group and asks the kernel to send it SIGTERM if the
// runner dies, so a crashed test or runner never leaves keygate or nginx behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
