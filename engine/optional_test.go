package engine_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

// TestOptionalEntrypoint: data.keys.violations is prepared when the policy
// defines it (Evaluate returns its value, whatever its type, with its
// projection) and skipped, not refused, when it does not; it never shows
// among the decision cache keys.
func TestOptionalEntrypoint(t *testing.T) {
	keys := "package keys\n\ndecision := {\"allow\": false}\n\nviolations := [input.key.name]\n"
	f := newFixture(t, map[string]string{"demo.rego": policyV("1"), "data.json": `{"demo": {"allowed": "yes"}}`, "keys.rego": keys}, engine.Options{})
	set := f.eng.Current()
	if !set.Has(engine.KeysViolations) {
		t.Fatal("a defined optional entrypoint is not prepared")
	}
	in := ast.MustParseTerm(`{"key": {"name": "n"}}`).Value
	v, err := set.Evaluate(t.Context(), engine.KeysViolations, in, 0)
	if err != nil || v.Compare(ast.MustParseTerm(`["n"]`).Value) != 0 {
		t.Fatalf("Evaluate = %v, %v", v, err)
	}
	if _, err := set.Decide(t.Context(), engine.KeysViolations, in, 0); !errors.Is(err, engine.ErrNotObject) {
		t.Errorf("Decide of an array: %v, want ErrNotObject", err)
	}
	if p := set.Projection(engine.KeysViolations); p == nil || !slices.Equal(p.Paths, []string{"input.key.name"}) {
		t.Errorf("projection %+v", p)
	}
	for _, p := range f.eng.Status().CacheKeys {
		if p.Entrypoint == engine.KeysViolations {
			t.Error("the optional rule is listed among the decision cache keys")
		}
	}

	g := newFixture(t, map[string]string{"demo.rego": policyV("1"), "data.json": `{"demo": {"allowed": "yes"}}`}, engine.Options{})
	if g.eng.Current().Has(engine.KeysViolations) {
		t.Error("an undefined optional entrypoint is prepared")
	}
	if _, err := g.eng.Current().Evaluate(t.Context(), engine.KeysViolations, in, 0); !errors.Is(err, engine.ErrUnknownEntrypoint) {
		t.Errorf("Evaluate of an undefined optional entrypoint: %v", err)
	}
}
