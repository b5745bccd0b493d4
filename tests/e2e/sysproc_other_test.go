//go:build !linux

package e2e

import "syscall"

// sysProcAttr: without Pdeathsig, the Cleanup of each test stops keygate.
func sysProcAttr() *syscall.SysProcAttr { return nil }
