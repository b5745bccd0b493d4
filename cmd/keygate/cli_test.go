package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// runCLI runs keygate's run with args and env and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestUsageErrors: a command line keygate cannot run prints exactly two
// lines on stderr, what is wrong and where the help is, and exits 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		note string
		args []string
		env  map[string]string
		want string // the first line
	}{
		{"unknown flag", []string{"serve", "--adr", "x"}, nil, "keygate serve: flag provided but not defined: -adr"},
		{"positional argument", []string{"serve", "foo"}, nil, `keygate serve: unexpected argument "foo"`},
		{"boolean flag with a separate value", []string{"serve", "-watch", "false"}, nil,
			`keygate serve: unexpected argument "false": a boolean flag takes its value as -watch=false`},
		{"duration without a unit", []string{"serve", "--eval-timeout", "5"}, nil,
			`keygate serve: invalid value "5" for flag -eval-timeout: a duration needs a unit, e.g. 5s or 250ms`},
		{"not a duration", []string{"serve", "--debounce", "fast"}, nil,
			`keygate serve: invalid value "fast" for flag -debounce: not a duration: want a number and a unit, e.g. 5s, 250ms or 1m30s`},
		{"duration without a unit in the environment", []string{"serve"}, map[string]string{"KEYGATE_EVAL_TIMEOUT": "5"},
			`keygate serve: KEYGATE_EVAL_TIMEOUT="5": a duration needs a unit, e.g. 5s or 250ms`},
		{"not a whole number", []string{"serve", "--shadow-queue", "many"}, nil,
			`keygate serve: invalid value "many" for flag -shadow-queue: want a whole number`},
		{"not a boolean", []string{"serve", "--watch=maybe"}, nil,
			`keygate serve: invalid boolean value "maybe" for -watch: want true or false`},
		{"not a number", []string{"serve", "--shadow-sample", "half"}, nil,
			`keygate serve: invalid value "half" for flag -shadow-sample: want a number`},
		{"refused flag value", []string{"serve", "--max-staleness", "-1s"}, nil, "keygate serve: --max-staleness must not be negative"},
		{"refused combination", []string{"serve", "--forward-auth-headers", "haproxy"}, nil,
			`keygate serve: --forward-auth-headers "haproxy": want auto, nginx, traefik or envoy`},
		{"eval without --input", []string{"eval"}, nil, "keygate eval: missing required flag --input (or KEYGATE_INPUT)"},
		{"eval with an argument", []string{"eval", "--input", "in.json", "extra"}, nil, `keygate eval: unexpected argument "extra"`},
		{"replay without --log", []string{"replay"}, nil, "keygate replay: missing required flag --log (or KEYGATE_LOG)"},
		{"replay format", []string{"replay", "--log", "x.jsonl", "--format", "yaml"}, nil,
			`keygate replay: invalid value "yaml" for flag -format: want text or json`},
		{"replay with two stores", []string{"replay", "--log", "x.jsonl", "--state", "s.json", "--store", "postgres://x"}, nil,
			"keygate replay: --state and --store (KEYGATE_STORE) name two key stores; give one"},
		{"migrate without --store", []string{"migrate"}, nil, "keygate migrate: missing required flag --store (or KEYGATE_STORE)"},
		{"import without --token", []string{"keys", "import-legacy", "--service", "team-demo"}, nil,
			"keygate keys import-legacy: missing required flag --token (or KEYGATE_TOKEN)"},
		{"import without --service", []string{"keys", "import-legacy", "--token", "t"}, nil,
			"keygate keys import-legacy: missing required flag --service (or KEYGATE_SERVICE)"},
		{"test with two directories", []string{"test", "a", "b"}, nil, `keygate test: unexpected argument "b"`},
		{"version with an argument", []string{"version", "x"}, nil, `keygate version: unexpected argument "x"`},
		{"mistyped command", []string{"srve"}, nil, `keygate: unknown command "srve"; did you mean "serve"?`},
		{"swapped letters", []string{"sevre"}, nil, `keygate: unknown command "sevre"; did you mean "serve"?`},
		{"two edits", []string{"repaly"}, nil, `keygate: unknown command "repaly"; did you mean "replay"?`},
		{"upper case", []string{"Serve"}, nil, `keygate: unknown command "Serve"; did you mean "serve"?`},
		{"nothing close", []string{"frobnicate"}, nil, `keygate: unknown command "frobnicate"`},
		{"a subcommand without its parent", []string{"import-legacy"}, nil,
			`keygate: unknown command "import-legacy"; did you mean "keys import-legacy"?`},
		{"help for a mistyped command", []string{"help", "evl"}, nil, `keygate: unknown command "evl"; did you mean "eval"?`},
		{"keys without a command", []string{"keys"}, nil, "keygate keys: missing command: keygate keys import-legacy"},
		{"keys, mistyped command", []string{"keys", "import-legcy"}, nil,
			`keygate keys: unknown command "import-legcy"; did you mean "import-legacy"?`},
		{"a flag before the command", []string{"--addr", ":8181"}, nil,
			"keygate: flag provided but not defined: --addr (flags follow the command: keygate <command> --addr)"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.env, tc.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			prog := tc.want[:strings.Index(tc.want, ":")]
			want := []string{tc.want, "Run '" + prog + " -h' for usage."}
			if code != 2 || stdout != "" || !slices.Equal(lines, want) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, stderr:\n%s", code, stdout, stderr, strings.Join(want, "\n"))
			}
		})
	}
}

