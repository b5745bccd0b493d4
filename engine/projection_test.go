package engine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/engine"
)

// TestProjectShippedPolicies pins what each shipped entrypoint reads of its input, so that a
// policy edit that changes what the decision cache keys on shows up here (and in
// /v1/policies). The content decision does not read the path or the content id: questions
// about different contents of one endpoint share a cache entry.
func TestProjectShippedPolicies(t *testing.T) {
	set, err := engine.Load(t.Context(), "../policies", engine.DefaultEntrypoints())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		entrypoint string
		want       []string
	}{
		{engine.Content, []string{"input.key", "input.request.clientIp", "input.request.method", "input.request.parameters",
			"input.request.query.draftKey", "input.request.route.endpoint", "input.request.route.kind", "input.service"}},
		{engine.Management, []string{"input.key", "input.request.clientIp", "input.request.method", "input.request.route.endpoint",
			"input.request.route.pattern", "input.service"}},
		{engine.Keys, []string{"input.action", "input.key", "input.member.id", "input.member.role",
			"input.member.service", "input.service.apis", "input.service.id", "input.service.keyCount", "input.service.plan"}},
	} {
		t.Run(tc.entrypoint, func(t *testing.T) {
			p := set.Projection(tc.entrypoint)
			if p == nil || !p.Cacheable || p.Whole || !slices.Equal(p.Paths, tc.want) {
				t.Errorf("projection = %+v\nwant paths %q", p, tc.want)
			}
		})
	}
}

// TestProjectFallbacks: policies the analysis cannot read precisely key on the whole input,
// and policies reaching a non-deterministic builtin are not cached; precise cases are cut at
// the first non-constant step and follow rules, functions, else chains and packages.
func TestProjectFallbacks(t *testing.T) {
	for _, tc := range []struct {
		note      string
		policy    string
		cacheable bool
		whole     bool
		paths     []string
		reason    string // a part of the reason, when not precise
	}{
		{note: "input passed whole to a function", whole: true, reason: "input is used as a value",
			policy: "f(x) := x.a\n\ndecision := f(input)"},
		{note: "walk(input)", whole: true, reason: "input is used as a value",
			policy: "decision := [p | walk(input, [p, _])]"},
		{note: "json.marshal(input)", whole: true, reason: "input is used as a value",
			policy: "decision := json.marshal(input)"},
		{note: "object.get(input, …)", whole: true, reason: "input is used as a value",
			policy: `decision := object.get(input, "a", 1)`},
		{note: "dynamic first step", whole: true, reason: "dynamic first step",
			policy: "decision := input[k] if some k in [\"a\", \"b\"]"},
		{note: "with input as", whole: true, reason: "with input as",
			policy: "inner := input.a\n\ndecision := v if v := inner with input as {\"a\": 1}"},
		{note: "with input.a as", whole: true, reason: "with input.a as",
			policy: "inner := input.a\n\ndecision := v if v := inner with input.a as 1"},
		{note: "time.now_ns in a helper", cacheable: false, reason: "time.now_ns",
			policy: "late if time.now_ns() > 0\n\ndecision := input.a if late"},
		{note: "rand.intn", cacheable: false, reason: "rand.intn",
			policy: `decision := rand.intn("k", 10) + input.a`},
		{note: "http.send in a function", cacheable: false, reason: "http.send",
			policy: "fetch(u) := http.send({\"method\": \"GET\", \"url\": u})\n\ndecision := fetch(input.url)"},
		{note: "non-determinism beats whole", cacheable: false, reason: "time.now_ns",
			policy: "decision := [input, time.now_ns()]"},
		{note: "cut at the first variable", cacheable: true, paths: []string{"input.a"},
			policy: "decision := [v | some i; v := input.a[i].b]"},
		{note: "function argument", cacheable: true, paths: []string{"input.a.b"},
			policy: "f(x) := x.c\n\ndecision := f(input.a.b)"},
		{note: "else chain and default", cacheable: true, paths: []string{"input.a", "input.e"},
			policy: "default decision := 0\n\ndecision := 1 if input.a else := 2 if input.e"},
		{note: "a prefix covers its extensions", cacheable: true, paths: []string{"input.a"},
			policy: "decision := [input.a, input.a.b.c]"},
		{note: "number steps", cacheable: true, paths: []string{`input.a[0]`},
			policy: "decision := input.a[0]"},
		{note: "every and comprehensions", cacheable: true, paths: []string{"input.c", "input.d"},
			policy: "ok if every x in input.c { x > 0 }\n\ndecision := {k | some k, _ in input.d} if ok"},
		{note: "unreachable rules are not read", cacheable: true, paths: []string{"input.a"},
			policy: "unused := input.z\n\ndecision := input.a"},
		{note: "rules of another package", cacheable: true, paths: []string{"input.a", "input.lib"},
			policy: "import data.lib\n\ndecision := [lib.v, input.a]"},
		{note: "a dynamic ref into data selects every rule below it (data.lib.now too)", cacheable: false, reason: "time.now_ns",
			policy: "decision := [data.lib[k] | some k in [\"v\", \"w\"]] if input.a"},
		{note: "a non-deterministic builtin in another package", cacheable: false, reason: "time.now_ns",
			policy: "decision := data.lib.now"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{
				"demo.rego": "package demo\n\n" + tc.policy + "\n",
				"lib.rego":  "package lib\n\nv := input.lib\n\nw := 1\n\nnow := time.now_ns()\n",
			})
			set, err := engine.Load(t.Context(), dir, []string{ep})
			if err != nil {
				t.Fatal(err)
			}
			p := set.Projection(ep)
			if p.Cacheable != (tc.cacheable || tc.whole) || p.Whole != tc.whole || !slices.Equal(p.Paths, tc.paths) ||
				!strings.Contains(p.Reason, tc.reason) {
				t.Errorf("projection = %+v\nwant cacheable %v whole %v paths %q reason containing %q",
					p, tc.cacheable || tc.whole, tc.whole, tc.paths, tc.reason)
			}
		})
	}
}

// TestProjectionRecomputedOnReload: /v1/policies shows what the serving revision keys on;
// an edit that reads another input field changes it at the next reload.
func TestProjectionRecomputedOnReload(t *testing.T) {
	f := newFixture(t, map[string]string{"demo.rego": policyV("1"), "data.json": `{"demo": {"allowed": "yes"}}`}, engine.Options{})
	if got := f.eng.Status().CacheKeys; len(got) != 1 || !slices.Equal(got[0].Paths, []string{"input.x"}) {
		t.Fatalf("before: %+v", got)
	}
	writeFiles(t, f.dir, map[string]string{"demo.rego": "package demo\n\ndecision := {\"allow\": input.y == 1, \"t\": time.now_ns()}\n"})
	if _, err := f.eng.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := f.eng.Status().CacheKeys
	if len(got) != 1 || got[0].Cacheable || !strings.Contains(got[0].Reason, "time.now_ns") {
		t.Fatalf("after: %+v", got)
	}
	if rev, p := f.eng.Projection(ep); rev != f.eng.Revision() || p != got[0] {
		t.Errorf("Projection() = %s %+v, want the serving revision's", rev, p)
	}
}
