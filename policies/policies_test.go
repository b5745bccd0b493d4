// Package policies_test checks the Rego policies in this directory the way CI and a security
// team rely on them: every Rego test passes (each one a Go subtest), every file is formatted
// exactly as `opa fmt` would write it, and the whole directory compiles in strict mode with
// the entrypoints the engine prepares.
package policies_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
)

// dir is the policies directory; `go test` runs in the package directory.
const dir = "."

// TestRego runs every Rego test (test_* rules in *_test.rego) in process, as `opa test` would,
// with builtin errors raised so that a policy that only works by swallowing a type error fails.
func TestRego(t *testing.T) {
	modules, store, err := tester.Load([]string{dir}, nil)
	if err != nil {
		t.Fatalf("load policies: %v", err)
	}

	ch, err := tester.NewRunner().
		SetStore(store).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		SetTimeout(30*time.Second).
		RunTests(t.Context(), nil)
	if err != nil {
		t.Fatalf("run Rego tests: %v", err)
	}

	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	if len(results) == 0 {
		t.Fatal("no Rego test ran")
	}

	// Results arrive in any order; report them in file order so runs are comparable.
	slices.SortFunc(results, func(a, b *tester.Result) int {
		if c := strings.Compare(a.Location.File, b.Location.File); c != 0 {
			return c
		}
		return a.Location.Row - b.Location.Row
	})

	for _, r := range results {
		name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
		t.Run(name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Fatalf("%s:%d: error: %v", r.Location.File, r.Location.Row, r.Error)
			case r.Fail:
				t.Fatalf("%s:%d: failed (for the failing expression and its values: "+
					"go run github.com/open-policy-agent/opa@v1.22.3 test policies/ -v --var-values --run '%s')",
					r.Location.File, r.Location.Row, r.Name)
			case r.Skip:
				// A todo_test_ rule is a rule without coverage: CI must
				// not count it as passing.
				t.Fatalf("%s:%d: todo_test_ rule: finish the test or remove it", r.Location.File, r.Location.Row)
			}
		})
	}
}

// TestFormatted fails for every .rego file that `opa fmt` would change.
func TestFormatted(t *testing.T) {
	files := regoFiles(t)
	if len(files) == 0 {
		t.Fatal("no .rego file found")
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := format.Source(path, src)
			if err != nil {
				t.Fatalf("format: %v", err)
			}
			if !bytes.Equal(src, want) {
				t.Errorf("%s is not formatted: run `opa fmt -w %s` (line %d differs first)",
					path, path, firstDiffLine(src, want))
			}
		})
	}
}

// TestCompileStrict compiles the policies as the engine does, in strict mode (unused
// variables, imports and arguments, shadowed keywords and deprecated builtins are errors),
// and checks that the entrypoints of the contract in README.md are the annotated ones.
func TestCompileStrict(t *testing.T) {
	loaded, err := loader.NewFileLoader().
		WithProcessAnnotation(true).
		All([]string{dir})
	if err != nil {
		t.Fatalf("load policies: %v", err)
	}

	compiler := ast.NewCompiler().WithStrict(true)
	if compiler.Compile(loaded.ParsedModules()); compiler.Failed() {
		t.Fatalf("strict compile: %v", compiler.Errors)
	}

	var entrypoints []string
	for _, ref := range compiler.GetAnnotationSet().Flatten() {
		if ref.Annotations != nil && ref.Annotations.Entrypoint {
			entrypoints = append(entrypoints, ref.Path.String())
		}
	}
	slices.Sort(entrypoints)
	// The decisions, and the rule keygate asks on its own for seed keys.
	want := []string{"data.content.decision", "data.keys.decision", "data.keys.violations", "data.legacy.migration", "data.legacy.selection",
		"data.management.decision", "data.network.decision"}
	if !slices.Equal(entrypoints, want) {
		t.Errorf("entrypoints = %v, want %v", entrypoints, want)
	}

	for _, tc := range []struct {
		note string
		path []string
	}{
		{note: "hobby", path: []string{"plans", "hobby", "maxKeys"}},
		{note: "team", path: []string{"plans", "team", "maxKeys"}},
		{note: "business", path: []string{"plans", "business", "maxKeys"}},
		{note: "advanced", path: []string{"plans", "advanced", "maxKeys"}},
		{note: "enterprise", path: []string{"plans", "enterprise", "maxKeys"}},
	} {
		t.Run("plan data/"+tc.note, func(t *testing.T) {
			var v any = loaded.Documents
			for _, key := range tc.path {
				m, ok := v.(map[string]any)
				if !ok {
					t.Fatalf("data.%s: not an object at %q", strings.Join(tc.path, "."), key)
				}
				v = m[key]
			}
			if v == nil {
				t.Errorf("data.%s is missing", strings.Join(tc.path, "."))
			}
		})
	}
}

