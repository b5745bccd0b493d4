package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestKeyAuth: every key-management call needs the bearer token of an admin
// of the same service — 401 (with WWW-Authenticate) without a valid token,
// 403 for an editor or another service's admin — and changes nothing.
func TestKeyAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	spec := keySpec("web", perms{"get": true}, nil, nil)
	ops := []struct {
		op, method, path string
		body             any
	}{
		{"create", http.MethodPost, keysPath("team-demo"), spec},
		{"list", http.MethodGet, keysPath("team-demo"), nil},
		{"get", http.MethodGet, keysPath("team-demo", "team-demo-read"), nil},
		{"update", http.MethodPut, keysPath("team-demo", "team-demo-read"), spec},
		{"rotate", http.MethodPost, keysPath("team-demo", "team-demo-read", "rotate"), nil},
		{"delete", http.MethodDelete, keysPath("team-demo", "team-demo-read"), nil},
	}
	callers := []struct {
		who    string
		header []string
		status int
		code   string
	}{
		{"no token", nil, 401, "unauthenticated"},
		{"unknown token", bearer("e2e-unknown-token-9b2d"), 401, "unauthenticated"},
		{"not a bearer token", []string{"Authorization", "Basic " + adminToken("team-demo")}, 401, "unauthenticated"},
		{"empty bearer", []string{"Authorization", "Bearer "}, 401, "unauthenticated"},
		{"editor", bearer(editorToken("team-demo")), 403, "forbidden"},
		{"admin of another service", bearer(adminToken("business-demo")), 403, "forbidden"},
	}
	before, _ := f.listKeys(t, "team-demo")
	t.Run("calls", func(t *testing.T) { // returns when its parallel subtests are done
		for _, op := range ops {
			for _, c := range callers {
				t.Run(op.op+"/"+c.who, func(t *testing.T) {
					t.Parallel()
					r := f.do(t, op.method, op.path, op.body, c.header...)
					r.problem(t, c.status, c.code)
					if c.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("401 without a Bearer WWW-Authenticate: %v", r.header)
					}
				})
			}
		}
	})
	after, _ := f.listKeys(t, "team-demo")
	if !slices.EqualFunc(before, after, sameKey) {
		t.Errorf("refused calls changed the keys:\nbefore %+v\nafter  %+v", before, after)
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow {
		t.Errorf("the demo key stopped working after refused calls: %+v", d)
	}
}

func sameKey(a, b apiKey) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Revision == b.Revision &&
		equalJSON(a.ContentAPI, b.ContentAPI) && equalJSON(a.ManagementAPI, b.ManagementAPI)
}

