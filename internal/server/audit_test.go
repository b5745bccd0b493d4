package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

type auditReply struct {
	Entries []keystore.AuditEntry `json:"entries"`
	Next    string                `json:"next"`
}

func serveReq(h http.Handler, method, target, token, body string, remote string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if remote != "" {
		req.RemoteAddr = remote
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestAuditEndpoint: GET /v1/services/{service}/audit serves the trail
// newest first to admins of the service, with the caller's address as the
// server sees it (a forwarded header is not trusted) and the request id the
// write's answer carried; bad parameters are 400 problems.
func TestAuditEndpoint(t *testing.T) {
	h := newFixture(t, server.Options{})
	const admin, path = "team-demo-admin-token", "/v1/services/team-demo/audit"
	var ids []string
	for range 2 {
		rec := serveReq(h, http.MethodPost, "/v1/services/team-demo/keys", admin, `{"name":"web","contentApi":{"default":{"get":true}}}`,
			"192.0.2.9:5555", "X-Forwarded-For", "10.9.9.9")
		if rec.Code != http.StatusCreated || rec.Header().Get("X-Keygate-Request-Id") == "" {
			t.Fatalf("create: %d %s %v", rec.Code, rec.Body, rec.Header())
		}
		ids = append(ids, rec.Header().Get("X-Keygate-Request-Id"))
	}
	rec := serveReq(h, http.MethodPost, "/v1/services/team-demo/keys", "team-demo-editor-token", `{"name":"x"}`, "192.0.2.10:1")
	if rec.Code != http.StatusForbidden {
		t.Fatalf("editor create: %d", rec.Code)
	}
	ids = append(ids, rec.Header().Get("X-Keygate-Request-Id"))

	get := func(t *testing.T, query string) auditReply {
		t.Helper()
		rec := serveReq(h, http.MethodGet, path+query, admin, "", "")
		if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s: %d %s", query, rec.Code, rec.Body)
		}
		var r auditReply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := get(t, "?limit=2")
	if len(first.Entries) != 2 || first.Next == "" {
		t.Fatalf("first page: %+v", first)
	}
	second := get(t, "?limit=2&cursor="+url.QueryEscape(first.Next))
	if len(second.Entries) != 1 || second.Next != "" {
		t.Fatalf("second page: %+v", second)
	}
	all := append(first.Entries, second.Entries...)
	for i, e := range all {
		want := ids[len(ids)-1-i]
		if e.RequestID != want {
			t.Errorf("entry %d request id %q, want %q", i, e.RequestID, want)
		}
	}
	if e := all[0]; e.Outcome != keystore.OutcomeRefused || e.Status != 403 || e.Actor != "team-demo-editor" || e.ClientIP != "192.0.2.10" {
		t.Errorf("refused entry: %+v", e)
	}
	if e := all[2]; e.Outcome != keystore.OutcomeAllowed || e.ClientIP != "192.0.2.9" || e.Actor != "team-demo-admin" || e.PolicyRevision == "" {
		t.Errorf("create entry: %+v", e)
	}
	if got := get(t, "?actor=team-demo-editor&action=create"); len(got.Entries) != 1 {
		t.Errorf("filtered: %+v", got)
	}

	for _, tc := range []struct {
		name, token, query string
		status             int
		code               string
	}{
		{"editor", "team-demo-editor-token", "", 403, "forbidden"},
		{"no token", "", "", 401, "unauthenticated"},
		{"another service's admin", "hobby-demo-admin-token", "", 403, "forbidden"},
		{"limit 0", admin, "?limit=0", 400, "invalid_query"},
		{"limit 101", admin, "?limit=101", 400, "invalid_query"},
		{"limit not a number", admin, "?limit=ten", 400, "invalid_query"},
		{"forged cursor", admin, "?cursor=abc", 400, "invalid_query"},
		{"unknown action", admin, "?action=read", 400, "invalid_query"},
		{"bad time", admin, "?since=yesterday", 400, "invalid_query"},
		{"empty range", admin, "?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 400, "invalid_query"},
		{"unknown parameter", admin, "?user=x", 400, "invalid_query"},
		{"parameter twice", admin, "?limit=1&limit=2", 400, "invalid_query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serveReq(h, http.MethodGet, path+tc.query, tc.token, "", "")
			var p server.Problem
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want %d problem", rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.status)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != tc.code {
				t.Fatalf("problem %s, want code %s", rec.Body, tc.code)
			}
		})
	}
}

// TestPolicyHistory: policy and data reloads are listed newest first with
// the revision before and after, the result and the error; a reload that
// found nothing changed is not.
func TestPolicyHistory(t *testing.T) {
	policies := copyTree(t, "../../policies")
	data := copyTree(t, "../../data")
	eng, store := openDeps(t, policies, data)
	srv := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)})
	h := srv.Handler()
	rev0 := eng.Revision()
	if _, err := srv.ReloadPolicies(t.Context()); err != nil { // unchanged: not recorded
		t.Fatal(err)
	}
	extra := filepath.Join(policies, "extra.rego")
	if err := os.WriteFile(extra, []byte("package extra\n\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ReloadPolicies(t.Context()); err != nil {
		t.Fatal(err)
	}
	rev1 := eng.Revision()
	if err := os.WriteFile(extra, []byte("package extra\n\nx := \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ReloadPolicies(t.Context()); err == nil {
		t.Fatal("broken policy accepted")
	}
	if err := srv.ReloadData(t.Context()); err != nil { // unchanged: not recorded
		t.Fatal(err)
	}
	services := filepath.Join(data, "services.json")
	orig, err := os.ReadFile(services)
	if err != nil {
		t.Fatal(err)
	}
	// The same services, formatted differently: nothing changed.
	if err := os.WriteFile(services, append([]byte("\n"), orig...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadData(t.Context()); err != nil {
		t.Fatal(err)
	}
	upgraded := bytes.Replace(orig, []byte(`"plan": "hobby"`), []byte(`"plan": "team"`), 1)
	if bytes.Equal(upgraded, orig) {
		t.Fatal("services.json has no hobby plan to change")
	}
	if err := os.WriteFile(services, upgraded, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadData(t.Context()); err != nil {
		t.Fatal(err)
	}
	history := func() ([]server.ReloadEvent, int) {
		t.Helper()
		rec := serveReq(h, http.MethodGet, "/v1/policies/history", "", "", "")
		var body struct {
			Reloads  []server.ReloadEvent `json:"reloads"`
			Capacity int                  `json:"capacity"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		return body.Reloads, body.Capacity
	}
	reloads, capacity := history()
	var got []string
	for _, r := range reloads {
		got = append(got, r.Kind+" "+r.Source+" "+r.From+"→"+r.To+" "+r.Result+" "+map[bool]string{true: "with error", false: ""}[r.Error != ""])
	}
	want := []string{
		"data files " + rev1 + "→" + rev1 + " ok ",
		"policies files " + rev1 + "→" + rev1 + " error with error",
		"policies files " + rev0 + "→" + rev1 + " ok ",
	}
	if rev0 == rev1 || strings.Join(got, "\n") != strings.Join(want, "\n") || capacity != 100 {
		t.Fatalf("history:\n%s\nwant\n%s (capacity %d)", strings.Join(got, "\n"), strings.Join(want, "\n"), capacity)
	}
	// The ring keeps the newest 100: 120 data reloads that each change the
	// plan back or forth.
	for i := range 120 {
		b := orig
		if i%2 == 1 {
			b = upgraded
		}
		if err := os.WriteFile(services, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := srv.ReloadData(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if reloads, _ = history(); len(reloads) != 100 {
		t.Fatalf("after 123 recorded reloads: %d kept, want 100", len(reloads))
	}
}

// TestIdempotencyKeyHeader: a key write retried with the same
// Idempotency-Key is answered from the first (Idempotent-Replayed: true, no
// secret in the body); a malformed key is 400 before anything happens.
func TestIdempotencyKeyHeader(t *testing.T) {
	h := newFixture(t, server.Options{})
	const admin, keys = "team-demo-admin-token", "/v1/services/team-demo/keys"
	body := `{"name":"web","contentApi":{"default":{"get":true}}}`
	first := serveReq(h, http.MethodPost, keys, admin, body, "", "Idempotency-Key", "order-42")
	second := serveReq(h, http.MethodPost, keys, admin, body, "", "Idempotency-Key", "order-42")
	if first.Code != http.StatusCreated || second.Code != http.StatusCreated {
		t.Fatalf("first %d %s, second %d %s", first.Code, first.Body, second.Code, second.Body)
	}
	var a, b map[string]any
	_ = json.Unmarshal(first.Body.Bytes(), &a)
	_ = json.Unmarshal(second.Body.Bytes(), &b)
	if first.Header().Get("Idempotent-Replayed") != "" || second.Header().Get("Idempotent-Replayed") != "true" ||
		b["replayed"] != true || b["secret"] != nil || a["secret"] == nil ||
		a["key"].(map[string]any)["id"] != b["key"].(map[string]any)["id"] {
		t.Fatalf("first %v %s\nsecond %v %s", first.Header(), first.Body, second.Header(), second.Body)
	}
	for _, tc := range []struct{ name, key string }{
		{"empty", ""},
		{"too long", strings.Repeat("k", 129)},
		{"space", "a b"},
		{"non-ASCII", "schlüssel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serveReq(h, http.MethodPost, keys, admin, body, "", "Idempotency-Key", tc.key)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid_idempotency_key") {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	var list struct {
		Keys []any `json:"keys"`
	}
	_ = json.Unmarshal(serveReq(h, http.MethodGet, keys, admin, "", "").Body.Bytes(), &list)
	if len(list.Keys) != 2 { // the demo key and the one create
		t.Fatalf("%d keys, want 2", len(list.Keys))
	}
}
