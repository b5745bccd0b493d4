package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

const ep = "data.demo.decision"

// policyV returns a policy whose decision echoes the version and input.x.
func policyV(version string) string {
	return `package demo

default decision := {"allow": false, "version": "` + version + `"}

decision := {"allow": true, "version": "` + version + `"} if input.x == data.demo.allowed
`
}

type fixture struct {
	dir string
	eng *engine.Engine
}

func newFixture(t *testing.T, files map[string]string, opts engine.Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Entrypoints == nil {
		opts.Entrypoints = []string{ep}
	}
	eng, err := engine.New(t.Context(), dir, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{dir: dir, eng: eng}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func input(t *testing.T, x string) ast.Value {
	t.Helper()
	return ast.NewObject(ast.Item(ast.InternedTerm("x"), ast.StringTerm(x)))
}

func field(t *testing.T, d engine.Decision, key string) any {
	t.Helper()
	v, err := ast.JSON(d.Value.Get(ast.InternedTerm(key)).Value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecide(t *testing.T) {
	f := newFixture(t, map[string]string{
		"demo/demo.rego":      policyV("v1"),
		"demo/data.json":      `{"allowed": "yes"}`,
		"demo/.demo.rego.swp": "garbage",
		"demo/demo.rego~":     "garbage",
		"4913":                "garbage",
	}, engine.Options{})
	for _, tc := range []struct {
		note  string
		x     string
		allow bool
	}{
		{"data match allows", "yes", true},
		{"mismatch denies", "no", false},
	} {
		t.Run(tc.note, func(t *testing.T) {
			d, err := f.eng.Decide(t.Context(), ep, input(t, tc.x))
			if err != nil {
				t.Fatal(err)
			}
			if got := field(t, d, "allow"); got != tc.allow {
				t.Errorf("allow = %v, want %v", got, tc.allow)
			}
			if d.Revision == "" || d.Revision != f.eng.Revision() {
				t.Errorf("revision %q, engine %q", d.Revision, f.eng.Revision())
			}
		})
	}
	if got, want := f.eng.Current().Files, []string{"demo/data.json", "demo/demo.rego"}; !equal(got, want) {
		t.Errorf("files = %v, want %v (editor files must be ignored)", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// decideBound is how long TestDecideFailsClosed waits for one decision.
const decideBound = 3 * time.Second

func TestDecideFailsClosed(t *testing.T) {
	f := newFixture(t, map[string]string{
		"demo/demo.rego": `package demo

decision := {"allow": true} if input.x == "yes"

number := 1

conflict := 1 if input.x == "conflict"

conflict := 2 if input.x == "conflict"

boom := {"allow": conflict}

slow := {"allow": true} if {
	count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000); x == y + 100001]) > 0
}
`,
	}, engine.Options{Entrypoints: []string{ep, "data.demo.number", "data.demo.boom", "data.demo.slow"}})

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		note       string
		ctx        context.Context
		entrypoint string
		x          string
		timeout    time.Duration
		want       error
	}{
		{note: "undefined decision", entrypoint: ep, x: "no", want: engine.ErrUndefined},
		{note: "not an object", entrypoint: "data.demo.number", x: "yes", want: engine.ErrNotObject},
		{note: "runtime conflict error", entrypoint: "data.demo.boom", x: "conflict"},
		{note: "cancelled context", ctx: cancelled, entrypoint: ep, x: "yes", want: context.Canceled},
		{note: "deadline exceeded", entrypoint: "data.demo.slow", x: "yes", timeout: 50 * time.Millisecond, want: context.DeadlineExceeded},
		{note: "unknown entrypoint", entrypoint: "data.demo.nope", x: "yes", want: engine.ErrUnknownEntrypoint},
	} {
		t.Run(tc.note, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			// Each case has a bound of its own: the slow policy loops for
			// 10^10 steps (minutes), so a broken timeout fails here in
			// seconds rather than at the package timeout. On the bound the
			// context is cancelled to stop the evaluation.
			ctx, stop := context.WithCancel(ctx)
			defer stop()
			type result struct {
				d   engine.Decision
				err error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				d, err := f.eng.Current().Decide(ctx, tc.entrypoint, input(t, tc.x), tc.timeout)
				done <- result{d, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(decideBound):
				stop()
				<-done
				t.Fatalf("Decide still running after %s (timeout %s)", decideBound, tc.timeout)
			}
			d, err := r.d, r.err
			if tc.timeout > 0 && time.Since(start) > tc.timeout+time.Second {
				t.Errorf("Decide took %s with a timeout of %s", time.Since(start), tc.timeout)
			}
			if err == nil {
				t.Fatalf("want an error (deny), got decision %v", d.Value)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if d.Value != nil {
				t.Errorf("a failed decision must carry no value, got %v", d.Value)
			}
		})
	}
}

func TestReloadRejectsBrokenPolicies(t *testing.T) {
	f := newFixture(t, map[string]string{"demo/demo.rego": policyV("v1"), "demo/data.json": `{"allowed": "yes"}`}, engine.Options{})
	good := f.eng.Revision()
	for _, tc := range []struct {
		note  string
		files map[string]string
		line  int
	}{
		{"syntax error", map[string]string{"demo/demo.rego": "package demo\n\ndecision := {\n"}, 3},
		{"unsafe variable", map[string]string{"demo/demo.rego": "package demo\n\ndecision := {\"allow\": y} if input.x == 1\n"}, 3},
		{"strict mode unused import", map[string]string{"demo/demo.rego": "package demo\n\nimport data.other\n\ndecision := {\"allow\": true}\n"}, 3},
		{"entrypoint removed", map[string]string{"demo/demo.rego": "package demo\n\nother := 1\n"}, 0},
		{"bad data file", map[string]string{"demo/data.json": "{not json"}, 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			writeFiles(t, f.dir, tc.files)
			if _, err := f.eng.Reload(t.Context()); err == nil {
				t.Fatal("Reload accepted a broken policy")
			}
			st := f.eng.Status()
			if st.LastResult != "error" || st.LastError == "" || st.Revision != good || f.eng.Revision() != good {
				t.Fatalf("status %+v, serving %s, want last good %s with the error", st, f.eng.Revision(), good)
			}
			if tc.line > 0 && (len(st.LastErrors) == 0 || st.LastErrors[0].Line < tc.line ||
				!strings.HasSuffix(st.LastErrors[0].File, "demo.rego")) {
				t.Errorf("errors %+v, want demo.rego from line %d", st.LastErrors, tc.line)
			}
			d, err := f.eng.Decide(t.Context(), ep, input(t, "yes"))
			if err != nil || field(t, d, "version") != "v1" {
				t.Fatalf("last good policy not serving: %v %v", d.Value, err)
			}
			// Fix it again.
			writeFiles(t, f.dir, map[string]string{"demo/demo.rego": policyV("v1"), "demo/data.json": `{"allowed": "yes"}`})
			if _, err := f.eng.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			if st := f.eng.Status(); st.LastResult != "unchanged" || st.LastError != "" {
				t.Fatalf("status after fix %+v", st)
			}
		})
	}
}

func TestConfigMapSymlinkLayout(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"..2026_01/demo.rego": policyV("cm1"), "..2026_01/data.json": `{"demo": {"allowed": "yes"}}`})
	must(t, os.Symlink("..2026_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/demo.rego", filepath.Join(dir, "demo.rego")))
	must(t, os.Symlink("..data/data.json", filepath.Join(dir, "data.json")))
	eng, err := engine.New(t.Context(), dir, engine.Options{Entrypoints: []string{ep}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := eng.Decide(t.Context(), ep, input(t, "yes"))
	if err != nil || field(t, d, "version") != "cm1" || field(t, d, "allow") != true {
		t.Fatalf("decision %v %v", d.Value, err)
	}
	if got := eng.Current().Files; !equal(got, []string{"data.json", "demo.rego"}) {
		t.Errorf("files %v: the ..data twin must not be loaded twice", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentDecideDuringSwaps runs decisions while the policy flips
// between two versions: every decision must be exactly one version's answer,
// consistent with the revision it reports.
func TestConcurrentDecideDuringSwaps(t *testing.T) {
	f := newFixture(t, map[string]string{"demo/demo.rego": policyV("v1"), "demo/data.json": `{"allowed": "yes"}`}, engine.Options{})
	revs := map[string]string{f.eng.Revision(): "v1"}
	var mu sync.Mutex

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var decisions, failures atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := f.eng.Decide(context.Background(), ep, input(t, "yes"))
				if err != nil {
					failures.Add(1)
					continue
				}
				decisions.Add(1)
				v := field(t, d, "version")
				mu.Lock()
				want, known := revs[d.Revision]
				mu.Unlock()
				if known && v != want {
					t.Errorf("revision %s answered %v, want %s", d.Revision, v, want)
				}
			}
		})
	}
	for i := range 40 {
		version := []string{"v1", "v2"}[i%2]
		if i%5 == 4 {
			writeFiles(t, f.dir, map[string]string{"demo/demo.rego": "package demo\n\ndecision := {\n"})
			if _, err := f.eng.Reload(t.Context()); err == nil {
				t.Error("broken policy accepted")
			}
		}
		writeFiles(t, f.dir, map[string]string{"demo/demo.rego": policyV(version)})
		set, err := engine.Load(t.Context(), f.dir, []string{ep})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		revs[set.Revision] = version
		mu.Unlock()
		if _, err := f.eng.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || decisions.Load() == 0 {
		t.Fatalf("%d failed decisions, %d decisions", failures.Load(), decisions.Load())
	}
}

// TestRevisionFollowsWhatWasLoaded: data reached through a symlinked
// subdirectory is part of the revision, so editing it is a change (the
// reload swaps it in) rather than "unchanged".
func TestRevisionFollowsWhatWasLoaded(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	writeFiles(t, dir, map[string]string{"demo/demo.rego": policyV("v1")})
	writeFiles(t, outside, map[string]string{"data.json": `{"allowed": "yes"}`})
	must(t, os.Symlink(outside, filepath.Join(dir, "demo", "shared")))
	const shared = "data.demo.shared.allowed"
	pol := `package demo

default decision := {"allow": false}

decision := {"allow": true} if input.x == ` + shared + `
`
	writeFiles(t, dir, map[string]string{"demo/demo.rego": pol})
	eng, err := engine.New(t.Context(), dir, engine.Options{Entrypoints: []string{ep}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	before := eng.Revision()
	if d, err := eng.Decide(t.Context(), ep, input(t, "yes")); err != nil || field(t, d, "allow") != true {
		t.Fatalf("before: %v %v", d.Value, err)
	}
	writeFiles(t, outside, map[string]string{"data.json": `{"allowed": "no"}`})
	res, err := eng.Reload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || eng.Revision() == before {
		t.Fatalf("an edit behind a symlinked directory was not a change: %+v", res)
	}
	if d, err := eng.Decide(t.Context(), ep, input(t, "yes")); err != nil || field(t, d, "allow") != false {
		t.Fatalf("after: %v %v", d.Value, err)
	}
}
