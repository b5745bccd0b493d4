package decision

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/open-policy-agent/opa/v1/ast"
)

// TestCacheKeyProjection: the decision cache key is the projection of the request input
// onto what the entrypoint reads — the same question always gets the same key, whatever the
// order of a JSON query object (Go's map order); questions that differ only where the policy does
// not look (the content id, other query parameters) share a key; and any difference where it
// looks (endpoint, kind, method, draftKey, the parameter names, key, service) does not.
func TestCacheKeyProjection(t *testing.T) {
	set, err := engine.Load(context.Background(), "../../policies", engine.DefaultEntrypoints())
	if err != nil {
		t.Fatal(err)
	}
	n := newNames()
	var secretA, secretB [32]byte
	secretB[0] = 1
	key := func(p *engine.Projection, r *Request, secret *[32]byte) []byte {
		v := newRequestView(r.api, r.method, r.path, r.clientIP, r.query)
		return appendCacheKey(nil, n, p, r, &v, secret != nil, secret)
	}
	content := set.Projection(engine.Content)
	base := Request{service: "team-demo", api: APIContent, method: "GET", path: "/api/v1/blogs/abc",
		query: [][2]string{{"a", "1"}, {"b", "2"}, {"draftKey", "x"}, {"c", "3"}}}
	want := key(content, &base, &secretA)

	t.Run("query order", func(t *testing.T) {
		// Body.request appends a JSON query object in map order: any permutation of
		// distinct names is the same question.
		m := map[string]string{"a": "1", "b": "2", "draftKey": "x", "c": "3", "d": "4", "e": "5"}
		var first []byte
		for range 50 {
			r := base
			r.query = nil
			for k, v := range m { // random order on every iteration
				r.query = append(r.query, [2]string{k, v})
			}
			got := key(content, &r, &secretA)
			if first == nil {
				first = got
			} else if !bytes.Equal(got, first) {
				t.Fatalf("query order %q changed the key", r.query)
			}
		}
		// The whole-input fallback keys on the whole request: canonical too.
		whole := &engine.Projection{Cacheable: true, Whole: true}
		r1, r2 := base, base
		r2.query = slices.Clone(base.query)
		slices.Reverse(r2.query)
		if !bytes.Equal(key(whole, &r1, &secretA), key(whole, &r2, &secretA)) {
			t.Error("whole input: query order changed the key")
		}
	})

	for _, tc := range []struct {
		note   string
		change func(r *Request)
		secret *[32]byte
		same   bool
	}{
		{"another content id", func(r *Request) { r.path = "/api/v1/blogs/other" }, &secretA, true},
		{"other query parameters", func(r *Request) { r.query = [][2]string{{"c", "9"}, {"draftKey", "x"}, {"b", "2"}, {"a", "0"}} }, &secretA, true},
		{"another draftKey value (read: the analysis keys on values)", func(r *Request) { r.query = [][2]string{{"a", "1"}, {"b", "2"}, {"draftKey", "y"}, {"c", "3"}} }, &secretA, false},
		{"another endpoint", func(r *Request) { r.path = "/api/v1/news/abc" }, &secretA, false},
		{"a list", func(r *Request) { r.path = "/api/v1/blogs" }, &secretA, false},
		{"another method", func(r *Request) { r.method = "HEAD" }, &secretA, false},
		{"no draftKey", func(r *Request) { r.query = [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}} }, &secretA, false},
		{"another parameter name", func(r *Request) { r.query = append(slices.Clone(r.query), [2]string{"Status", "x"}) }, &secretA, false},
		{"another secret", func(*Request) {}, &secretB, false},
		{"no secret", func(*Request) {}, nil, false},
		{"another service", func(r *Request) { r.service = "hobby-demo" }, &secretA, false},
		{"the management API", func(r *Request) { r.api = APIManagement }, &secretA, false},
	} {
		t.Run(tc.note, func(t *testing.T) {
			r := base
			r.query = slices.Clone(base.query)
			tc.change(&r)
			if got := key(content, &r, tc.secret); bytes.Equal(got, want) != tc.same {
				t.Errorf("same key = %v, want %v", !tc.same, tc.same)
			}
		})
	}
}

