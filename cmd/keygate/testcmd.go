package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keygate/keygate/engine"
)

// testCmd runs the Rego tests in-process, so CI and security teams need no
// opa binary.
func testCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("test", `Usage: keygate test [flags] [dir]

Runs every Rego test (rules named test_*) under dir (default: policies) with
the strict compiler the server uses. Exits 1 when a test fails or errors, or
when no test ran.`, stderr)
	verbose := fs.Bool("v", false, "print every test, not only failures")
	run := fs.String("run", "", "only run tests whose name matches this regular expression")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir := "policies"
	if fs.NArg() > 1 {
		return unexpectedArg(fs, args, 1)
	}
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	sum, err := engine.RunTests(ctx, dir, *run, *verbose, stdout)
	if err != nil {
		return err
	}
	if !sum.OK() {
		if sum.Passed+sum.Failed+sum.Errored == 0 {
			fmt.Fprintln(stderr, "keygate test: no tests ran")
		}
		return exitError{1}
	}
	return nil
}
