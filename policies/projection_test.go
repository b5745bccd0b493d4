package policies_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

// TestProjectionIsSound checks the decision cache's premise on the shipped policies: two
// inputs that agree on every path the analysis (engine.Project) says an entrypoint reads get
// the same decision, uncached. The inputs are every combination of a small vocabulary, so
// that many of them agree on the projection while differing elsewhere (content id, path,
// other query parameters, key id), and every path read is varied against all others.
func TestProjectionIsSound(t *testing.T) {
	set, eval := loadSet(t)
	for _, ep := range []string{engine.Content, engine.Management} {
		t.Run(ep, func(t *testing.T) {
			p := set.Projection(ep)
			if p == nil || !p.Cacheable || p.Whole {
				t.Fatalf("projection %+v: want precise paths", p)
			}
			if bad := counterexample(t, eval, ep, p.Steps()); bad != "" {
				t.Fatal(bad)
			}
		})
	}
}

// TestProjectionCheckCatchesADroppedPath shows that the soundness check can fail: with any
// one path dropped from the analysis, two inputs that agree on the rest get different
// decisions, and the check names them.
func TestProjectionCheckCatchesADroppedPath(t *testing.T) {
	set, eval := loadSet(t)
	for _, ep := range []string{engine.Content, engine.Management} {
		steps := set.Projection(ep).Steps()
		for i := range steps {
			name := ast.Ref(append([]*ast.Term{ast.InputRootDocument}, steps[i]...)).String()
			t.Run(ep+" without "+name, func(t *testing.T) {
				dropped := slices.Delete(slices.Clone(steps), i, i+1)
				if counterexample(t, eval, ep, dropped) == "" {
					t.Errorf("no counterexample with %s dropped: the check cannot see that path", name)
				}
			})
		}
	}
}

func loadSet(t *testing.T) (*engine.PolicySet, func(string, ast.Value) string) {
	t.Helper()
	set, err := engine.Load(t.Context(), dir, engine.DefaultEntrypoints())
	if err != nil {
		t.Fatal(err)
	}
	return set, func(ep string, in ast.Value) string {
		d, err := set.Decide(t.Context(), ep, in, 0)
		if err != nil {
			t.Fatalf("decide: %v", err)
		}
		return d.Value.String()
	}
}

// counterexample returns two inputs that agree on the paths but get different decisions, ""
// when there are none among the vocabulary's inputs.
func counterexample(t *testing.T, eval func(string, ast.Value) string, ep string, paths [][]*ast.Term) string {
	t.Helper()
	type seen struct {
		input    ast.Value
		decision string
	}
	groups := map[string]seen{}
	for _, in := range vocabularyInputs(ep) {
		key := projectionKey(in, paths)
		d := eval(ep, in)
		if first, ok := groups[key]; !ok {
			groups[key] = seen{in, d}
		} else if first.decision != d {
			return fmt.Sprintf("same projection, different decisions:\n  %v\n  -> %s\n  %v\n  -> %s", first.input, first.decision, in, d)
		}
	}
	if len(groups) == len(vocabularyInputs(ep)) {
		t.Fatalf("no two inputs share a projection: the check compares nothing")
	}
	return ""
}

// projectionKey is the values of in at paths, absent ones marked.
func projectionKey(in ast.Value, paths [][]*ast.Term) string {
	var key []byte
	for _, p := range paths {
		v, err := in.Find(ast.Ref(p))
		if err != nil {
			key = append(key, "<absent>;"...)
			continue
		}
		key = append(key, v.String()...)
		key = append(key, ';')
	}
	return string(key)
}