// flagLine is a flag's heading in help: its name and the placeholder of
// its value (a type, or an upper-case word a usage string back-quotes).
var flagLine = regexp.MustCompile(`^  -[a-z][a-z0-9-]*( (string|duration|int|uint|float|value|[A-Z][A-Z_]*))?$`)

// TestHelp: -h prints the command's help on stdout and exits 0; the help
// opens with examples whose flags exist, and every flag heading is a name
// and a placeholder (a back-quoted phrase in a usage string would render as
// "-bundle opa build").
func TestHelp(t *testing.T) {
	for _, c := range commands {
		if c.name == "help" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, append(strings.Fields(c.name), "-h")...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			lines := strings.Split(stdout, "\n")
			if !strings.HasPrefix(lines[0], "Usage: keygate "+c.name) || lines[2] != "Examples:" {
				t.Errorf("help does not open with its usage line and examples:\n%s", stdout)
			}
			flags := map[string]bool{}
			for _, l := range lines {
				if strings.HasPrefix(l, "  -") {
					if !flagLine.MatchString(l) {
						t.Errorf("flag heading %q is not a name and a placeholder", l)
					}
					flags[strings.Fields(l)[0]] = true
				}
			}
			ex := examples[c.name]
			if len(ex) == 0 {
				t.Fatal("no examples")
			}
			for _, e := range ex {
				if !strings.Contains(stdout, "  "+e.line+"\n") {
					t.Errorf("example %q is not in the help", e.line)
				}
				for _, w := range strings.Fields(e.line) {
					if len(w) > 1 && strings.HasPrefix(w, "-") && !flags["-"+strings.TrimLeft(w, "-")] {
						t.Errorf("example %q uses %s, which %s does not have", e.line, w, c.name)
					}
				}
			}
		})
	}
}

// TestServeFlagsGrouped: every serve flag is in a group of flagGroups, so
// that serve's help has no "Other" heading; a new flag needs its group.
func TestServeFlagsGrouped(t *testing.T) {
	_, stdout, _ := runCLI(t, nil, "serve", "-h")
	if i := strings.Index(stdout, "\n"+otherGroup+":\n"); i >= 0 {
		t.Errorf("serve flags in no group of flagGroups[\"serve\"] (add them to a group):%s", stdout[i+len(otherGroup)+2:])
	}
	if strings.Count(stdout, "\n  -") < 30 {
		t.Errorf("serve's help lists too few flags:\n%s", stdout)
	}
}