// TestFreshContentIDsHitTheCache: on the real policies, GETs of never-seen content ids of one
// endpoint are answered from the cache after the first, each with its own content id.
func TestFreshContentIDsHitTheCache(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	eng, err := engine.New(t.Context(), "../../policies", engine.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	st, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{
		DataDir: "../../data", Authorizer: &keystoretest.Authorizer{}, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := New(eng, st, Options{Logger: quiet})
	for i := range 20 {
		id := "c" + strconv.Itoa(i)
		d, _ := s.Decide(t.Context(), &Request{service: "team-demo", api: APIContent, method: "GET",
			path: "/api/v1/blogs/" + id, secret: "team-demo-read-key"})
		if d.ContentID != id || d.Status != 200 || d.KeyID != "team-demo-read" {
			t.Fatalf("request %d: contentId %q status %d key %q, want %q 200 team-demo-read", i, d.ContentID, d.Status, d.KeyID, id)
		}
	}
	if s.cache.cur.Load() == nil {
		t.Fatal("no cache table")
	}
	if got := countEntries(s.cache.cur.Load()); got != 1 {
		t.Errorf("%d cache entries for 20 content ids of one endpoint, want 1", got)
	}
}

func countEntries(tbl *cacheTable) int {
	n := 0
	for i := range tbl.shards {
		n += len(tbl.shards[i].idx)
	}
	return n
}

// TestRequestViewEncodesAsTheBuiltValue: for every path shape the view answers without
// building input.request, its encoding is exactly that of the value at the path in the built
// input (absent included), so the fast path and the fallback never key the same question
// differently.
func TestRequestViewEncodesAsTheBuiltValue(t *testing.T) {
	n := newNames()
	var paths [][]*ast.Term
	for _, p := range []string{
		"method", "path", "contentId", "query", "parameters", "route", "other",
		"method.x", "contentId.x", "query.draftKey", "query.limit", "query.missing", "query.draftKey.x",
		"parameters[0]", "route.endpoint", "route.kind", "route.pattern", "route.other", "route.endpoint.x",
		"clientIp", "clientIp.x",
	} {
		ref := ast.MustParseRef("input.request." + p)
		paths = append(paths, ref[2:])
	}
	paths = append(paths, ast.Ref{ast.IntNumberTerm(0)}, ast.Ref{n.query, ast.IntNumberTerm(1)})
	for _, r := range []Request{
		{api: APIContent, method: "GET", path: "/api/v1/blogs", query: [][2]string{{"limit", "10"}, {"draftKey", "a"}, {"draftKey", "b"}}},
		{api: APIContent, method: "GET", path: "/api/v1/blogs/abc"},
		{api: APIContent, method: "GET", path: "/api/v1/blogs/abc", clientIP: "203.0.113.7"},
		{api: APIContent, method: "POST", path: "/api/v1/Blogs", query: [][2]string{{"x", "1;status=d"}}},
		{api: APIManagement, method: "PATCH", path: "/api/v1/contents/blogs/abc/status"},
		{api: APIManagement, method: "GET", path: "/api/v1/media"},
		{api: APIManagement, method: "GET", path: "/api/v1/../media"},
	} {
		v := newRequestView(r.api, r.method, r.path, r.clientIP, r.query)
		built := v.value(n)
		// Every field the built value has, and every field of its route:
		// a field added to value() is checked without being listed above.
		all := slices.Clone(paths)
		built.Value.(ast.Object).Foreach(func(k, field *ast.Term) {
			all = append(all, ast.Ref{k})
			if obj, ok := field.Value.(ast.Object); ok {
				obj.Foreach(func(sub, _ *ast.Term) { all = append(all, ast.Ref{k, sub}) })
			}
		})
		for _, steps := range all {
			fast, ok := v.appendProjected(nil, steps)
			if !ok {
				continue
			}
			found, err := built.Value.Find(ast.Ref(steps))
			if err != nil {
				found = nil
			}
			if want := appendValue(nil, found); !bytes.Equal(fast, want) {
				t.Errorf("%s %s: request%v encodes as %q, the built value (%v) as %q", r.method, r.path, ast.Ref(steps), fast, found, want)
			}
		}
	}
}

// TestCacheKeyCoversEveryInputRoot: the decision cache key (appendCacheKey) holds
// input.request (projected, or whole), and fixes input.key and input.service through the
// secret's hash and the service id within a store generation; it skips every other root. So
// the policy input may have no other root: one added (a client address for IP rules, say)
// would be read by a policy but keyed by nothing, and one client's answer served to another.
// Add such a root to appendCacheKey first, then here.
func TestCacheKeyCoversEveryInputRoot(t *testing.T) {
	n := newNames()
	// Everything the server can put in an input: a client address and a
	// service with IP restrictions included.
	v := newRequestView(APIContent, "GET", "/api/v1/blogs/abc", "203.0.113.7", [][2]string{{"draftKey", "x"}})
	key := keystore.Key{ID: "k", Service: "team-demo", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
	svc := keystore.Service{ID: "team-demo", Plan: "business"}
	ipr := &keystore.IPRestrictions{Default: []string{"203.0.113.0/24"}, APIs: map[string][]string{"blogs": {"198.51.100.7"}}}
	in := requestInput(n, newServiceInputs().get(n, &svc, ipr, 1), keyValue(newPermTerms(), &key), v.value(n))
	covered := map[string]bool{"request": true, "key": true, "service": true}
	in.(ast.Object).Foreach(func(k, _ *ast.Term) {
		if s, ok := k.Value.(ast.String); !ok || !covered[string(s)] {
			t.Errorf("input.%v is not in the decision cache key", k)
		}
	})
}
