package server_test

import (
	"encoding/json"
	"github.com/keygate/keygate/internal/keystore/local"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/console"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

func call(t *testing.T, h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type meAnswer struct {
	Member   string `json:"member"`
	Services []struct {
		ID   string `json:"id"`
		Plan string `json:"plan"`
		Role string `json:"role"`
		Keys struct {
			Count int `json:"count"`
			Limit int `json:"limit"`
		} `json:"keys"`
		APIs []string `json:"apis"`
	} `json:"services"`
}

// TestMe: /v1/me names the member behind the token with its service, plan,
// role and key count against the plan's limit; an unknown or missing token
// is a 401 that says nothing more.
func TestMe(t *testing.T) {
	h := newFixture(t, server.Options{})
	for _, tc := range []struct {
		note, token       string
		status            int
		member, svc, plan string
		role              string
		count, limit      int
	}{
		{note: "team admin", token: "team-demo-admin-token", status: 200, member: "team-demo-admin", svc: "team-demo", plan: "team", role: "admin", count: 1, limit: 3},
		{note: "team editor", token: "team-demo-editor-token", status: 200, member: "team-demo-editor", svc: "team-demo", plan: "team", role: "editor", count: 1, limit: 3},
		{note: "hobby admin", token: "hobby-demo-admin-token", status: 200, member: "hobby-demo-admin", svc: "hobby-demo", plan: "hobby", role: "admin", count: 0, limit: 1},
		{note: "enterprise", token: "enterprise-demo-admin-token", status: 200, member: "enterprise-demo-admin", svc: "enterprise-demo", plan: "enterprise", role: "admin", count: 0, limit: 20},
		{note: "unknown token", token: "nobody", status: 401},
		{note: "no token", status: 401},
		{note: "an API key is not a member token", token: "team-demo-read-key", status: 401},
	} {
		t.Run(tc.note, func(t *testing.T) {
			rec := call(t, h, "GET", "/v1/me", tc.token, "")
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != 200 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				if strings.Contains(rec.Body.String(), "team-demo") {
					t.Errorf("a refusal names a service: %s", rec.Body)
				}
				return
			}
			var me meAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &me); err != nil {
				t.Fatal(err)
			}
			if me.Member != tc.member || len(me.Services) != 1 {
				t.Fatalf("answer %s", rec.Body)
			}
			s := me.Services[0]
			if s.ID != tc.svc || s.Plan != tc.plan || s.Role != tc.role || s.Keys.Count != tc.count || s.Keys.Limit != tc.limit ||
				strings.Join(s.APIs, ",") != "blogs,news,contact,categories" {
				t.Errorf("service %+v, want %s %s %s %d/%d", s, tc.svc, tc.plan, tc.role, tc.count, tc.limit)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		})
	}
}

// TestLimitFromPlanData: the limit comes from the plan data the keys policy
// reads (policies/plans/data.json), not from a constant.
func TestLimitFromPlanData(t *testing.T) {
	policies := copyTree(t, "../../policies")
	plans := filepath.Join(policies, "plans", "data.json")
	b, err := os.ReadFile(plans)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"team": {"maxKeys": 3`, `"team": {"maxKeys": 7`, 1)
	if edited == string(b) {
		t.Fatal("plans/data.json changed shape; update the test")
	}
	if err := os.WriteFile(plans, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, store := openDeps(t, policies, copyTree(t, "../../data"))
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{}).Handler()
	var me meAnswer
	rec := call(t, h, "GET", "/v1/me", "team-demo-admin-token", "")
	_ = json.Unmarshal(rec.Body.Bytes(), &me)
	if len(me.Services) != 1 || me.Services[0].Keys.Limit != 7 {
		t.Errorf("/v1/me: %s", rec.Body)
	}
	var list struct{ Count, Limit int }
	rec = call(t, h, "GET", "/v1/services/team-demo/keys", "team-demo-admin-token", "")
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if list.Count != 1 || list.Limit != 7 {
		t.Errorf("key list: %s", rec.Body)
	}
}

// TestKeyListCountAndLimit: the list carries count and limit, and the count
// follows creates.
func TestKeyListCountAndLimit(t *testing.T) {
	h := newFixture(t, server.Options{})
	type list struct {
		Keys         []json.RawMessage
		Count, Limit int
	}
	read := func() list {
		rec := call(t, h, "GET", "/v1/services/business-demo/keys", "business-demo-admin-token", "")
		if rec.Code != 200 {
			t.Fatalf("list: %d %s", rec.Code, rec.Body)
		}
		var l list
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := read(); l.Count != 0 || l.Limit != 10 || len(l.Keys) != 0 {
		t.Fatalf("empty: %+v", l)
	}
	if rec := call(t, h, "POST", "/v1/services/business-demo/keys", "business-demo-admin-token", `{"name":"a"}`); rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	if l := read(); l.Count != 1 || l.Limit != 10 || len(l.Keys) != 1 {
		t.Errorf("after a create: %+v", l)
	}
}

// TestDryRun: ?dryRun=true answers a create or update as the write would,
// with the same refusals, and writes, counts and audits nothing.
func TestDryRun(t *testing.T) {
	h := newFixture(t, server.Options{})
	const admin, editor = "hobby-demo-admin-token", "hobby-demo-editor-token"
	keys := "/v1/services/hobby-demo/keys"
	state := func() string {
		l := call(t, h, "GET", keys, admin, "")
		a := call(t, h, "GET", "/v1/services/hobby-demo/audit", admin, "")
		return l.Body.String() + a.Body.String()
	}
	before := state()
	for _, tc := range []struct {
		note, token, path, body string
		status                  int
		code                    string
		warning                 string
	}{
		{note: "allowed create", token: admin, path: keys + "?dryRun=true", body: `{"name":"web","contentApi":{"default":{"get":true,"delete":true}}}`, status: 201, warning: "default_write"},
		{note: "violation", token: admin, path: keys + "?dryRun=true", body: `{"name":"web","contentApi":{"default":{"getAllDrafts":true}}}`, status: 422, code: "invalid_key_config"},
		{note: "editor", token: editor, path: keys + "?dryRun=true", body: `{"name":"web"}`, status: 403, code: "forbidden"},
		{note: "unknown token", token: "nobody", path: keys + "?dryRun=true", body: `{"name":"web"}`, status: 401, code: "unauthenticated"},
		{note: "no name", token: admin, path: keys + "?dryRun=true", body: `{"name":""}`, status: 400, code: "invalid_field"},
		{note: "unknown field", token: admin, path: keys + "?dryRun=true", body: `{"name":"web","x":1}`, status: 400},
		{note: "bad dryRun value", token: admin, path: keys + "?dryRun=yes", body: `{"name":"web"}`, status: 400, code: "invalid_query"},
		{note: "update of a missing key", token: admin, path: keys + "/key_missing?dryRun=true", body: `{"name":"web"}`, status: 404},
	} {
		t.Run(tc.note, func(t *testing.T) {
			method := "POST"
			if strings.Contains(tc.path, "/key_") {
				method = "PUT"
			}
			rec := call(t, h, method, tc.path, tc.token, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) {
				t.Errorf("body %s lacks code %s", rec.Body, tc.code)
			}
			if tc.status == 201 {
				var b map[string]json.RawMessage
				_ = json.Unmarshal(rec.Body.Bytes(), &b)
				if _, has := b["secret"]; has {
					t.Errorf("a dry run answered a secret: %s", rec.Body)
				}
				if string(b["dryRun"]) != "true" || !strings.Contains(string(b["warnings"]), `"code":"`+tc.warning+`"`) {
					t.Errorf("body %s", rec.Body)
				}
			}
		})
	}
	if after := state(); after != before {
		t.Errorf("dry runs changed the store or the audit trail:\n%s\n%s", before, after)
	}
	// The plan limit: hobby allows one key; with it taken, a dry-run create
	// is refused as the create would be, and a dry-run update still works.
	rec := call(t, h, "POST", keys, admin, `{"name":"only"}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		Key struct{ ID string }
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &created)
	if rec := call(t, h, "POST", keys+"?dryRun=true", admin, `{"name":"second"}`); rec.Code != 409 {
		t.Errorf("dry-run create at the limit: %d %s", rec.Code, rec.Body)
	}
	before = state()
	rec = call(t, h, "PUT", keys+"/"+created.Key.ID+"?dryRun=true", admin, `{"name":"renamed","contentApi":{"default":{"get":true}}}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"name":"renamed"`) {
		t.Errorf("dry-run update: %d %s", rec.Code, rec.Body)
	}
	if after := state(); after != before {
		t.Errorf("a dry-run update changed the store or the audit trail")
	}
}

// TestConsoleMount: with a console handler /console/ serves it (deep links
// too, with its headers); without one, /console/ is a 404 like any unknown
// route, and the API is the same either way.
func TestConsoleMount(t *testing.T) {
	c, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	on := newFixture(t, server.Options{Console: c})
	off := newFixture(t, server.Options{})
	for _, path := range []string{"/console/", "/console/services/team-demo/keys", "/console/app.js"} {
		if rec := call(t, on, "GET", path, "", ""); rec.Code != 200 || rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("on: %s: %d, CSP %q", path, rec.Code, rec.Header().Get("Content-Security-Policy"))
		}
		if rec := call(t, off, "GET", path, "", ""); rec.Code != 404 {
			t.Errorf("off: %s: %d", path, rec.Code)
		}
	}
	if rec := call(t, on, "HEAD", "/console/", "", ""); rec.Code != 200 {
		t.Errorf("HEAD /console/: %d", rec.Code)
	}
	// /console redirects to its page relative to the address asked for,
	// so that a reverse proxy's path prefix stays (an absolute /console/
	// would drop it); the query is kept.
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/console", "console/"},
		{"HEAD", "/console", "console/"},
		{"GET", "/console?lang=ja", "console/?lang=ja"},
	} {
		rec := call(t, on, tc.method, tc.path, "", "")
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != tc.want {
			t.Errorf("%s %s: %d Location %q, want 301 %q", tc.method, tc.path, rec.Code, rec.Header().Get("Location"), tc.want)
		}
	}
	if rec := call(t, off, "GET", "/console", "", ""); rec.Code != 404 {
		t.Errorf("off: /console: %d", rec.Code)
	}
	for _, h := range []http.Handler{on, off} {
		if rec := call(t, h, "GET", "/v1/me", "team-demo-admin-token", ""); rec.Code != 200 {
			t.Errorf("/v1/me: %d", rec.Code)
		}
	}
}

