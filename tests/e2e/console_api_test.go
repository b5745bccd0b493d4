package e2e

import (
	"net/http"
	"slices"
	"testing"
)

// The API the console is a client of, end to end and validated against the
// OpenAPI document by the tests' client: GET /v1/me, the key list's count
// and limit, and dry runs of key writes and IP restriction writes.

// meReply is the answer of GET /v1/me.
type meReply struct {
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

// keyListReply is the answer of GET …/keys.
type keyListReply struct {
	Keys  []apiKey `json:"keys"`
	Count int      `json:"count"`
	Limit int      `json:"limit"`
}

// dryRunReply is the answer of a key write with ?dryRun=true.
type dryRunReply struct {
	Key      apiKey    `json:"key"`
	Warnings []warning `json:"warnings"`
	DryRun   bool      `json:"dryRun"`
	Secret   *string   `json:"secret"`
}

var demoAPIs = []string{"blogs", "news", "contact", "categories"}

// TestMe: /v1/me names the member behind the token, its service, plan,
// role, key count against the plan's limit and the service's APIs (from
// data/services.json); an unknown or missing token is a 401.
func TestMe(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		note, token  string
		status       int
		member, role string
	}{
		{"admin", adminToken("team-demo"), http.StatusOK, "team-demo-admin", "admin"},
		{"editor", editorToken("team-demo"), http.StatusOK, "team-demo-editor", "editor"},
		{"unknown token", "nobody-token", http.StatusUnauthorized, "", ""},
	} {
		t.Run(tc.note, func(t *testing.T) {
			r := f.do(t, http.MethodGet, "/v1/me", nil, bearer(tc.token)...)
			if tc.status != http.StatusOK {
				r.problem(t, tc.status, "unauthenticated")
				if r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("GET /v1/me: %s", r)
			}
			var me meReply
			r.decode(t, &me)
			if me.Member != tc.member || len(me.Services) != 1 {
				t.Fatalf("GET /v1/me: %s", r.body)
			}
			s := me.Services[0]
			if s.ID != "team-demo" || s.Plan != "team" || s.Role != tc.role || s.Keys.Count != 1 || s.Keys.Limit != 3 || !slices.Equal(s.APIs, demoAPIs) {
				t.Errorf("GET /v1/me: service %+v, want team-demo team %s 1/3 %v", s, tc.role, demoAPIs)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
		})
	}
	if r := f.do(t, http.MethodGet, "/v1/me", nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/me without a token: %s", r)
	}
	if r := f.do(t, http.MethodHead, "/v1/me", nil, bearer(adminToken("team-demo"))...); r.status != http.StatusOK || len(r.body) != 0 {
		t.Errorf("HEAD /v1/me: %s", r)
	}
	if r := f.do(t, http.MethodHead, "/v1/me", nil, bearer("nobody-token")...); r.status != http.StatusUnauthorized {
		t.Errorf("HEAD /v1/me, unknown token: %s", r)
	}
}

// TestKeyListCount: the key list carries the service's key count and the
// plan's limit, and the count follows creates and deletes.
func TestKeyListCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	list := func() keyListReply {
		t.Helper()
		r := f.do(t, http.MethodGet, keysPath("business-demo"), nil, bearer(adminToken("business-demo"))...)
		var l keyListReply
		r.decode(t, &l)
		if l.Count != len(l.Keys) {
			t.Fatalf("count %d for %d keys", l.Count, len(l.Keys))
		}
		return l
	}
	before := list()
	if before.Limit != 10 {
		t.Fatalf("business limit %d, want 10", before.Limit)
	}
	c := f.createKey(t, "business-demo", keySpec("counted", perms{"get": true}, nil, nil))
	if l := list(); l.Count != before.Count+1 || l.Limit != 10 {
		t.Errorf("after a create: %d/%d, want %d/10", l.Count, l.Limit, before.Count+1)
	}
	if r := f.do(t, http.MethodDelete, keysPath("business-demo", c.Key.ID), nil, bearer(adminToken("business-demo"))...); r.status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	if l := list(); l.Count != before.Count {
		t.Errorf("after a delete: %d, want %d", l.Count, before.Count)
	}
	if r := f.do(t, http.MethodHead, keysPath("business-demo"), nil, bearer(adminToken("business-demo"))...); r.status != http.StatusOK {
		t.Errorf("HEAD list: %s", r)
	}
	f.do(t, http.MethodGet, keysPath("business-demo"), nil, bearer(editorToken("business-demo"))...).problem(t, http.StatusForbidden, "forbidden")
}

