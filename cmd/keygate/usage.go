package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// command is one entry of keygate's top-level help.
type command struct {
	name     string // as typed after keygate: "serve", "keys import-legacy"
	synopsis string // the command line, as the top-level help shows it
	summary  string // one line
}

// commands lists every command keygate runs, in the order the top-level
// help shows them. A mistyped command is matched against these names.
var commands = []command{
	{"serve", "keygate serve [flags]", "serve the HTTP API: decisions, key management, health, metrics"},
	{"test", "keygate test [flags] [dir]", "run the Rego tests under dir (default: policies)"},
	{"eval", "keygate eval --input FILE [flags]", "evaluate one decision and print it as JSON"},
	{"replay", "keygate replay --log FILE [flags]", "re-evaluate a decision log against a candidate policy"},
	{"migrate", "keygate migrate --store URL [flags]", "apply the PostgreSQL schema; seed or import into an empty database"},
	{"keys import-legacy", "keygate keys import-legacy [flags]", "import old microCMS keys (X-API-KEY, …) into a running keygate"},
	{"version", "keygate version", "print keygate's version and commit, OPA's and Go's"},
	{"help", "keygate help [command]", "show a command's help (the same as keygate <command> -h)"},
}

// topUsage is the help of keygate itself.
func topUsage() string {
	var b strings.Builder
	b.WriteString(`keygate — a policy decision point for CMS API keys.

Usage: keygate <command> [flags]

Examples:
  keygate serve                       serve ./policies and ./data on localhost:8181
  keygate test                        run the Rego tests under ./policies
  keygate eval --input input.json     evaluate one decision
  keygate serve -h                    serve's flags, grouped by concern

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-37s %s\n", c.synopsis, c.summary)
	}
	b.WriteString(`
Run 'keygate <command> -h' for a command's examples and flags. Every flag can
also be given as an environment variable KEYGATE_<FLAG> (upper case, dashes as
underscores), e.g. KEYGATE_ADDR=0.0.0.0:8181; a flag on the command line wins.
`)
	return b.String()
}

// example is one example of a command's help: what it does, and the line.
type example struct{ what, line string }

// examples open each command's help, keyed by the flag set's name.
var examples = map[string][]example{
	"serve": {
		{"serve ./policies and ./data on localhost:8181; keys in .keygate/state.json", "keygate serve"},
		{"listen on every interface, keep state elsewhere, log decisions to a file",
			"keygate serve --addr 0.0.0.0:8181 --state /var/lib/keygate/state.json --decision-log /var/log/keygate/decisions.jsonl"},
		{"a replica of several that share their keys in PostgreSQL", "keygate serve --store postgres://keygate@db.internal/keygate"},
		{"policies from a signed OPA bundle, polled every 30s",
			"keygate serve --bundle https://bundles.internal/keygate.tar.gz --bundle-verification-key bundle.pem --bundle-poll 30s"},
		{"behind nginx's auth_request, trusting its X-Real-IP", "keygate serve --forward-auth-headers nginx --trusted-proxies 10.0.0.0/8"},
		{"try a candidate policy on live traffic without serving it", "keygate serve --shadow-policies candidate/"},
	},
	"test": {
		{"run every Rego test under ./policies", "keygate test"},
		{"run the tests whose name matches draft, printing each", "keygate test -v -run draft policies"},
	},
	"eval": {
		{"evaluate the content API decision for the input in a file", "keygate eval --input input.json"},
		{"the management API decision, input from stdin", "keygate eval --entrypoint management --input - < input.json"},
	},
	"replay": {
		{"what would the candidate policy change for the logged decisions?", "keygate replay --log decisions.jsonl --policies candidate/"},
		{"the same with the keys of a shared store, as JSON", "keygate replay --log decisions.jsonl --policies candidate/ --store postgres://keygate@db.internal/keygate --format json"},
	},
	"migrate": {
		{"create the schema and seed an empty database from ./data", "keygate migrate --store postgres://keygate@db.internal/keygate"},
		{"move a single-node keygate's keys into the database (stop it first)",
			"keygate migrate --store postgres://keygate@db.internal/keygate --from-state .keygate/state.json"},
	},
	"keys import-legacy": {
		{"import the old keys listed in a file", `keygate keys import-legacy --service team-demo --token "$ADMIN_TOKEN" --file old-keys.json`},
		{"one old read key, the token from the environment", `KEYGATE_TOKEN="$ADMIN_TOKEN" keygate keys import-legacy --service team-demo --api-key "$OLD_KEY"`},
	},
	"version": {
		{"print keygate's version and commit, OPA's and Go's", "keygate version"},
	},
}

// flagGroups sorts a command's flags under headings in its help, in this
// order; a flag of the command that no group names is listed under "Other".
var flagGroups = map[string][]flagGroup{
	"serve": {
		{"Server", []string{"addr", "shutdown-timeout", "debug-addr", "console"}},
		{"Policies and data", []string{"policies", "data", "watch", "watch-interval", "debounce", "eval-timeout"}},
		{"Policy bundles", []string{"bundle", "bundle-poll", "bundle-verification-key", "bundle-verification-key-alg", "bundle-key-id", "bundle-max-bytes", "bundle-cache-dir"}},
		{"Shadow evaluation of a candidate policy", []string{"shadow-policies", "shadow-bundle", "shadow-sample", "shadow-queue", "shadow-workers"}},
		{"Key store", []string{"state", "store", "store-heartbeat", "store-retention", "store-lock-timeout", "ready-max-staleness", "max-staleness"}},
		{"Gateways and clients", []string{"forward-auth-headers", "trusted-proxies", "legacy-headers"}},
		{"Logs and metrics", []string{"decision-log", "log-level", "metrics-per-service"}},
	},
}

// flagGroup is one heading of a command's flags.
type flagGroup struct {
	title string
	flags []string
}

// otherGroup is the heading of flags that no group names.
const otherGroup = "Other"

// writeHelp writes a command's help: its usage line, the examples, the rest
// of summary, then its flags (grouped where flagGroups says how).
func writeHelp(w io.Writer, fs *flag.FlagSet, summary string) {
	first, rest, _ := strings.Cut(summary, "\n\n")
	fmt.Fprintln(w, first)
	if ex := examples[fs.Name()]; len(ex) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range ex {
			fmt.Fprintf(w, "  # %s\n  %s\n\n", e.what, e.line)
		}
	} else {
		fmt.Fprintln(w)
	}
	if rest != "" {
		fmt.Fprintf(w, "%s\n", strings.TrimSpace(rest))
	}
	groups := flagGroups[fs.Name()]
	grouped := map[string]bool{}
	for _, g := range groups {
		for _, n := range g.flags {
			grouped[n] = true
		}
	}
	var other []*flag.Flag // every flag, for a command without groups
	fs.VisitAll(func(f *flag.Flag) {
		if !grouped[f.Name] {
			other = append(other, f)
		}
	})
	if len(groups) == 0 {
		writeFlags(w, "Flags", other)
		return
	}
	for _, g := range groups {
		var fl []*flag.Flag
		for _, n := range g.flags {
			if f := fs.Lookup(n); f != nil {
				fl = append(fl, f)
			}
		}
		writeFlags(w, g.title, fl)
	}
	writeFlags(w, otherGroup, other)
}

// writeFlags writes one group of flags as Go's flag package formats them.
func writeFlags(w io.Writer, title string, fl []*flag.Flag) {
	if len(fl) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, f := range fl {
		name, usage := flagKind(f)
		line := "  -" + f.Name
		if name != "" {
			line += " " + name
		}
		usage = strings.ReplaceAll(usage, "\n", "\n    \t")
		if def := f.DefValue; def != "" && def != "0" && def != "0s" && def != "false" {
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = strconv.Quote(def)
				}
			}
			usage += fmt.Sprintf(" (default %s)", def)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, usage)
	}
}

// flagKind returns the placeholder for a flag's value and its usage: a
// back-quoted word in the usage names the placeholder (as in Go's flag
// package), otherwise the value's type does; a boolean flag has none.
func flagKind(f *flag.Flag) (name, usage string) {
	usage = f.Usage
	if i := strings.IndexByte(usage, '`'); i >= 0 {
		if j := strings.IndexByte(usage[i+1:], '`'); j >= 0 {
			name = usage[i+1 : i+1+j]
			return name, usage[:i] + name + usage[i+1+j+1:]
		}
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "value", usage
	}
	switch g.Get().(type) {
	case bool:
		return "", usage
	case string:
		return "string", usage
	case time.Duration:
		return "duration", usage
	case int, int64:
		return "int", usage
	case uint, uint64:
		return "uint", usage
	case float64:
		return "float", usage
	}
	return "value", usage
}

