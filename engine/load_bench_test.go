package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/engine"
)

// BenchmarkLoad measures a full policy load (read, parse, strict compile,
// store, prepare every entrypoint): what one hot reload costs before the
// atomic swap. Run with
//
//	go test -run '^$' -bench BenchmarkLoad -benchmem ./engine/
func BenchmarkLoad(b *testing.B) {
	shipped := filepath.Join("..", "policies")
	withGenerated := func(n int) string {
		dir := filepath.Join(b.TempDir(), "policies")
		if err := os.CopyFS(dir, os.DirFS(shipped)); err != nil {
			b.Fatal(err)
		}
		generate(b, dir, n)
		return dir
	}
	generatedOnly := func(n int) string {
		dir := b.TempDir()
		generate(b, dir, n)
		return dir
	}
	cases := []struct {
		name        string
		dir         func() string
		entrypoints []string
	}{
		{name: "shipped", dir: func() string { return shipped }, entrypoints: engine.DefaultEntrypoints()},
		{name: "generated-200", dir: func() string { return generatedOnly(200) }, entrypoints: []string{"data.gen.p000.decision"}},
		{name: "shipped+generated-200", dir: func() string { return withGenerated(200) }, entrypoints: engine.DefaultEntrypoints()},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			dir := bc.dir()
			set, err := engine.Load(b.Context(), dir, bc.entrypoints)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := engine.Load(b.Context(), dir, bc.entrypoints); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(set.Files)), "files")
		})
	}
}

// generate writes n policy modules under dir/gen, one package each, shaped
// like the shipped ones: a defaulted decision object, boolean helpers, a
// set, a function and a test.
func generate(b *testing.B, dir string, n int) {
	b.Helper()
	for i := range n {
		pkg := fmt.Sprintf("p%03d", i)
		src := fmt.Sprintf(`# METADATA
# title: Generated policy %[1]s
package gen.%[1]s

# METADATA
# entrypoint: true
default decision := {"allow": false, "status": 403, "tier": ""}

decision := {"allow": true, "status": 200, "tier": tier} if is_allowed

default tier := "basic"

tier := "gold" if input.request.method == "GET"

default is_allowed := false

is_allowed if {
	some role in input.key.roles
	role in allowed_roles
	startswith(input.request.path, "/api/v1/")
	endpoint_of(input.request.path) != ""
}

allowed_roles := {"admin", "editor", "reader%[2]d"}

endpoint_of(path) := parts[3] if {
	parts := split(path, "/")
	count(parts) > 3
} else := ""

test_reader_may_get if {
	decision.allow with input as {"key": {"roles": ["reader%[2]d"]}, "request": {"method": "GET", "path": "/api/v1/blogs"}}
}
`, pkg, i)
		p := filepath.Join(dir, "gen", pkg, pkg+".rego")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