// TestIPRestrictionsDryRun: PUT ip-restrictions?dryRun=true answers what
// the write would (the setting it would put in force, or its refusal: the
// plan without the feature, a non-admin, a bad entry) and writes and
// audits nothing.
func TestIPRestrictionsDryRun(t *testing.T) {
	h := newPolicyFixture(t)
	const setting = `{"default":["203.0.113.0/24"],"apis":{"blogs":["198.51.100.7"]}}`
	state := func(svc string) string {
		admin := svc + "-admin-token"
		ip := call(t, h, "GET", "/v1/services/"+svc+"/ip-restrictions", admin, "")
		a := call(t, h, "GET", "/v1/services/"+svc+"/audit", admin, "")
		return ip.Body.String() + a.Body.String()
	}
	before := map[string]string{"business-demo": state("business-demo"), "team-demo": state("team-demo")}
	for _, tc := range []struct {
		note, svc, token, query, body string
		status                        int
		code                          string
	}{
		{"allowed", "business-demo", "business-demo-admin-token", "?dryRun=true", setting, 200, ""},
		{"plan without the feature", "team-demo", "team-demo-admin-token", "?dryRun=true", setting, 403, "plan_feature_unavailable"},
		{"clearing on a plan without the feature", "team-demo", "team-demo-admin-token", "?dryRun=true", `{}`, 200, ""},
		{"editor", "business-demo", "business-demo-editor-token", "?dryRun=true", setting, 403, "forbidden"},
		{"unknown token", "business-demo", "nobody", "?dryRun=true", setting, 401, "unauthenticated"},
		{"bad entry", "business-demo", "business-demo-admin-token", "?dryRun=true", `{"default":["not-an-ip"]}`, 422, "invalid_ip_entry"},
		{"bad dryRun value", "business-demo", "business-demo-admin-token", "?dryRun=1", setting, 400, "invalid_query"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			rec := call(t, h, "PUT", "/v1/services/"+tc.svc+"/ip-restrictions"+tc.query, tc.token, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" && !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) {
				t.Errorf("body %s lacks code %s", rec.Body, tc.code)
			}
			if tc.status == 200 && tc.body == setting && !strings.Contains(rec.Body.String(), `"198.51.100.7"`) {
				t.Errorf("body %s is not the setting", rec.Body)
			}
		})
	}
	for svc, b := range before {
		if after := state(svc); after != b {
			t.Errorf("%s: dry runs changed the setting or the audit trail:\n%s\n%s", svc, b, after)
		}
	}
	// dryRun=false is the write.
	if rec := call(t, h, "PUT", "/v1/services/business-demo/ip-restrictions?dryRun=false", "business-demo-admin-token", setting); rec.Code != 200 {
		t.Fatalf("write: %d %s", rec.Code, rec.Body)
	}
	if after := state("business-demo"); after == before["business-demo"] {
		t.Error("the write changed nothing")
	}
}