// TestServeExamplesParse: serve's examples are command lines serve accepts.
func TestServeExamplesParse(t *testing.T) {
	for _, e := range examples["serve"] {
		args := strings.Fields(e.line)[2:]
		if _, err := parseServe(args, func(string) string { return "" }, &bytes.Buffer{}); err != nil {
			t.Errorf("%s: %v", e.line, err)
		}
	}
}

// TestTopHelp: keygate -h and the package documentation list every
// command, one line each.
func TestTopHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "-h")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	doc, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		line := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.synopsis) + ` +` + regexp.QuoteMeta(c.summary) + `$`)
		if !line.MatchString(stdout) {
			t.Errorf("keygate -h lacks the line of %q:\n%s", c.name, stdout)
		}
		if !bytes.Contains(doc, []byte("//\t"+c.synopsis+" ")) {
			t.Errorf("the package documentation does not list %q", c.synopsis)
		}
	}
	// No command at all: the same help, as an error.
	if code, stdout, stderr := runCLI(t, nil); code != 2 || stdout != "" || !strings.Contains(stderr, "Commands:") {
		t.Errorf("keygate alone: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"serve", "serve", 0},
		{"srve", "serve", 1},
		{"sevre", "serve", 1},
		{"serv", "serve", 1},
		{"servee", "serve", 1},
		{"sreve", "serve", 1},
		{"repaly", "replay", 1},
		{"rpelay", "replay", 1},
		{"mgirate", "migrate", 1},
		{"vrsn", "version", 3},
		{"", "eval", 4},
		{"kéys", "keys", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestReadVersion(t *testing.T) {
	opa := &debug.Module{Path: opaModule, Version: "v1.22.3"}
	for _, tc := range []struct {
		note string
		bi   *debug.BuildInfo
		want []string // lines
	}{
		{"from a checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.9.0"}, Deps: []*debug.Module{opa},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}, {Key: "vcs.time", Value: "2026-12-06T10:00:00Z"}}},
			[]string{"keygate v0.9.0", "commit  abc123, committed 2026-12-06T10:00:00Z", "OPA     v1.22.3", "Go      go1.26.8 "}},
		{"with uncommitted changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Deps: []*debug.Module{opa},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			[]string{"keygate (devel)", "commit  abc123 (modified)", "OPA     v1.22.3", "Go      go1.26.8 "}},
		{"without version control", &debug.BuildInfo{GoVersion: "go1.26.8", Deps: []*debug.Module{opa}},
			[]string{"keygate (devel)", "commit  unknown (built without version control information)", "OPA     v1.22.3", "Go      go1.26.8 "}},
		{"OPA replaced", &debug.BuildInfo{GoVersion: "go1.26.8", Deps: []*debug.Module{{Path: opaModule, Version: "v1.22.3", Replace: &debug.Module{Path: "../opa", Version: "v1.23.0-rc1"}}}},
			[]string{"keygate (devel)", "commit  unknown (built without version control information)", "OPA     v1.23.0-rc1", "Go      go1.26.8 "}},
		{"no build information: OPA's version package", nil,
			[]string{"keygate (devel)", "commit  unknown (built without version control information)", "OPA     v1.22.3", "Go      go"}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got := strings.Split(strings.TrimSuffix(readVersion(tc.bi).String(), "\n"), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("line %d: %q, want %q…", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestServeBusyPort: serve binds its address first; when the port is taken
// it fails at once, naming the address, and leaves no key state behind.
func TestServeBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "state.json")
	code, _, stderr := runCLI(t, nil, "serve", "--addr", busy.Addr().String(), "--state", state,
		"--policies", "../../policies", "--data", "../../data", "--decision-log", "off", "--watch=false")
	want := "keygate serve: listen on " + busy.Addr().String() + ": "
	if code != 1 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q… address already in use", code, stderr, want)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("serve left %v in the state's directory (%v)", entries, err)
	}
}