// usageError is a command line keygate cannot run: run prints it with a
// pointer to the command's help and exits 2.
type usageError struct {
	cmd string // the command's name, "" for keygate itself
	msg string
}

func (e usageError) Error() string { return e.msg }

// usagef returns a usage error of fs's command.
func usagef(fs *flag.FlagSet, format string, args ...any) error {
	return usageError{cmd: fs.Name(), msg: fmt.Sprintf(format, args...)}
}

// writeUsageError writes e as two lines: what is wrong, and where help is.
func writeUsageError(w io.Writer, e usageError) {
	prog := "keygate"
	if e.cmd != "" {
		prog += " " + e.cmd
	}
	fmt.Fprintf(w, "%s: %s\nRun '%s -h' for usage.\n", prog, e.msg, prog)
}

// helpRequest is -h or --help: run writes the flag set's help to stdout.
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string { return flag.ErrHelp.Error() }
func (helpRequest) Unwrap() error { return flag.ErrHelp }

// checkArgs refuses positional arguments and required flags left empty
// (on the command line and in the environment).
func checkArgs(fs *flag.FlagSet, args []string, required ...string) error {
	if fs.NArg() > 0 {
		return unexpectedArg(fs, args, 0)
	}
	for _, name := range required {
		if f := fs.Lookup(name); f != nil && f.Value.String() == "" {
			return usagef(fs, "missing required flag --%s (or %s)", name, envName(name))
		}
	}
	return nil
}