// vocabularyInputs builds the inputs of every combination of a small vocabulary, as the
// server does (inputOf), for the content or the management entrypoint.
func vocabularyInputs(ep string) []ast.Value {
	keys := []*corpusKey{
		nil,
		{Service: "hobby-demo", Default: "get", Individual: map[string]string{"contact": "post"}},
		{Service: "hobby-demo", Default: "get,getAllDrafts,post", Management: "getContents,getMedia"},
		{Service: "team-demo", Default: "get,post", Management: "getMedia"},
	}
	services := []map[string]any{nil, {"id": "hobby-demo", "plan": "hobby"}, {"id": "team-demo", "plan": "team"},
		// A service that restricts addresses: the default list, and contact's own.
		{"id": "team-demo", "plan": "business", "ipRestrictions": map[string]any{
			"default": []any{"203.0.113.0/24"}, "apis": map[string]any{"contact": []any{"192.0.2.1"}, "blogs": []any{"192.0.2.1"}}}}}
	// The server presents the client's address only for a service that restricts addresses;
	// "" is none.
	clientIPs := []string{"", "203.0.113.5", "192.0.2.1"}
	// The last two have the same parameter names, but only one a draftKey value.
	queries := [][][2]string{{}, {{"draftKey", "d"}}, {{"Status", "draft"}}, {{"limit", "10"}},
		{{"x", "1;draftKey=d"}}, {{"x", "1"}, {"draftKey", "d"}}}
	methods := []string{"GET", "POST", "PATCH"}
	paths := []string{"/api/v1/blogs", "/api/v1/blogs/a", "/api/v1/blogs/b", "/api/v1/contact", "/api/v1/contact/a", "/api/v1/Contact"}
	api := "content"
	if ep == engine.Management {
		api = "management"
		paths = []string{"/api/v1/contents/blogs", "/api/v1/contents/news", "/api/v1/contents/blogs/a",
			"/api/v1/contents/blogs/b", "/api/v1/contents/blogs/a/status", "/api/v1/media", "/api/v1/members/m"}
	}
	var out []ast.Value
	for _, k := range keys {
		for _, svc := range services {
			for _, q := range queries {
				for _, m := range methods {
					for _, p := range paths {
						for _, ip := range clientIPs {
							in, _ := inputOf(question{API: api, Service: svc, Key: k, Method: m, Path: p, Query: q})
							if ip != "" {
								req := in.(ast.Object).Get(ast.StringTerm("request")).Value.(ast.Object)
								req.Insert(ast.StringTerm("clientIp"), ast.StringTerm(ip))
							}
							out = append(out, in)
						}
					}
				}
			}
		}
	}
	return out
}

// TestProjectionOnTheCorpus: on the 4,000 corpus questions with a random part of each varied
// outside the projection (another content id, another query parameter), the decision is the
// same.
func TestProjectionOnTheCorpus(t *testing.T) {
	set, eval := loadSet(t)
	rng := rand.New(rand.NewPCG(3, 4))
	compared := 0
	cases := readCorpus(t)
	for i, c := range cases {
		ep := engine.Content
		if c.Question.API == "management" {
			ep = engine.Management
		}
		a, _ := inputOf(c.Question)
		b := varyOutside(t, a, rng)
		paths := set.Projection(ep).Steps()
		if projectionKey(a, paths) != projectionKey(b, paths) {
			continue // the variation touched a path read; nothing to compare
		}
		compared++
		if da, db := eval(ep, a), eval(ep, b); da != db {
			t.Fatalf("case %d: inputs equal on the projection, decisions differ:\n  %v -> %s\n  %v -> %s", i, a, da, b, db)
		}
	}
	if compared < len(cases)/3 {
		t.Fatalf("only %d of %d varied questions kept their projection", compared, len(cases))
	}
	t.Logf("%d of %d varied questions compared", compared, len(cases))
}

// varyOutside changes a copy of in: the content id (and the path with it), a query parameter
// other than draftKey, or the key's id and name (which the projection covers: input.key).
func varyOutside(t *testing.T, in ast.Value, rng *rand.Rand) ast.Value {
	t.Helper()
	var doc map[string]any
	v, err := ast.JSON(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	req := doc["request"].(map[string]any)
	switch rng.IntN(3) {
	case 0:
		if id, _ := req["contentId"].(string); id != "" {
			req["contentId"] = id + "x"
			req["path"] = req["path"].(string) + "x"
		}
	case 1:
		req["query"].(map[string]any)["limit"] = fmt.Sprint(rng.IntN(100))
	default:
		if k, ok := doc["key"].(map[string]any); ok {
			k["id"], k["name"] = "another", "another"
		}
	}
	return ast.MustInterfaceToValue(doc)
}
