package docs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/tests/gateway/stack"
)

var build stack.TestBuild

func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "docs", &build)) }

// rerunnable are the pages that promise their examples can be run again on the same keygate:
// their blocks run twice, the second time against the state the first run left.
var rerunnable = map[string]bool{"README.md": true, "docs/tutorial.md": true}

// TestExamples runs every ```sh block of README.md and docs/ (see the package comment).
func TestExamples(t *testing.T) {
	for _, file := range markdownFiles(t, build.Root) {
		b, err := os.ReadFile(filepath.Join(build.Root, file))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := parseBlocks(file, string(b))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(blocks, func(b block) bool { return b.run }) {
			continue
		}
		t.Run(file, func(t *testing.T) {
			var env *session
			passes := 1
			if rerunnable[file] {
				passes = 2
			}
			for pass := range passes {
				for _, b := range blocks {
					if !b.run {
						continue
					}
					if env == nil || env.key != b.session() || (b.fresh && pass == 0) {
						env = newSession(t, b)
					}
					if env == nil {
						continue // skipped: its needs are missing
					}
					env.run(t, b)
				}
			}
		})
	}
}

// session is a working directory and what runs for a series of blocks.
type session struct {
	key     string
	dir     string
	env     []string
	rewrite *strings.Replacer
}

// pgURL is the connection string the docs write for a shared PostgreSQL store.
const pgURL = "postgres://keygate@db.internal/keygate"

// newSession prepares what b needs, or skips (nil) when a need is missing outside CI.
func newSession(t *testing.T, b block) *session {
	t.Helper()
	for _, n := range b.needs {
		if err := have(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s needs %s: %v", b.where(), n, err)
			}
			t.Logf("skipping %s: needs %s: %v (with CI=true this is a failure)", b.where(), n, err)
			return nil
		}
	}
	ctx := t.Context()
	s := &session{key: b.session(), dir: t.TempDir()}
	if err := stack.CopyDirs(build.Root, s.dir, "policies", "data", ".ci"); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(build.Binary, filepath.Join(bin, "keygate")); err != nil {
		t.Fatal(err)
	}
	s.env = append(stack.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	pairs := []string{}
	if slices.Contains(b.needs, "postgres") {
		pg := pgtest.Start(t)
		url, err := pg.NewDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pgURL, url)
	}
	switch {
	case slices.Contains(b.needs, "nginx"):
		st, err := stack.Start(ctx, stack.Config{Root: build.Root, Dir: filepath.Join(s.dir, "gateway"),
			KeygateBinary: build.Binary, Log: slog.New(slog.DiscardHandler), KeygateArgs: b.serve})
		if err != nil {
			t.Fatalf("%s: gateway stack: %v", b.where(), err)
		}
		t.Cleanup(func() { _ = st.Stop(context.WithoutCancel(ctx)) })
		pairs = append(pairs, "localhost:8181", st.Keygate.Addr, "127.0.0.1:8080", strings.TrimPrefix(st.URL, "http://"))
		s.env = append(s.env, "B="+st.Keygate.URL, "KEYGATE_URL="+st.Keygate.URL)
	case !b.noServe:
		k, err := stack.StartKeygate(ctx, stack.KeygateConfig{Binary: build.Binary, Dir: s.dir,
			Args: append([]string{"--decision-log", "decisions.jsonl"}, b.serve...), LogPath: filepath.Join(s.dir, "keygate.log")})
		if err != nil {
			t.Fatalf("%s: keygate: %v", b.where(), err)
		}
		t.Cleanup(func() {
			if err := k.Stop(); err != nil {
				t.Errorf("stop keygate: %v", err)
			}
		})
		pairs = append(pairs, "localhost:8181", k.Addr)
		s.env = append(s.env, "B="+k.URL, "KEYGATE_URL="+k.URL)
	}
	s.rewrite = strings.NewReplacer(pairs...)
	return s
}

// have reports whether a need is met here.
func have(need string) error {
	switch need {
	case "nginx":
		_, err := stack.FindNginx()
		return err
	case "postgres":
		_, err := pgtest.FindBin()
		return err
	case "openssl":
		_, err := exec.LookPath("openssl")
		return err
	case "opa":
		_, err := exec.LookPath("go") // go run …/opa@v1.22.3, from the module cache or proxy
		return err
	}
	return fmt.Errorf("unknown need %q", need)
}

