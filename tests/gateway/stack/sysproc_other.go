//go:build unix && !linux

package stack

import "syscall"

// sysProcAttr puts a child in its own process group, so a Ctrl-C in the terminal reaches only the
// runner, which stops the children itself.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
