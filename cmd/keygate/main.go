// Command keygate is a policy decision point for CMS API keys: services and
// gateways ask it over HTTP whether a request carrying an X-MICROCMS-API-KEY
// may go through, and which contents it may see. The rules are Rego under
// policies/, evaluated by an embedded Open Policy Agent.
//
// Usage:
//
//	keygate serve [flags]      serve the HTTP API (see keygate serve -h)
//	keygate test [dir]         run the Rego tests in-process
//	keygate eval --input FILE  evaluate one decision and print it
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A reader of stdout that goes away (a log shipper that died) must not
	// kill the decision point: with SIGPIPE ignored, a write to the closed
	// pipe is an error the decision log counts, not the process's end.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries a process exit code through run's callers.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
