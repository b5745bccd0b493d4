package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `keygate — a policy decision point for CMS API keys.

Usage:
  keygate serve [flags]                 serve the HTTP API
  keygate test [flags] [dir]            run the Rego tests under dir (default: policies)
  keygate eval --input FILE [flags]     evaluate one decision and print it as JSON
  keygate replay --log FILE [flags]     re-evaluate a decision log against a candidate policy
  keygate migrate --store URL [flags]   apply the PostgreSQL schema, seed an empty database
                                        (--from-state FILE imports a local state file)
  keygate keys import-legacy [flags]    import old microCMS keys (X-API-KEY, …) into a running keygate
  keygate help [command]                show help

Every serve flag can also be given as an environment variable KEYGATE_<FLAG>,
e.g. KEYGATE_ADDR=0.0.0.0:8181. Flags win over the environment.
`

// run is the whole program: it parses args, runs one command and returns
// the process exit code. It reads the environment only through getenv.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(ctx, rest, getenv, stdout, stderr)
	case "test":
		err = testCmd(ctx, rest, stdout, stderr)
	case "eval":
		err = evalCmd(ctx, rest, getenv, stdout, stderr)
	case "replay":
		err = replayCmd(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		err = migrateCmd(ctx, rest, getenv, stdout, stderr)
	case "keys":
		err = keysCmd(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return run(ctx, []string{rest[0], "-h"}, getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "keygate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return 1
	}
}

// newFlagSet returns a flag set that prints its usage to w.
func newFlagSet(name, summary string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "%s\n\nFlags:\n", summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs. A malformed command line is a usage
// error, exit 2: the flag package has already printed the error and the
// usage, so it is not printed again. -h/--help stays flag.ErrHelp (exit 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return exitError{2}
	}
	return err
}

// applyEnv sets every flag not given on the command line from
// KEYGATE_<NAME> (upper case, dashes as underscores).
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
