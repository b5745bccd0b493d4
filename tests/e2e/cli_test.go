package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/route"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// keygateRun runs the keygate binary in dir with args (and stdin) and returns
// its exit code, stdout and stderr; it is killed (by PID) after a minute.
func keygateRun(t *testing.T, dir, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	const timeout = 60 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, build.Binary, args...)
	cmd.Dir = dir
	cmd.Env = stack.Environ()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v still running after %s; killed", cmd.Args, timeout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	serveFlags := []string{"Usage: keygate serve", "Examples:", "-addr", "localhost:8181", "-policies", "-data", "-state", ".keygate/state.json", "-decision-log", "KEYGATE_"}
	commands := []string{"keygate serve", "keygate test", "keygate eval", "keygate replay", "keygate migrate", "keygate keys import-legacy", "keygate version", "KEYGATE_"}
	cases := []struct {
		args   []string
		code   int
		stdout []string // help, asked for, goes to stdout
		stderr []string // exactly these lines
	}{
		{[]string{"--help"}, 0, commands, nil},
		{[]string{"help"}, 0, commands, nil},
		{[]string{"help", "serve"}, 0, serveFlags, nil},
		{[]string{"serve", "--help"}, 0, serveFlags, nil},
		{[]string{"serve", "-h"}, 0, serveFlags, nil},
		{[]string{"test", "--help"}, 0, []string{"Usage: keygate test", "Examples:", "-run", "-v", "policies"}, nil},
		{[]string{"eval", "--help"}, 0, []string{"Usage: keygate eval", "Examples:", "-input", "-entrypoint", "-policies"}, nil},
		{[]string{"keys", "import-legacy", "-h"}, 0, []string{"Usage: keygate keys import-legacy", "Examples:", "-service", "-token"}, nil},
		{[]string{"frobnicate"}, 2, nil, []string{`keygate: unknown command "frobnicate"`, "Run 'keygate -h' for usage."}},
		{[]string{"srve"}, 2, nil, []string{`keygate: unknown command "srve"; did you mean "serve"?`, "Run 'keygate -h' for usage."}},
		{[]string{"serve", "--adr", "x"}, 2, nil, []string{"keygate serve: flag provided but not defined: -adr", "Run 'keygate serve -h' for usage."}},
		{[]string{"serve", "stray"}, 2, nil, []string{`keygate serve: unexpected argument "stray"`, "Run 'keygate serve -h' for usage."}},
		{[]string{"serve", "--eval-timeout", "5"}, 2, nil, []string{
			`keygate serve: invalid value "5" for flag -eval-timeout: a duration needs a unit, e.g. 5s or 250ms`, "Run 'keygate serve -h' for usage."}},
		{[]string{"eval"}, 2, nil, []string{"keygate eval: missing required flag --input (or KEYGATE_INPUT)", "Run 'keygate eval -h' for usage."}},
		{[]string{"keys", "import-legacy", "--service", "team-demo"}, 2, nil, []string{
			"keygate keys import-legacy: missing required flag --token (or KEYGATE_TOKEN)", "Run 'keygate keys import-legacy -h' for usage."}},
		{[]string{"test", "a", "b"}, 2, nil, []string{`keygate test: unexpected argument "b"`, "Run 'keygate test -h' for usage."}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append([]string{"keygate"}, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := keygateRun(t, t.TempDir(), "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if got := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); tc.stderr != nil && !slices.Equal(got, tc.stderr) {
				t.Errorf("stderr:\n%s\nwant\n%s", stderr, strings.Join(tc.stderr, "\n"))
			}
			if tc.stderr == nil && stderr != "" {
				t.Errorf("stderr %q, want nothing", stderr)
			}
		})
	}
}

