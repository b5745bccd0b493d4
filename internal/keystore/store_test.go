package keystore_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

func wantStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ke *keystore.Error
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T), want *keystore.Error %d %s", err, err, status, code)
	}
	if ke.Status != status || ke.Code != code {
		t.Fatalf("got %d %s (%s), want %d %s", ke.Status, ke.Code, ke.Message, status, code)
	}
}

func TestDemoData(t *testing.T) {
	f := newFixture(t)
	k, ok := f.store.KeyBySecret(demoSecret)
	if !ok || k.ID != demoKeyID || k.Service != "team-demo" || !k.ContentAPI.Default.Get || k.ContentAPI.Default.Post {
		t.Fatalf("demo key: %+v %v", k, ok)
	}
	for _, svc := range []string{"hobby-demo", "team-demo", "business-demo", "enterprise-demo"} {
		s, ok := f.store.Service(svc)
		if !ok || s.Plan != strings.TrimSuffix(svc, "-demo") {
			t.Errorf("service %s: %+v %v", svc, s, ok)
		}
		for role, tok := range map[string]string{"admin": svc + "-admin-token", "editor": svc + "-editor-token"} {
			m, ok := f.store.MemberByToken(tok)
			if !ok || m.Role != role || m.Service != svc {
				t.Errorf("member %s: %+v %v", tok, m, ok)
			}
		}
	}
	for _, bad := range []string{"", "nope", "sha256:" + strings.Repeat("0", 64)} {
		if _, ok := f.store.KeyBySecret(bad); ok {
			t.Errorf("KeyBySecret(%q) found a key", bad)
		}
		if _, ok := f.store.MemberByToken(bad); ok {
			t.Errorf("MemberByToken(%q) found a member", bad)
		}
	}
	if got := f.store.KeyCounts(); got["team-demo"] != 1 || got["hobby-demo"] != 0 || len(got) != 5 {
		t.Errorf("KeyCounts = %v", got)
	}
}

func TestAuthorizationOrder(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		note    string
		token   string
		service string
		id      string
		status  int
		code    string
	}{
		{"no token", "", "team-demo", demoKeyID, 401, "unauthenticated"},
		{"unknown token", "nope", "team-demo", demoKeyID, 401, "unauthenticated"},
		{"editor", teamEditor, "team-demo", demoKeyID, 403, "forbidden"},
		{"admin of another service", hobbyAdmin, "team-demo", demoKeyID, 403, "forbidden"},
		{"editor probing a missing key gets 403, not 404", teamEditor, "team-demo", "missing", 403, "forbidden"},
		{"admin, unknown service: policy forbids first", teamAdmin, "nope", demoKeyID, 403, "forbidden"},
		{"admin, missing key", teamAdmin, "team-demo", "missing", 404, keystore.CodeKeyNotFound},
		{"admin, key of another service", hobbyAdmin, "hobby-demo", demoKeyID, 404, keystore.CodeKeyNotFound},
		{"admin", teamAdmin, "team-demo", demoKeyID, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			_, err := f.store.GetKey(t.Context(), tc.token, tc.service, tc.id)
			wantStatus(t, err, tc.status, tc.code)
			_, err = f.store.UpdateKey(t.Context(), tc.token, tc.service, tc.id, readSpec())
			wantStatus(t, err, tc.status, tc.code)
			_, err = f.store.RotateKey(t.Context(), tc.token, tc.service, tc.id+"-not-this-one")
			if tc.status == 0 {
				wantStatus(t, err, 404, keystore.CodeKeyNotFound)
			} else {
				wantStatus(t, err, tc.status, tc.code)
			}
		})
	}
}

func TestKeyLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	gen := f.store.Generation()

	spec := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{
		Default:    keystore.ContentPerms{Get: true, GetAllDrafts: true},
		Individual: map[string]keystore.ContentPerms{"contact": {Post: true}},
	}}
	c, err := f.store.CreateKey(ctx, teamAdmin, "team-demo", spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.ContentAPI.Individual["contact"] = keystore.ContentPerms{Delete: true} // caller's map must not leak in
	if len(c.Secret) < 43 || c.Revision != 1 || c.CreatedBy != "team-demo-admin" || c.Warnings == nil {
		t.Fatalf("created: %+v", c)
	}
	if f.store.Generation() == gen {
		t.Error("Generation did not change on create")
	}
	got, ok := f.store.KeyBySecret(c.Secret)
	if !ok || got.ID != c.ID || !got.ContentAPI.Individual["contact"].Post || got.ContentAPI.Individual["contact"].Delete {
		t.Fatalf("KeyBySecret after create: %+v %v", got, ok)
	}

	// Marshalled key carries no secret material; Created carries the secret once.
	kj, _ := json.Marshal(got)
	cj, _ := json.Marshal(c)
	if strings.Contains(strings.ToLower(string(kj)), "secret") || !strings.Contains(string(cj), `"secret":"`+c.Secret+`"`) {
		t.Errorf("key JSON %s / created JSON %s", kj, cj)
	}
	if strings.Contains(f.logs.String(), c.Secret) || strings.Contains(f.logs.String(), teamAdmin) {
		t.Error("a secret or token reached the log")
	}

	u, err := f.store.UpdateKey(ctx, teamAdmin, "team-demo", c.ID, keystore.KeySpec{Name: "web2", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, Post: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "web2" || u.Revision != 2 || len(u.ContentAPI.Individual) != 0 || len(u.Warnings) != 1 || u.Warnings[0].Code != "default_write" {
		t.Fatalf("updated: %+v", u)
	}

	r, err := f.store.RotateKey(ctx, teamAdmin, "team-demo", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.store.KeyBySecret(c.Secret); ok {
		t.Error("old secret still works after rotation")
	}
	if k, ok := f.store.KeyBySecret(r.Secret); !ok || k.Revision != 3 || k.Name != "web2" {
		t.Errorf("new secret: %+v %v", k, ok)
	}

	list, err := f.store.ListKeys(ctx, teamAdmin, "team-demo")
	if err != nil || len(list) != 2 || list[0].ID != demoKeyID || list[1].ID != c.ID {
		t.Fatalf("ListKeys = %+v, %v", list, err)
	}

	if err := f.store.DeleteKey(ctx, teamAdmin, "team-demo", c.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.store.KeyBySecret(r.Secret); ok {
		t.Error("deleted key still authenticates")
	}
	_, err = f.store.GetKey(ctx, teamAdmin, "team-demo", c.ID)
	wantStatus(t, err, 404, keystore.CodeKeyNotFound)
	wantStatus(t, f.store.DeleteKey(ctx, teamAdmin, "team-demo", c.ID), 404, keystore.CodeKeyNotFound)
}

func TestWriteRefusals(t *testing.T) {
	tests := []struct {
		note    string
		token   string
		service string
		spec    keystore.KeySpec
		status  int
		code    string
		flag    string
	}{
		{"drafts without get", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"blogs": {GetAllDrafts: true}}}}, 422, "invalid_key_config", "getAllDrafts"},
		{"hobby limit already used? no: hobby has room for one", hobbyAdmin, "hobby-demo", readSpec(), 0, "", ""},
		{"bad endpoint name", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"a/b": {Get: true}}}}, 400, keystore.CodeInvalidKeySpec, ""},
		// microCMS endpoints are lower case and the route grammar matches
		// them exactly: an entry for "Contact" would never apply.
		{"upper-case endpoint name", teamAdmin, "team-demo", keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"Contact": {Get: true}}}}, 400, keystore.CodeInvalidKeySpec, ""},
		{"name too long", teamAdmin, "team-demo", keystore.KeySpec{Name: strings.Repeat("x", 201)}, 400, keystore.CodeInvalidKeySpec, ""},
		{"editor", teamEditor, "team-demo", readSpec(), 403, "forbidden", ""},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			before := f.store.KeyCounts()[tc.service]
			_, err := f.store.CreateKey(t.Context(), tc.token, tc.service, tc.spec)
			wantStatus(t, err, tc.status, tc.code)
			var ke *keystore.Error
			if tc.flag != "" && (!errors.As(err, &ke) || len(ke.Violations) == 0 || ke.Violations[0].Flag != tc.flag) {
				t.Errorf("violations: %+v", ke)
			}
			if after := f.store.KeyCounts()[tc.service]; tc.status != 0 && after != before {
				t.Errorf("refused write changed key count %d → %d", before, after)
			}
		})
	}
	t.Run("plan limit", func(t *testing.T) {
		_, err := f.store.CreateKey(t.Context(), hobbyAdmin, "hobby-demo", readSpec())
		wantStatus(t, err, http.StatusConflict, "key_limit_exceeded")
		if !strings.Contains(err.Error(), "hobby") {
			t.Errorf("message does not name the plan: %v", err)
		}
	})
}

// TestKeyNameCharacters: a key name is shown in terminals, UIs and text logs, so a
// control character (C0, DEL, C1) or a bidirectional formatting character is
// refused with 400 naming the character, and nothing is written; other
// Unicode is a name like any other.
func TestKeyNameCharacters(t *testing.T) {
	tests := []struct {
		name string
		want string // the character the refusal names; "" when the name is accepted
	}{
		{"ok\nlevel=ERROR forged", "U+000A"},
		{"\x1b[2Jread", "U+001B"},
		{"read\tkey", "U+0009"},
		{"read\x00", "U+0000"},
		{"read\x7f", "U+007F"},
		{"read\u0085", "U+0085"},
		{"read\u202Eetirw", "U+202E"},
		{"\u2067read", "U+2067"},
		{"ブログ読み取り 用キー", ""},
		{"read-only (CDN) — blogs", ""},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.name), func(t *testing.T) {
			before := f.store.KeyCounts()["team-demo"]
			spec := readSpec()
			spec.Name = tc.name
			k, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", spec)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if err := f.store.DeleteKey(t.Context(), teamAdmin, "team-demo", k.ID); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantStatus(t, err, http.StatusBadRequest, keystore.CodeInvalidKeySpec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal does not name %s: %v", tc.want, err)
			}
			if after := f.store.KeyCounts()["team-demo"]; after != before {
				t.Errorf("refused write changed the key count %d → %d", before, after)
			}
		})
	}
}

