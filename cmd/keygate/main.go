// Command keygate is a policy decision point for CMS API keys: services and
// gateways ask it over HTTP whether a request carrying an X-MICROCMS-API-KEY
// may go through, and which contents it may see. The rules are Rego under
// policies/, evaluated by an embedded Open Policy Agent.
//
// Usage:
//
//	keygate serve [flags]                serve the HTTP API: decisions, key management, health, metrics
//	keygate test [flags] [dir]           run the Rego tests under dir (default: policies)
//	keygate eval --input FILE [flags]    evaluate one decision and print it as JSON
//	keygate replay --log FILE [flags]    re-evaluate a decision log against a candidate policy
//	keygate migrate --store URL [flags]  apply the PostgreSQL schema; seed or import into an empty database
//	keygate keys import-legacy [flags]   import old microCMS keys (X-API-KEY, …) into a running keygate
//	keygate version                      print keygate's version and commit, OPA's and Go's
//	keygate help [command]               show a command's help (the same as keygate <command> -h)
//
// Every flag can also be given as an environment variable KEYGATE_<FLAG>.
// A command line keygate cannot run exits 2 with one line saying what is
// wrong and one pointing at the command's -h; a command that fails exits 1.
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