// TestKeyLifecycle: create (secret once, warnings), read, list, update,
// rotate and delete, each checked through /v1/decide as well.
func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "business-demo"
	admin := bearer(adminToken(svc))

	// Create: 201, Location, no-store, the secret once, advice as warnings.
	r := f.do(t, http.MethodPost, keysPath(svc), keySpec("web", perms{"get": true, "post": true},
		map[string]perms{"contact": {"post": true}}, perms{"getMedia": true}), admin...)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	var c created
	r.decode(t, &c)
	f.addSecret(c.Secret)
	if c.Secret == "" || c.Key.ID == "" || c.Key.Service != svc || c.Key.Name != "web" {
		t.Fatalf("create answered %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != keysPath(svc, c.Key.ID) {
		t.Errorf("Location %q", loc)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if !c.Key.ContentAPI.Default["get"] || c.Key.ContentAPI.Default["delete"] || !c.Key.ContentAPI.Individual["contact"]["post"] ||
		!c.Key.ManagementAPI["getMedia"] || c.Key.ManagementAPI["getService"] {
		t.Errorf("permissions not as written (missing flags must be false): %s", r.body)
	}
	if _, ok := c.Key.ManagementAPI["postMedia"]; !ok {
		t.Errorf("missing flags are not written out as false: %s", r.body)
	}
	codes := warningCodes(c.Warnings)
	for _, want := range []string{"default_write", "individual_write", "management_permission"} {
		if !slices.Contains(codes, want) {
			t.Errorf("warnings %v lack %s", codes, want)
		}
	}
	for _, w := range c.Warnings {
		if w.Code == "default_write" && (w.Endpoint != "default" || w.Flag != "post" || w.Message == "") {
			t.Errorf("default_write warning %+v, want endpoint default, flag post and a message", w)
		}
	}
	id, secret := c.Key.ID, c.Secret
	allowed := func(t *testing.T, secret, method, path string) decision {
		t.Helper()
		return f.decide(t, contentReq(svc, method, path, secret))
	}
	if d := allowed(t, secret, "POST", "/api/v1/news"); !d.Allow || d.KeyID != id {
		t.Fatalf("the new key does not work: %+v", d)
	}

	// A GET-only key has no warnings, and an empty list, not null.
	quiet := f.createKey(t, svc, keySpec("reader", perms{"get": true}, nil, nil))
	if len(quiet.Warnings) != 0 {
		t.Errorf("a GET-only key got warnings %+v", quiet.Warnings)
	}
	if w := warningCodes(f.createKey(t, svc, keySpec("nothing", perms{}, nil, nil)).Warnings); !slices.Contains(w, "grants_nothing") {
		t.Errorf("a key granting nothing got warnings %v", w)
	}

	// Read and list: metadata only, never a secret.
	r = f.do(t, http.MethodGet, keysPath(svc, id), nil, admin...)
	if r.status != http.StatusOK {
		t.Fatalf("get: %s", r)
	}
	var got apiKey
	r.decode(t, &got)
	if got.ID != id || got.Name != "web" {
		t.Errorf("get answered %s", r.body)
	}
	keys, listBody := f.listKeys(t, svc)
	if len(keys) != 3 {
		t.Errorf("list has %d keys, want 3: %s", len(keys), listBody)
	}
	for what, b := range map[string][]byte{"get": r.body, "list": listBody} {
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(quiet.Secret)) || bytes.Contains(b, []byte(`"secret`)) {
			t.Errorf("%s shows a secret: %s", what, b)
		}
	}

	// Update replaces name and permissions at once: no more writes by default.
	r = f.do(t, http.MethodPut, keysPath(svc, id), keySpec("web (read)", perms{"get": true, "getAllDrafts": true}, nil, nil), admin...)
	if r.status != http.StatusOK {
		t.Fatalf("update: %s", r)
	}
	var up struct {
		Key      apiKey    `json:"key"`
		Warnings []warning `json:"warnings"`
	}
	r.decode(t, &up)
	if bytes.Contains(r.body, []byte(`"secret`)) {
		t.Errorf("update shows a secret: %s", r.body)
	}
	if up.Key.Name != "web (read)" || up.Key.Revision <= got.Revision || len(up.Key.ContentAPI.Individual) != 0 || up.Key.ManagementAPI["getMedia"] {
		t.Errorf("update answered %s", r.body)
	}
	if w := warningCodes(up.Warnings); !slices.Contains(w, "default_drafts") {
		t.Errorf("update warnings %v lack default_drafts", w)
	}
	if d := allowed(t, secret, "POST", "/api/v1/news"); d.Allow || d.Status != 400 {
		t.Errorf("POST after the update took post away: %+v", d)
	}
	if d := allowed(t, secret, "GET", "/api/v1/news"); !d.Allow || !d.Visibility.Drafts {
		t.Errorf("GET after the update granted getAllDrafts: %+v", d)
	}

	// Rotate: a new secret, the old one dead at once.
	rot := f.rotateKey(t, svc, id)
	if rot.Secret == secret {
		t.Fatal("rotation kept the secret")
	}
	if d := allowed(t, secret, "GET", "/api/v1/news"); d.Allow || d.Status != 401 {
		t.Errorf("the old secret still works after rotation: %+v", d)
	}
	if d := allowed(t, rot.Secret, "GET", "/api/v1/news"); !d.Allow || d.KeyID != id {
		t.Errorf("the new secret does not work: %+v", d)
	}

	// Delete: 204 and the key is gone.
	r = f.do(t, http.MethodDelete, keysPath(svc, id), nil, admin...)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %s", r)
	}
	if d := allowed(t, rot.Secret, "GET", "/api/v1/news"); d.Allow || d.Status != 401 {
		t.Errorf("a deleted key still works: %+v", d)
	}
	if d := allowed(t, quiet.Secret, "GET", "/api/v1/news"); !d.Allow {
		t.Errorf("deleting one key broke another: %+v", d)
	}

	// Unknown keys: 404 for every operation on one key.
	for _, op := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, keysPath(svc, id), nil},
		{http.MethodPut, keysPath(svc, id), keySpec("x", perms{"get": true}, nil, nil)},
		{http.MethodPost, keysPath(svc, id, "rotate"), nil},
		{http.MethodDelete, keysPath(svc, id), nil},
		{http.MethodGet, keysPath(svc, "team-demo-read"), nil}, // another service's key
		{http.MethodDelete, keysPath(svc, "team-demo-read"), nil},
	} {
		t.Run("404 "+op.method+" "+op.path, func(t *testing.T) {
			f.do(t, op.method, op.path, op.body, admin...).problem(t, http.StatusNotFound, "key_not_found")
		})
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow {
		t.Errorf("deleting business-demo's team-demo-read touched team-demo's key: %+v", d)
	}
}

