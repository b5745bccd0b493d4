package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/keygate/keygate/internal/authz"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/server"
)

// bodyRoute is how the route table test sends a body to one route: a body
// the route accepts (2xx) with "%s" inside a string that reaches the store
// (or the decision), the token, and the values of the path's parameters.
type bodyRoute struct {
	body, token string
	params      map[string]string
}

// bodyRoutes lists, by method and path as the router registers them, every
// route that can take a body: either how to send it one, or (readsNone) why
// it reads none. A route the router has and this table lacks fails
// TestEveryBodyIsStrict.
var bodyRoutes = map[string]bodyRoute{
	"POST /v1/decide": {body: `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key","headers":{"Accept":"a%s"}}`},
	"POST /v1/services/:service/keys": {body: `{"name":"n%s","contentApi":{"default":{"get":true}}}`,
		token: "team-demo-admin-token", params: map[string]string{"service": "team-demo"}},
	"PUT /v1/services/:service/keys/:id": {body: `{"name":"n%s","contentApi":{"default":{"get":true}}}`,
		token: "team-demo-admin-token", params: map[string]string{"service": "team-demo", "id": "team-demo-read"}},
	"PUT /v1/services/:service/ip-restrictions": {body: `{"default":["203.0.113.0/24"],"apis":{"blogs":["198.51.100.7%s"]}}`,
		token: "business-demo-admin-token", params: map[string]string{"service": "business-demo"}},
	"POST /v1/services/:service/legacy-keys": {body: `{"keys":[{"header":"X-API-KEY","value":"old-read-key-0000000000000001","name":"old%s"}]}`,
		token: "business-demo-admin-token", params: map[string]string{"service": "business-demo"}},
}

// readsNone are the routes that take a method with a body and read none.
var readsNone = map[string]string{
	"POST /v1/services/:service/keys/:id/rotate": "a rotation is named by its path",
	"POST /v1/policies/reload":                   "a reload is named by its path",
	"/v1/forward-auth":                           "forward-auth reads the proxied request's headers",
	"/v1/forward-auth/*rest":                     "forward-auth reads the proxied request's headers",
}

func takesBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

func routeTarget(path string, params map[string]string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = params[p[1:]]
		}
	}
	return strings.Join(parts, "/")
}

// serveBody sends body to method target with the token.
func serveBody(h http.Handler, method, target, token string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// mutations of a route's base body, each refused with its status and code
// before anything reaches a store.
func bodyMutations(t *testing.T, base string, maxBody int) []struct {
	note   string
	body   []byte
	status int
	code   string
} {
	t.Helper()
	valid := fmt.Sprintf(base, "")
	// The first member again, its name in upper case: encoding/json would
	// take either for the same field.
	dec := json.NewDecoder(strings.NewReader(valid))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	first, err := dec.Token()
	if err != nil {
		t.Fatal(err)
	}
	var firstValue json.RawMessage
	if err := dec.Decode(&firstValue); err != nil {
		t.Fatal(err)
	}
	prefixed := func(member string) []byte { return []byte("{" + member + "," + valid[1:]) }
	return []struct {
		note   string
		body   []byte
		status int
		code   string
	}{
		{"a member twice", prefixed(fmt.Sprintf("%q:%s", strings.ToUpper(first.(string)), firstValue)), 400, "duplicate_field"},
		{"nested too deep", prefixed(`"x":` + strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)), 400, "body_too_complex"},
		{"too many elements", prefixed(`"x":[` + strings.Repeat("0,", 5000) + `0]`), 400, "body_too_complex"},
		{"too many members in an object", prefixed(`"x":` + manyMembers(5000)), 400, "body_too_complex"},
		{"over the size limit", append([]byte(valid), bytes.Repeat([]byte(" "), maxBody)...), 413, "body_too_large"},
		{"invalid UTF-8", []byte(fmt.Sprintf(base, "\xff")), 400, "invalid_field"},
		{"a NUL", []byte(fmt.Sprintf(base, `\u0000`)), 400, "invalid_field"},
		{"a lone surrogate", []byte(fmt.Sprintf(base, `\ud800`)), 400, "invalid_field"},
		{"an unknown field", prefixed(`"x":1`), 400, "unknown_field"},
		{"trailing data", []byte(valid + `{}`), 400, "invalid_json"},
	}
}

