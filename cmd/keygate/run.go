package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// run is the whole program: it parses args, runs one command and returns
// the process exit code: 0 done, 1 failed, 2 a command line keygate cannot
// run (a usage error names what is wrong and points at -h; the help itself
// is printed only when asked for). It reads the environment only through
// getenv.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
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
	case "version", "--version", "-version":
		err = versionCmd(rest, stdout)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return run(ctx, append(slices.Clone(rest), "-h"), getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, topUsage())
		return 0
	default:
		if strings.HasPrefix(cmd, "-") {
			err = usageError{msg: fmt.Sprintf("flag provided but not defined: %s (flags follow the command: keygate <command> %s)", cmd, cmd)}
		} else {
			err = unknownCommand("", cmd)
		}
	}
	var (
		help  helpRequest
		usage usageError
		ee    exitError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		help.fs.SetOutput(stdout)
		help.fs.Usage()
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		writeUsageError(stderr, usage)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "keygate %s: %v\n", args[0], err)
		return 1
	}
}

// newFlagSet returns the flag set of command name; its Usage writes the
// command's help (summary, examples, flags) to the set's output.
func newFlagSet(name, summary string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() { writeHelp(fs.Output(), fs, summary) }
	return fs
}

// parseFlags parses args into fs. Nothing is printed here: -h/--help is a
// helpRequest (run writes the help to stdout, exit 0), and a malformed
// command line a usageError naming what is wrong (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	explainValues(fs)
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return helpRequest{fs}
	case err != nil:
		return usageError{cmd: fs.Name(), msg: err.Error()}
	}
	return nil
}

// applyEnv sets every flag not given on the command line from
// KEYGATE_<NAME> (upper case, dashes as underscores). A value that does not
// parse is a usage error naming the variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := envName(f.Name)
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usagef(fs, "%v", err)
	}
	return nil
}
