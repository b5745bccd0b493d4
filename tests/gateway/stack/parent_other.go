//go:build !linux

package stack

import "syscall"

// setParentDeathSignal does nothing outside Linux: NotifyContext polls the parent instead.
func setParentDeathSignal(syscall.Signal) {}