// openStoreDeps is openDeps with IP restrictions decided, on the state file
// or, with postgres set, on that database.
func openStoreDeps(t *testing.T, pgURL string) (*engine.Engine, *keystore.Store) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	eng, err := engine.New(t.Context(), "../../policies", engine.Options{Timeout: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	opts := keystore.Options{DataDir: copyTree(t, "../../data"), Authorizer: &keystoretest.Authorizer{}, Network: authz.New(eng), Logger: quiet}
	var store *keystore.Store
	if pgURL != "" {
		store, err = keystore.New(t.Context(), postgres.New(pgURL, postgres.Options{}), opts)
	} else {
		store, err = keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return eng, store
}

// storeState is what a refused body must leave as it was: every service's
// keys (with revisions), IP restriction settings and audit trail.
func storeState(t *testing.T, store *keystore.Store) string {
	t.Helper()
	var b strings.Builder
	for _, svc := range []string{"team-demo", "business-demo"} {
		keys, err := store.ListKeys(t.Context(), svc+"-admin-token", svc)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := store.GetIPRestrictions(t.Context(), svc+"-admin-token", svc)
		if err != nil && svc == "business-demo" {
			t.Fatal(err)
		}
		audit, err := store.Audit(t.Context(), svc+"-admin-token", svc, keystore.AuditQuery{Limit: keystore.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal([]any{keys, ip, len(audit.Entries)})
		b.Write(j)
	}
	return b.String()
}

// TestEveryBodyIsStrict is the class test of the strict decoder: every route
// the router has that can take a body is listed (a new one fails here until
// it is), and on each a member named twice, nesting 10,000 deep, 60,000
// members, a body over the limit, invalid UTF-8, a NUL, a lone surrogate, an
// unknown field and trailing data are refused with their 4xx, and nothing
// in the store changes. The valid body is accepted first, so each refusal is
// the mutation's.
func TestEveryBodyIsStrict(t *testing.T) {
	eng, store := openStoreDeps(t, "")
	const maxBody = 64 << 10
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts),
		server.Options{MaxBodyBytes: maxBody, Logger: slog.New(slog.DiscardHandler)}).Handler()
	engine, ok := h.(*gin.Engine)
	if !ok {
		t.Fatalf("the handler is a %T, not the gin engine", h)
	}
	tested := 0
	for _, r := range engine.Routes() {
		if !takesBody(r.Method) {
			continue
		}
		name := r.Method + " " + r.Path
		if _, ok := readsNone[name]; ok {
			continue
		}
		if _, ok := readsNone[r.Path]; ok {
			continue
		}
		rt, ok := bodyRoutes[name]
		if !ok {
			t.Errorf("%s takes a body and is not in bodyRoutes (or readsNone): add it", name)
			continue
		}
		tested++
		t.Run(name, func(t *testing.T) {
			target := routeTarget(r.Path, rt.params)
			if rec := serveBody(h, r.Method, target, rt.token, []byte(fmt.Sprintf(rt.body, ""))); rec.Code >= 300 {
				t.Fatalf("the valid body: %d %s", rec.Code, rec.Body)
			}
			before := storeState(t, store)
			for _, m := range bodyMutations(t, rt.body, maxBody) {
				rec := serveBody(h, r.Method, target, rt.token, m.body)
				var p server.Problem
				_ = json.Unmarshal(rec.Body.Bytes(), &p)
				if rec.Code != m.status || p.Code != m.code {
					t.Errorf("%s: got %d %.300s, want %d %s", m.note, rec.Code, rec.Body, m.status, m.code)
				}
				if rec.Body.Len() > 1024 {
					t.Errorf("%s: a refusal of %d bytes", m.note, rec.Body.Len())
				}
			}
			if after := storeState(t, store); after != before {
				t.Errorf("refused bodies changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if tested != len(bodyRoutes) {
		t.Errorf("tested %d routes of %d in bodyRoutes: a listed route is gone", tested, len(bodyRoutes))
	}
}

// TestOnlyDecodeBodyReadsBodies: no handler of the package reads a request
// body but through decodeBody (decode.go): the route table test covers the
// routes there are, this the way a new one would read its body.
func TestOnlyDecodeBodyReadsBodies(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "decode.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, banned := range []string{"Request.Body", "ShouldBind", "BindJSON", "GetRawData", ".Bind(", "GetBody"} {
			if bytes.Contains(src, []byte(banned)) {
				t.Errorf("%s uses %s: read request bodies with decodeBody", f, banned)
			}
		}
	}
}

// manyMembers is an object of n distinct members.
func manyMembers(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"m%d":0`, i)
	}
	b.WriteByte('}')
	return b.String()
}

// TestHostileBodiesCostLittle: the two bodies a quadratic scan choked on (1
// MB of objects nested 10,000 deep: 4.7 GB and 20-31 s; one object of
// 60,000 members: 6 s of CPU), sent without a token to key create, are
// refused at once with 400 body_too_complex, the handler allocating a few
// times the body's size.
func TestHostileBodiesCostLittle(t *testing.T) {
	h := newFixture(t, server.Options{})
	name := strings.Repeat("n", 94)
	for _, tc := range []struct {
		note string
		body []byte
	}{
		{"1 MB nested 10,000 deep", []byte(strings.Repeat(`{"`+name+`":`, 10_000) + "1" + strings.Repeat("}", 10_000))},
		{"60,000 members", []byte(manyMembers(60_000))},
	} {
		t.Run(tc.note, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/services/team-demo/keys", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			h.ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"code":"body_too_complex"`) {
				t.Fatalf("got %d %s, want 400 body_too_complex", rec.Code, rec.Body)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
				t.Errorf("the refusal of %d bytes allocated %d MB", len(tc.body), n>>20)
			}
		})
	}
}

// TestIPRestrictionAPINameMessageSaysWhatIsAccepted: an API name in upper
// case is refused, and the refusal lists only what is accepted (it listed
// A-Z).
func TestIPRestrictionAPINameMessageSaysWhatIsAccepted(t *testing.T) {
	eng, store := openStoreDeps(t, "")
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
	rec := serveBody(h, http.MethodPut, "/v1/services/business-demo/ip-restrictions", "business-demo-admin-token",
		[]byte(`{"default":[],"apis":{"Blogs":["203.0.113.0/24"]}}`))
	var p server.Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusBadRequest || !strings.Contains(p.Detail, "a-z 0-9 _ -") || strings.Contains(p.Detail, "A-Z") {
		t.Fatalf("got %d %s, want 400 saying a-z 0-9 _ - only", rec.Code, rec.Body)
	}
}