// BenchmarkDecision measures one evaluation of each entrypoint with a prepared query and a
// parsed input, the way the engine evaluates them, so an edit's cost shows before it ships.
func BenchmarkDecision(b *testing.B) {
	loaded, err := loader.NewFileLoader().WithProcessAnnotation(true).All([]string{dir})
	if err != nil {
		b.Fatalf("load policies: %v", err)
	}
	store, err := loaded.Store()
	if err != nil {
		b.Fatalf("store: %v", err)
	}
	key := `"key": {"id": "key_1", "service": "team-demo", "contentApi": {"default": {"get": true},
		"individual": {"contact": {"post": true}, "news": {"get": true, "getAllDrafts": true}}},
		"managementApi": {"getMedia": true}}`
	service := `"service": {"id": "team-demo", "plan": "team", "keyCount": 1}`
	for _, tc := range []struct {
		note, query, input string
	}{
		{"content GET default", "data.content.decision",
			`{` + service + `, ` + key + `, "request": {"method": "GET", "path": "/api/v1/blogs/abc", "query": {}}}`},
		{"content GET individual", "data.content.decision",
			`{` + service + `, ` + key + `, "request": {"method": "GET", "path": "/api/v1/news", "query": {}}}`},
		{"content POST denied", "data.content.decision",
			`{` + service + `, ` + key + `, "request": {"method": "POST", "path": "/api/v1/blogs", "query": {}}}`},
		{"management GET media", "data.management.decision",
			`{` + service + `, ` + key + `, "request": {"method": "GET", "path": "/api/v2/media", "query": {}}}`},
		{"keys create", "data.keys.decision",
			`{"action": "create", ` + service + `, "member": {"id": "a", "service": "team-demo", "role": "admin"},
			"key": {"name": "web", "contentApi": {"default": {"get": true}, "individual": {"contact": {"post": true}}}}}`},
	} {
		b.Run(tc.note, func(b *testing.B) {
			opts := []func(*rego.Rego){rego.Query(tc.query), rego.Store(store)}
			for _, m := range loaded.ParsedModules() {
				opts = append(opts, rego.ParsedModule(m))
			}
			prepared, err := rego.New(opts...).PrepareForEval(b.Context())
			if err != nil {
				b.Fatalf("prepare %s: %v", tc.query, err)
			}
			input := ast.MustParseTerm(tc.input).Value
			b.ReportAllocs()
			for b.Loop() {
				rs, err := prepared.Eval(b.Context(), rego.EvalParsedInput(input))
				if err != nil || len(rs) != 1 {
					b.Fatalf("eval %s: %v (%d results)", tc.query, err, len(rs))
				}
			}
		})
	}
}

// regoFiles lists the .rego files under dir.
func regoFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".rego") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return files
}

// firstDiffLine is the 1-based line of the first byte where a and b differ.
func firstDiffLine(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return bytes.Count(a[:i], []byte("\n")) + 1
}