// newPolicyFixture is newFixture with the key store authorized by the real
// keys and network policies (newFixture's store uses a Go stand-in).
func newPolicyFixture(t *testing.T) http.Handler {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	eng, err := engine.New(t.Context(), "../../policies", engine.Options{Timeout: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pol := authz.New(eng)
	store, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{
		DataDir: copyTree(t, "../../data"), Authorizer: pol, Network: pol, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet}).Handler()
}

// TestUnlistedAPIAdvice: the service's APIs from data/services.json reach
// the keys policy, whose advice names an individual permission for an API
// the service does not list; a listed one draws no such warning.
func TestUnlistedAPIAdvice(t *testing.T) {
	h := newPolicyFixture(t)
	for _, tc := range []struct {
		api  string
		want bool
	}{{"blgos", true}, {"blogs", false}, {"categories", false}} {
		t.Run(tc.api, func(t *testing.T) {
			rec := call(t, h, "POST", "/v1/services/team-demo/keys?dryRun=true", "team-demo-admin-token",
				`{"name":"web","contentApi":{"default":{"get":true},"individual":{"`+tc.api+`":{"get":true}}}}`)
			if rec.Code != 201 {
				t.Fatalf("dry run: %d %s", rec.Code, rec.Body)
			}
			var b struct {
				Warnings []struct{ Code, Endpoint string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			got := false
			for _, w := range b.Warnings {
				got = got || (w.Code == "unlisted_api" && w.Endpoint == tc.api)
			}
			if got != tc.want {
				t.Errorf("unlisted_api warning for %s: %v, want %v (%s)", tc.api, got, tc.want, rec.Body)
			}
		})
	}
}