// TestKeyDryRun: ?dryRun=true on create and update answers as the write
// would (the advice, the refusals) with nothing written, audited or
// counted; the real create then succeeds at the plan's limit, where a dry
// run is refused as the create would be.
func TestKeyDryRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "hobby-demo" // limit 1, no keys
	admin, editor := bearer(adminToken(svc)), bearer(editorToken(svc))
	state := func() (keyListReply, string) {
		t.Helper()
		r := f.do(t, http.MethodGet, keysPath(svc), nil, admin...)
		var l keyListReply
		r.decode(t, &l)
		a := f.do(t, http.MethodGet, "/v1/services/"+svc+"/audit", nil, admin...)
		if a.status != http.StatusOK {
			t.Fatalf("audit: %s", a)
		}
		return l, string(r.body) + string(a.body)
	}
	l0, before := state()
	if l0.Count != 0 || l0.Limit != 1 {
		t.Fatalf("hobby-demo %d/%d, want 0/1", l0.Count, l0.Limit)
	}
	everywhere := keySpec("everywhere", perms{"get": true, "delete": true}, nil, nil)
	typo := keySpec("typo", perms{"get": true}, map[string]perms{"blgos": {"get": true}}, nil)
	for _, tc := range []struct {
		note    string
		query   string
		header  []string
		spec    any
		status  int
		code    string
		warning string
	}{
		{"allowed, with advice", "?dryRun=true", admin, everywhere, http.StatusCreated, "", "default_write"},
		{"an API the service does not list", "?dryRun=true", admin, typo, http.StatusCreated, "", "unlisted_api"},
		{"violation", "?dryRun=true", admin, keySpec("bad", perms{"getAllDrafts": true}, nil, nil), http.StatusUnprocessableEntity, "invalid_key_config", ""},
		{"editor", "?dryRun=true", editor, everywhere, http.StatusForbidden, "forbidden", ""},
		{"unknown token", "?dryRun=true", bearer("nobody-token"), everywhere, http.StatusUnauthorized, "unauthenticated", ""},
		{"bad dryRun value", "?dryRun=yes", admin, everywhere, http.StatusBadRequest, "invalid_query", ""},
	} {
		t.Run(tc.note, func(t *testing.T) {
			r := f.do(t, http.MethodPost, keysPath(svc)+tc.query, tc.spec, tc.header...)
			if tc.code != "" {
				r.problem(t, tc.status, tc.code)
				return
			}
			if r.status != tc.status {
				t.Fatalf("dry-run create: %s", r)
			}
			var d dryRunReply
			r.decode(t, &d)
			if !d.DryRun || d.Secret != nil || d.Key.ID != "" || d.Key.Service != svc {
				t.Errorf("dry-run create answered %s", r.body)
			}
			if !slices.Contains(warningCodes(d.Warnings), tc.warning) {
				t.Errorf("warnings %v lack %s", warningCodes(d.Warnings), tc.warning)
			}
		})
	}
	if l, after := state(); after != before || l.Count != 0 {
		t.Fatalf("dry runs wrote something:\nbefore %s\nafter  %s", before, after)
	}

	// The real create at the limit's edge: the last key the plan allows.
	c := f.createKey(t, svc, keySpec("only", perms{"get": true}, nil, nil))
	l1, atLimit := state()
	if l1.Count != 1 || l1.Limit != 1 {
		t.Fatalf("after the create: %d/%d, want 1/1", l1.Count, l1.Limit)
	}
	f.do(t, http.MethodPost, keysPath(svc)+"?dryRun=true", everywhere, admin...).problem(t, http.StatusConflict, "key_limit_exceeded")
	r := f.do(t, http.MethodPut, keysPath(svc, c.Key.ID)+"?dryRun=true", keySpec("renamed", perms{"get": true}, nil, nil), admin...)
	if r.status != http.StatusOK {
		t.Fatalf("dry-run update: %s", r)
	}
	var d dryRunReply
	r.decode(t, &d)
	if !d.DryRun || d.Key.ID != c.Key.ID || d.Key.Name != "renamed" || d.Key.Revision != c.Key.Revision+1 {
		t.Errorf("dry-run update answered %s", r.body)
	}
	f.do(t, http.MethodPut, keysPath(svc, c.Key.ID)+"?dryRun=true", keySpec("bad", perms{"getAllClosed": true}, nil, nil), admin...).
		problem(t, http.StatusUnprocessableEntity, "invalid_key_config")
	f.do(t, http.MethodPut, keysPath(svc, "key_missing")+"?dryRun=true", keySpec("x", perms{"get": true}, nil, nil), admin...).
		problem(t, http.StatusNotFound, "key_not_found")
	f.do(t, http.MethodPut, keysPath(svc, c.Key.ID)+"?dryRun=maybe", keySpec("x", perms{"get": true}, nil, nil), admin...).
		problem(t, http.StatusBadRequest, "invalid_query")
	if _, after := state(); after != atLimit {
		t.Errorf("dry runs at the limit wrote something:\nbefore %s\nafter  %s", atLimit, after)
	}
	f.do(t, http.MethodPost, keysPath(svc), everywhere, admin...).problem(t, http.StatusConflict, "key_limit_exceeded")
}