func TestFailClosed(t *testing.T) {
	f := newFixture(t)
	f.authz.Err = errors.New("engine down")
	_, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
	wantStatus(t, err, 500, keystore.CodeAuthorizerFailed)
	if !errors.Is(err, f.authz.Err) {
		t.Errorf("error does not wrap the cause: %v", err)
	}
	_, err = f.store.ListKeys(t.Context(), teamAdmin, "team-demo")
	wantStatus(t, err, 500, keystore.CodeAuthorizerFailed)
}

func TestKeyRequestInput(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec()); err != nil {
		t.Fatal(err)
	}
	_, _ = f.store.ListKeys(t.Context(), "nobody", "team-demo")
	reqs := f.authz.Requests()
	// seed validation; the create's screening (outside the write lock) and its
	// authoritative decision (inside it), identical here; the list.
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	// The first is the seed key's validation: a create with no member.
	if seed := reqs[0]; seed.Action != keystore.ActionCreate || seed.Member != nil || seed.Key == nil || seed.Key.Name != "Demo read-only key" {
		t.Fatalf("seed validation request %+v", seed)
	}
	reqs = reqs[1:]
	tests := []struct {
		note string
		req  keystore.KeyRequest
		want string
	}{
		{"create screened", reqs[0], `{"action":"create","service":{"id":"team-demo","plan":"team","keyCount":1},"member":{"id":"team-demo-admin","service":"team-demo","role":"admin"},"key":{"name":"web","contentApi":{"default":{"get":true,"getAllDrafts":false,"getAllClosed":false,"post":false,"put":false,"patch":false,"delete":false},"individual":{}},"managementApi":{"getContents":false,"patchContentCreatedBy":false,"patchContentStatus":false,"getMedia":false,"postMedia":false,"deleteMedia":false,"getMembers":false,"getApis":false,"getService":false}}}`},
		{"create", reqs[1], `{"action":"create","service":{"id":"team-demo","plan":"team","keyCount":1},"member":{"id":"team-demo-admin","service":"team-demo","role":"admin"},"key":{"name":"web","contentApi":{"default":{"get":true,"getAllDrafts":false,"getAllClosed":false,"post":false,"put":false,"patch":false,"delete":false},"individual":{}},"managementApi":{"getContents":false,"patchContentCreatedBy":false,"patchContentStatus":false,"getMedia":false,"postMedia":false,"deleteMedia":false,"getMembers":false,"getApis":false,"getService":false}}}`},
		{"list by nobody", reqs[2], `{"action":"list","service":{"id":"team-demo","plan":"team","keyCount":2}}`},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			got, err := json.Marshal(tc.req)
			if err != nil || string(got) != tc.want {
				t.Errorf("input\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestCreatedMarshalsFlat(t *testing.T) {
	f := newFixture(t)
	c, err := f.store.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b, _ := json.Marshal(c)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"id", "service", "name", "contentApi", "managementApi", "createdBy", "createdAt", "updatedAt", "revision", "secret", "warnings"} {
		if _, ok := m[field]; !ok {
			t.Errorf("created JSON lacks %q: %s", field, b)
		}
	}
}

// TestViolationsOnlyOn422: the keys policy computes violations whatever the
// verdict; they are returned only with a 422, never to a caller refused with
// 401 or 403 (who must learn nothing about the configuration's evaluation).
func TestViolationsOnlyOn422(t *testing.T) {
	f := newFixture(t)
	bad := keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{"blogs": {GetAllDrafts: true}}}}
	for _, tc := range []struct {
		note, token string
		status      int
		violations  int
	}{
		{"no member", "", 401, 0},
		{"unknown token", "nobody", 401, 0},
		{"editor", teamEditor, 403, 0},
		{"other service's admin", hobbyAdmin, 403, 0},
		{"admin", teamAdmin, 422, 1},
	} {
		t.Run(tc.note, func(t *testing.T) {
			for _, op := range []string{"create", "update"} {
				var err error
				if op == "create" {
					_, err = f.store.CreateKey(t.Context(), tc.token, "team-demo", bad)
				} else {
					_, err = f.store.UpdateKey(t.Context(), tc.token, "team-demo", demoKeyID, bad)
				}
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != tc.status || len(ke.Violations) != tc.violations {
					t.Errorf("%s: %+v, want status %d with %d violations", op, ke, tc.status, tc.violations)
				}
			}
		})
	}
}