func warningCodes(ws []warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Code)
	}
	return out
}

// TestKeyInvalid: a refused create or update — 422 for an invalid
// configuration, 400/413/415 for a body keygate cannot read — changes
// nothing.
func TestKeyInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "team-demo"
	admin := bearer(adminToken(svc))
	huge := `{"name":"` + strings.Repeat("n", 1<<20+1) + `"}`

	t.Run("422", func(t *testing.T) {
		cases := []struct {
			note           string
			spec           map[string]any
			endpoint, flag string
		}{
			{"drafts without get by default", keySpec("x", perms{"getAllDrafts": true}, nil, nil), "default", "getAllDrafts"},
			{"closed without get by default", keySpec("x", perms{"getAllClosed": true, "post": true}, nil, nil), "default", "getAllClosed"},
			{"closed without get for one API", keySpec("x", perms{"get": true}, map[string]perms{"blogs": {"getAllClosed": true}}, nil), "blogs", "getAllClosed"},
		}
		for _, tc := range cases {
			for _, op := range []struct{ method, path string }{
				{http.MethodPost, keysPath(svc)}, {http.MethodPut, keysPath(svc, "team-demo-read")},
			} {
				t.Run(tc.note+"/"+op.method, func(t *testing.T) {
					p := f.do(t, op.method, op.path, tc.spec, admin...).problem(t, http.StatusUnprocessableEntity, "invalid_key_config")
					if !slices.ContainsFunc(p.Violations, func(v violation) bool { return v.Endpoint == tc.endpoint && v.Flag == tc.flag }) {
						t.Errorf("violations %+v do not name %s/%s", p.Violations, tc.endpoint, tc.flag)
					}
				})
			}
		}
	})

	bodies := []struct {
		note        string
		body        string
		contentType string
		status      int
		code        string
	}{
		{"bad JSON", `{"name":`, "", 400, "invalid_json"},
		{"empty body", ``, "", 400, "invalid_json"},
		{"null", `null`, "", 400, "invalid_field"},
		{"array", `[{"name":"a"}]`, "", 400, "invalid_field"},
		{"two values", `{"name":"a"}{"name":"b"}`, "", 400, "invalid_json"},
		{"unknown top-level field", `{"name":"a","secret":"chosen-by-me"}`, "", 400, "unknown_field"},
		{"unknown content flag", `{"name":"a","contentApi":{"default":{"get":true,"list":true}}}`, "", 400, "unknown_field"},
		{"unknown management flag", `{"name":"a","managementApi":{"getFoo":true}}`, "", 400, "unknown_field"},
		{"flag of the wrong type", `{"name":"a","contentApi":{"default":{"get":"true"}}}`, "", 400, "invalid_field"},
		{"name of the wrong type", `{"name":42}`, "", 400, "invalid_field"},
		{"individual of the wrong type", `{"name":"a","contentApi":{"individual":[]}}`, "", 400, "invalid_field"},
		{"missing name", `{"contentApi":{"default":{"get":true}}}`, "", 400, "invalid_field"},
		{"blank name", `{"name":"  "}`, "", 400, "invalid_field"},
		{"over 1 MiB", huge, "", 413, "body_too_large"},
		{"text/plain", `{"name":"a"}`, "text/plain", 415, "unsupported_media_type"},
	}
	before, _ := f.listKeys(t, svc)
	for _, tc := range bodies {
		for _, op := range []struct{ method, path string }{
			{http.MethodPost, keysPath(svc)}, {http.MethodPut, keysPath(svc, "team-demo-read")},
		} {
			t.Run(tc.note+"/"+op.method, func(t *testing.T) {
				hdr := admin
				if tc.contentType != "" {
					hdr = append(slices.Clone(admin), "Content-Type", tc.contentType)
				}
				f.do(t, op.method, op.path, tc.body, hdr...).problem(t, tc.status, tc.code)
			})
		}
	}
	after, _ := f.listKeys(t, svc)
	if !slices.EqualFunc(before, after, sameKey) {
		t.Errorf("refused writes changed the keys:\nbefore %+v\nafter  %+v", before, after)
	}
	m := scrape(t, f)
	if n := m.family("keygate_key_writes_total", `status="20`); n != 0 {
		t.Errorf("%v successful writes counted", n)
	}
	if n := m.value(`keygate_key_writes_total{action="create",status="422"}`); n != 3 {
		t.Errorf("%v refused (422) creates counted, want 3", n)
	}
}