// prelude runs before every block: `go run ./cmd/keygate …` is the keygate under test.
const prelude = `set -o pipefail
go() { if [ "$1" = run ] && [ "$2" = ./cmd/keygate ]; then shift 2; keygate "$@"; else command go "$@"; fi; }
`

var markerRE = regexp.MustCompile("\x1e(\\d+) (start|rc (\\d+))\n")

// run runs b's commands in one bash, each followed by a marker carrying its exit status, and
// checks statuses and expected output.
func (s *session) run(t *testing.T, b block) {
	t.Helper()
	cmds, err := splitCommands(s.rewrite.Replace(b.text))
	if err != nil {
		t.Fatalf("%s: %v", b.where(), err)
	}
	var script strings.Builder
	script.WriteString(prelude)
	for i, c := range cmds {
		fmt.Fprintf(&script, "printf '\\n\\036%d start\\n'\n%s\n__rc=$?; printf '\\n\\036%d rc %%d\\n' $__rc\n", i, c.text, i)
		want := 0
		if n, ok := wantExit(c); ok {
			want = n
		}
		fmt.Fprintf(&script, "[ $__rc -eq %d ] || exit 100\n", want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = s.dir, s.env
	// A process group of its own: what a block starts in the background (a second keygate) is
	// killed with it, also when the block fails before stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, runErr := cmd.CombinedOutput()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	outputs := map[int]string{}
	codes := map[int]int{}
	text := string(out)
	locs := markerRE.FindAllStringSubmatchIndex(text, -1)
	for k, loc := range locs {
		i, _ := strconv.Atoi(text[loc[2]:loc[3]])
		if loc[6] >= 0 {
			codes[i], _ = strconv.Atoi(text[loc[6]:loc[7]])
			continue
		}
		end := len(text)
		if k+1 < len(locs) {
			end = locs[k+1][0]
		}
		outputs[i] = text[loc[1]:end]
	}
	for i, c := range cmds {
		line := b.line + 1 + c.line + 1
		code, ran := codes[i]
		if !ran {
			t.Fatalf("%s:%d: did not finish (%v):\n%s\n--- output\n%s", b.file, line, runErr, c.text, outputs[i])
		}
		want, _ := wantExit(c)
		if code != want {
			t.Fatalf("%s:%d: exit %d, want %d:\n%s\n--- output\n%s", b.file, line, code, want, c.text, outputs[i])
		}
		for _, e := range c.expect {
			if err := contains(outputs[i], withoutExit(e)); err != nil {
				t.Errorf("%s:%d: %v:\n%s\n--- output\n%s", b.file, line, err, c.text, outputs[i])
			}
		}
	}
}

// wantExit is the exit status a command's expectation names in its last piece, "… exit N" or
// "exit N" alone (0 without one).
func wantExit(c command) (int, bool) {
	for _, e := range c.expect {
		if n, ok := exitOf(e); ok {
			return n, true
		}
	}
	return 0, false
}

// exitOf splits the "exit N" piece off the end of an expectation.
func exitOf(e string) (int, bool) {
	pieces := strings.Split(e, "…")
	last := strings.TrimSpace(pieces[len(pieces)-1])
	if n, ok := strings.CutPrefix(last, "exit "); ok {
		if v, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
			return v, true
		}
	}
	return 0, false
}

// withoutExit is an expectation without its "exit N" piece.
func withoutExit(e string) string {
	if _, ok := exitOf(e); ok {
		if k := strings.LastIndex(e, "…"); k >= 0 {
			return e[:k]
		}
		return ""
	}
	return e
}

// contains checks that every "…"-separated piece of want appears in out, in order.
func contains(out, want string) error {
	rest := out
	for _, piece := range strings.Split(want, "…") {
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		k := strings.Index(rest, piece)
		if k < 0 {
			return fmt.Errorf("output lacks %q (of %q)", piece, want)
		}
		rest = rest[k+len(piece):]
	}
	return nil
}

func TestContains(t *testing.T) {
	for _, tc := range []struct {
		out, want string
		ok        bool
	}{
		{`{"allow":true,"status":200}`, `"allow":true … "status":200`, true},
		{`{"status":200,"allow":true}`, `"allow":true … "status":200`, false},
		{`204`, `204`, true},
		{`401`, `204`, false},
	} {
		if err := contains(tc.out, tc.want); (err == nil) != tc.ok {
			t.Errorf("contains(%q, %q) = %v", tc.out, tc.want, err)
		}
	}
}