// TestIPRestrictionsDryRun: PUT ip-restrictions?dryRun=true answers the
// write's decision (allowed on business, refused on team for its plan)
// with nothing written or audited.
func TestIPRestrictionsDryRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	setting := map[string]any{"default": []string{"203.0.113.0/24"}, "apis": map[string]any{"blogs": []string{"198.51.100.7"}}}
	state := func(svc string) string {
		t.Helper()
		r := f.do(t, http.MethodGet, "/v1/services/"+svc+"/ip-restrictions", nil, bearer(adminToken(svc))...)
		a := f.do(t, http.MethodGet, "/v1/services/"+svc+"/audit", nil, bearer(adminToken(svc))...)
		if r.status != http.StatusOK || a.status != http.StatusOK {
			t.Fatalf("state of %s: %s / %s", svc, r, a)
		}
		return string(r.body) + string(a.body)
	}
	before := map[string]string{"business-demo": state("business-demo"), "team-demo": state("team-demo")}
	path := func(svc, q string) string { return "/v1/services/" + svc + "/ip-restrictions" + q }
	r := f.do(t, http.MethodPut, path("business-demo", "?dryRun=true"), setting, bearer(adminToken("business-demo"))...)
	var got struct {
		Default []string            `json:"default"`
		APIs    map[string][]string `json:"apis"`
	}
	r.decode(t, &got)
	if r.status != http.StatusOK || !slices.Equal(got.Default, []string{"203.0.113.0/24"}) || !slices.Equal(got.APIs["blogs"], []string{"198.51.100.7"}) {
		t.Errorf("dry run on business: %s", r)
	}
	f.do(t, http.MethodPut, path("team-demo", "?dryRun=true"), setting, bearer(adminToken("team-demo"))...).problem(t, http.StatusForbidden, "plan_feature_unavailable")
	f.do(t, http.MethodPut, path("business-demo", "?dryRun=true"), setting, bearer(editorToken("business-demo"))...).problem(t, http.StatusForbidden, "forbidden")
	f.do(t, http.MethodPut, path("business-demo", "?dryRun=true"), map[string]any{"default": []string{"nope"}}, bearer(adminToken("business-demo"))...).
		problem(t, http.StatusUnprocessableEntity, "invalid_ip_entry")
	f.do(t, http.MethodPut, path("business-demo", "?dryRun=1"), setting, bearer(adminToken("business-demo"))...).problem(t, http.StatusBadRequest, "invalid_query")
	for svc, b := range before {
		if after := state(svc); after != b {
			t.Errorf("%s: dry runs wrote something:\nbefore %s\nafter  %s", svc, b, after)
		}
	}
}

// TestConsoleRoutes: the console's routes answer as the OpenAPI document
// describes them: /console redirects relatively, the page and its assets
// with their types, a missing asset 404.
func TestConsoleRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	noFollow := &http.Client{Transport: client.Transport, Timeout: client.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, err := http.NewRequestWithContext(t.Context(), method, f.URL+"/console", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "console/" {
			t.Errorf("%s /console: %d Location %q, want 301 console/", method, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{http.MethodGet, "/console/", http.StatusOK, "text/html; charset=utf-8"},
		{http.MethodHead, "/console/", http.StatusOK, "text/html; charset=utf-8"},
		{http.MethodGet, "/console/services/team-demo/keys", http.StatusOK, "text/html; charset=utf-8"},
		{http.MethodGet, "/console/app.js", http.StatusOK, "text/javascript; charset=utf-8"},
		{http.MethodGet, "/console/app.css", http.StatusOK, "text/css; charset=utf-8"},
		{http.MethodGet, "/console/nope.js", http.StatusNotFound, "text/plain; charset=utf-8"},
	} {
		r := f.do(t, tc.method, tc.path, nil)
		if r.status != tc.status || r.header.Get("Content-Type") != tc.typ {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, r.status, r.header.Get("Content-Type"), tc.status, tc.typ)
		}
	}
}

// TestKeyRoutesRefuseUnstorableText: every key-management route refuses a
// path or query a store could not keep with the documented 400.
func TestKeyRoutesRefuseUnstorableText(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin := bearer(adminToken("business-demo"))
	for _, tc := range []struct{ path, code string }{
		{"/v1/services/business-demo/keys/key%00x", "invalid_path"},
		{"/v1/services/business-demo/keys?x=%00", "invalid_query"},
		{"/v1/services/business-demo/keys?x=%zz", "invalid_query"},
		{"/v1/services/business-demo/ip-restrictions?x=%ff", "invalid_query"},
	} {
		f.do(t, http.MethodGet, tc.path, nil, admin...).problem(t, http.StatusBadRequest, tc.code)
	}
}