// TestKeyPlanLimits: each plan's limit (data in policies/plans), counting
// the seed keys; the next create is 409 naming plan and limit, and a delete
// makes room again.
func TestKeyPlanLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--metrics-per-service")
	cases := []struct {
		service, plan string
		limit, seeded int
	}{
		{"hobby-demo", "hobby", 1, 0},
		{"team-demo", "team", 3, 1},
		{"business-demo", "business", 10, 0},
		{"advanced-demo", "advanced", 20, 0},
		{"enterprise-demo", "enterprise", 20, 0},
	}
	for _, tc := range cases {
		t.Run(tc.plan, func(t *testing.T) {
			t.Parallel()
			if keys, _ := f.listKeys(t, tc.service); len(keys) != tc.seeded {
				t.Fatalf("%s starts with %d keys, want %d", tc.service, len(keys), tc.seeded)
			}
			var last created
			for i := tc.seeded; i < tc.limit; i++ {
				last = f.createKey(t, tc.service, keySpec("k"+strconv.Itoa(i), perms{"get": true}, nil, nil))
			}
			over := func() {
				t.Helper()
				p := f.do(t, http.MethodPost, keysPath(tc.service), keySpec("one too many", perms{"get": true}, nil, nil),
					bearer(adminToken(tc.service))...).problem(t, http.StatusConflict, "key_limit_exceeded")
				if p.Limit != tc.limit {
					t.Errorf("409 limit %d, want %d", p.Limit, tc.limit)
				}
				if !strings.Contains(p.Detail, tc.plan) || !strings.Contains(p.Detail, " "+strconv.Itoa(tc.limit)) {
					t.Errorf("409 detail %q does not name plan %s and limit %d", p.Detail, tc.plan, tc.limit)
				}
			}
			over()
			if keys, _ := f.listKeys(t, tc.service); len(keys) != tc.limit {
				t.Errorf("%s has %d keys, want %d", tc.service, len(keys), tc.limit)
			}
			if got := scrape(t, f).value(`keygate_keys{service="` + tc.service + `"}`); got != float64(tc.limit) {
				t.Errorf("keygate_keys{service=%q} = %v, want %d", tc.service, got, tc.limit)
			}
			// At the limit, existing keys still rotate and update.
			if tc.limit > tc.seeded {
				f.rotateKey(t, tc.service, last.Key.ID)
				r := f.do(t, http.MethodDelete, keysPath(tc.service, last.Key.ID), nil, bearer(adminToken(tc.service))...)
				if r.status != http.StatusNoContent {
					t.Fatalf("delete: %s", r)
				}
				f.createKey(t, tc.service, keySpec("after a delete", perms{"get": true}, nil, nil))
				over()
			}
		})
	}
}

// TestConcurrentCreatesHoldThePlanLimit: 50 admins' creates at once on a
// business service (room for 10) through HTTP and the real keys policy:
// exactly 10 get 201, every other one 409, and the service ends with 10.
func TestConcurrentCreatesHoldThePlanLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const service, limit, clients = "business-demo", 10, 50
	body, err := json.Marshal(keySpec("racer", perms{"get": true}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	statuses := make([]int, clients)
	secrets := make([]string, clients)
	errs := make([]error, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+keysPath(service), bytes.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+adminToken(service))
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			var c created
			if resp.StatusCode == http.StatusCreated {
				errs[i] = json.NewDecoder(resp.Body).Decode(&c)
				secrets[i] = c.Secret
			}
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		count[statuses[i]]++
		f.addSecret(secrets[i])
	}
	if count[http.StatusCreated] != limit || count[http.StatusConflict] != clients-limit {
		t.Fatalf("statuses %v, want %d × 201 and %d × 409", count, limit, clients-limit)
	}
	if keys, _ := f.listKeys(t, service); len(keys) != limit {
		t.Fatalf("%s has %d keys, want %d", service, len(keys), limit)
	}
}