// TestVersion: keygate version names keygate's version and commit, the
// OPA version go.mod requires and the Go version, from the binary's build
// information.
func TestVersion(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile(filepath.Join(build.Root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github.com/open-policy-agent/opa (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require OPA")
	}
	code, stdout, stderr := keygateRun(t, t.TempDir(), "", "version")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^keygate (v\S+|\(devel\))$`),
		regexp.MustCompile(`^commit  ([0-9a-f]{40}( \(modified\))?, committed \S+|unknown \(built without version control information\))$`),
		regexp.MustCompile(`^OPA     ` + regexp.QuoteMeta(string(m[1])) + `$`),
		regexp.MustCompile(`^Go      go1\.\S+ \w+/\w+$`),
	}
	if code != 0 || stderr != "" || len(lines) != len(want) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %q does not match %s", lines[i], re)
		}
	}
}

// TestServeBusyPort: on the real binary, a port already in use fails at
// once with the address named, before the key state is created on disk.
func TestServeBusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	w := newWorkDir(t)
	code, _, stderr := keygateRun(t, w.dir, "", "serve", "--addr", busy.Addr().String(), "--state", w.state,
		"--policies", w.policies, "--data", w.data, "--decision-log", "off")
	if code != 1 || !strings.HasPrefix(stderr, "keygate serve: listen on "+busy.Addr().String()+": ") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Dir(w.state)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state directory exists after the failed start (%v)", err)
	}
}

func TestTestCommand(t *testing.T) {
	t.Parallel()
	failing := t.TempDir()
	writeFile(t, filepath.Join(failing, "x.rego"), []byte("package x\n\nanswer := 41\n"))
	writeFile(t, filepath.Join(failing, "x_test.rego"), []byte("package x_test\n\nimport data.x\n\ntest_passes if x.answer == 41\n\ntest_answer if x.answer == 42\n"))
	noTests := t.TempDir()
	writeFile(t, filepath.Join(noTests, "x.rego"), []byte("package x\n\nanswer := 41\n"))
	broken := t.TempDir()
	writeFile(t, filepath.Join(broken, "x.rego"), []byte("package x\n\nanswer := \n"))
	work := newWorkDir(t)

	cases := []struct {
		note string
		dir  string // working directory
		args []string
		code int
		want []string
	}{
		{"the repository's policies", build.Root, []string{"test", "policies"}, 0, []string{"PASS"}},
		{"default dir", work.dir, []string{"test"}, 0, []string{"PASS"}},
		{"verbose", build.Root, []string{"test", "-v", "-run", "test_.*seed", "policies"}, 0, []string{"PASS", "seed"}},
		{"a failing test", failing, []string{"test", "."}, 1, []string{"FAIL", "test_answer"}},
		{"no tests", noTests, []string{"test", "."}, 1, []string{"no tests ran"}},
		{"a parse error", broken, []string{"test", "."}, 1, []string{"x.rego"}},
		{"no such dir", work.dir, []string{"test", "nowhere"}, 1, []string{"nowhere"}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := keygateRun(t, tc.dir, "", tc.args...)
			all := stdout + stderr
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := map[string]any{"id": "k1", "service": "team-demo", "name": "web",
		"contentApi": map[string]any{"default": map[string]bool{"get": true}, "individual": map[string]any{}}, "managementApi": map[string]bool{}}
	input := func(method, path string) []byte {
		b, err := json.Marshal(map[string]any{
			"service": map[string]string{"id": "team-demo", "plan": "team"}, "key": key,
			"request": map[string]any{"method": method, "path": path, "query": map[string]string{}, "parameters": []string{},
				"route": evalRoute(path, strings.HasSuffix(path, "/media")), "contentId": ""},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// As a person writes it: method, path and query only; eval derives the
	// route, content id and parameter names as the server does.
	plain := func(method, path string, query map[string]string) string {
		b, err := json.Marshal(map[string]any{
			"service": map[string]string{"id": "team-demo", "plan": "team"}, "key": key,
			"request": map[string]any{"method": method, "path": path, "query": query},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	allow, deny := filepath.Join(dir, "allow.json"), filepath.Join(dir, "deny.json")
	writeFile(t, allow, input("GET", "/api/v1/blogs"))
	writeFile(t, deny, input("POST", "/api/v1/blogs"))
	media := filepath.Join(dir, "media.json")
	writeFile(t, media, input("GET", "/api/v1/media"))
	notJSON := filepath.Join(dir, "bad.json")
	writeFile(t, notJSON, []byte("{"))
	policies := filepath.Join(build.Root, "policies")

	cases := []struct {
		note    string
		args    []string
		stdin   string
		code    int
		allow   bool
		status  float64
		message string
	}{
		{"allow", []string{"eval", "--input", allow, "--policies", policies}, "", 0, true, 200, ""},
		{"deny", []string{"eval", "--input", deny, "--policies", policies}, "", 1, false, 400, "POST is forbidden."},
		{"stdin", []string{"eval", "--input", "-", "--policies", policies}, string(input("GET", "/api/v1/news/x")), 0, true, 200, ""},
		{"management entrypoint", []string{"eval", "--input", media, "--entrypoint", "management", "--policies", policies}, "", 1, false, 403, "Forbidden"},
		{"full reference", []string{"eval", "--input", allow, "--entrypoint", "data.content.decision", "--policies", policies}, "", 0, true, 200, ""},
		{"default policies dir", []string{"eval", "--input", allow}, "", 0, true, 200, ""},
		{"route derived from the path", []string{"eval", "--input", "-", "--policies", policies}, plain("GET", "/api/v1/blogs/x", map[string]string{"draftKey": "d"}), 0, true, 200, ""},
		{"no route for an upper-case endpoint", []string{"eval", "--input", "-", "--policies", policies}, plain("GET", "/api/v1/Blogs", map[string]string{}), 1, false, 404, "Not found."},
		{"parameters derived from the query", []string{"eval", "--input", "-", "--policies", policies}, plain("GET", "/api/v1/blogs", map[string]string{"x": "1;draftKey=d"}), 0, true, 200, ""},
		{"management route derived", []string{"eval", "--input", "-", "--entrypoint", "management", "--policies", policies}, plain("GET", "/api/v1/media", nil), 1, false, 403, "Forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := keygateRun(t, build.Root, tc.stdin, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			var out struct {
				Revision string         `json:"revision"`
				Decision map[string]any `json:"decision"`
			}
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("stdout is not a decision: %v\n%s%s", err, stdout, stderr)
			}
			if out.Revision == "" || out.Decision["allow"] != tc.allow || out.Decision["status"] != tc.status {
				t.Errorf("decision %s", stdout)
			}
			if tc.message != "" && out.Decision["message"] != tc.message {
				t.Errorf("message %v, want %q", out.Decision["message"], tc.message)
			}
		})
	}
	for _, tc := range []struct {
		note string
		args []string
		code int
		want string
	}{
		{"input not JSON", []string{"eval", "--input", notJSON, "--policies", policies}, 1, "bad.json"},
		{"no such input", []string{"eval", "--input", filepath.Join(dir, "nope.json"), "--policies", policies}, 1, "nope.json"},
		{"bad entrypoint", []string{"eval", "--input", allow, "--entrypoint", "nonsense", "--policies", policies}, 2,
			`keygate eval: invalid value "nonsense" for flag -entrypoint: want content, management, keys or a data.… reference`},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := keygateRun(t, build.Root, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q in stderr\n%s%s", code, tc.code, tc.want, stdout, stderr)
			}
		})
	}
}

// evalRoute is input.request.route as the server parses path (internal/route).
func evalRoute(path string, management bool) map[string]string {
	if management {
		rt, _ := route.Management(path)
		return map[string]string{"endpoint": rt.Endpoint, "pattern": rt.Pattern}
	}
	rt, _ := route.Content(path)
	return map[string]string{"endpoint": rt.Endpoint, "kind": rt.Kind}
}