// unexpectedArg is the usage error for positional argument i of fs. A
// "true" or "false" after a boolean flag gets a hint: Go's flags take a
// boolean's value only as -flag=value.
func unexpectedArg(fs *flag.FlagSet, args []string, i int) error {
	arg := fs.Arg(i)
	if at := len(args) - fs.NArg() + i - 1; at >= 0 && (arg == "true" || arg == "false") {
		name := strings.TrimLeft(args[at], "-")
		if f := fs.Lookup(name); f != nil && isBoolFlag(f) {
			return usagef(fs, "unexpected argument %q: a boolean flag takes its value as -%s=%s", arg, name, arg)
		}
	}
	return usagef(fs, "unexpected argument %q", arg)
}

// isBoolFlag reports whether f is a boolean flag (-f means -f=true).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// envName is the environment variable of a flag: KEYGATE_<NAME>, upper
// case with dashes as underscores.
func envName(flagName string) string {
	return "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// explainValues makes every flag of a basic type say what it expected when
// it is given a value it cannot parse, where Go's flag package says "parse
// error": "a duration needs a unit, e.g. 5s or 250ms".
func explainValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.(type) {
		case *explained, explainedBool:
			return
		}
		var explain func(string) string
		switch g.Get().(type) {
		case time.Duration:
			explain = func(s string) string {
				if _, err := strconv.ParseFloat(s, 64); err == nil {
					return "a duration needs a unit, e.g. 5s or 250ms"
				}
				return "not a duration: want a number and a unit, e.g. 5s, 250ms or 1m30s"
			}
		case bool:
			explain = func(string) string { return "want true or false" }
		case int, int64:
			explain = func(string) string { return "want a whole number" }
		case uint, uint64:
			explain = func(string) string { return "want a whole number, 0 or more" }
		case float64:
			explain = func(string) string { return "want a number" }
		default:
			return
		}
		v := &explained{Getter: g, explain: explain}
		if isBoolFlag(f) {
			f.Value = explainedBool{v}
			return
		}
		f.Value = v
	})
}

// explained is a flag value whose Set errors say what was expected.
type explained struct {
	flag.Getter
	explain func(value string) string
}

func (v *explained) Set(s string) error {
	if err := v.Getter.Set(s); err != nil {
		return errors.New(v.explain(s))
	}
	return nil
}

func (v *explained) String() string {
	if v == nil || v.Getter == nil {
		return ""
	}
	return v.Getter.String()
}

// explainedBool is an explained boolean: it keeps -flag meaning -flag=true.
type explainedBool struct{ *explained }

func (explainedBool) IsBoolFlag() bool { return true }

// suggest returns the name among names closest to typed, if it is within
// two edits (insertions, deletions, substitutions, adjacent swaps).
func suggest(typed string, names []string) (string, bool) {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(typed), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best, bestDist <= 2
}

// editDistance is the optimal string alignment distance between a and b:
// Levenshtein's insertions, deletions and substitutions plus swaps of two
// adjacent characters, each counting one.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// unknownCommand is the usage error for a command keygate does not have
// (parent "" for keygate itself, "keys" for its subcommands), with the
// closest name when one is near.
func unknownCommand(parent, typed string) error {
	var names []string
	for _, c := range commands {
		p, sub, found := strings.Cut(c.name, " ")
		switch {
		case parent == "" && !found:
			names = append(names, c.name)
		case parent == "" && found:
			// keygate import-legacy: the command lives under keys.
			if editDistance(strings.ToLower(typed), sub) <= 2 {
				return usageError{msg: fmt.Sprintf("unknown command %q; did you mean %q?", typed, c.name)}
			}
			if !slices.Contains(names, p) {
				names = append(names, p)
			}
		case parent == p:
			names = append(names, sub)
		}
	}
	msg := fmt.Sprintf("unknown command %q", typed)
	if s, ok := suggest(typed, names); ok {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usageError{cmd: parent, msg: msg}
}

// asUsageError makes a refused flag value of command cmd a usage error,
// keeping a help request or usage error as it is.
func asUsageError(cmd string, err error) error {
	var (
		help  helpRequest
		usage usageError
	)
	if errors.As(err, &help) || errors.As(err, &usage) || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{cmd: cmd, msg: err.Error()}
}
