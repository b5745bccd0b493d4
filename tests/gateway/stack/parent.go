package stack

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// NotifyContext is the context a demo runner runs in: it ends on SIGINT or SIGTERM, and when the
// process that started the runner exits. `go run` passes SIGINT and SIGQUIT on to the program it
// runs but dies of SIGTERM alone, so without the parent check a killed `go run` would leave the
// runner, and everything the runner started, running. On Linux the kernel sends SIGTERM at once
// (PR_SET_PDEATHSIG); elsewhere, and as a fallback, the parent process id is polled.
func NotifyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ppid := os.Getppid()
	setParentDeathSignal(syscall.SIGTERM)
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			// The parent may have exited before the death signal was asked for: then the
			// runner already has another parent.
			if os.Getppid() != ppid {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ctx, func() { cancel(); stopSignals() }
}
