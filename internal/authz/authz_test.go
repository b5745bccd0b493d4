package authz_test

import (
	"encoding/json"
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
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/server"
)

// TestMisbehavingKeysPolicy wires the engine, the policy authorizer, the
// key store and the server as serve does, on a keys policy (a real Rego
// file) that answers malformed decisions: every one is a refusal with a
// 4xx/5xx status, a stable code and a bounded detail, and nothing is
// written. /v1/decide and /v1/forward-auth get the same table in
// internal/server (TestMisbehavingPolicy).
func TestMisbehavingKeysPolicy(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	const slow = `decision := {"allow": true, "status": 200} if {
	count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000); x == y + 100001]) > 0
}`
	for _, tc := range []struct {
		note   string
		rule   string
		status int
		code   string
	}{
		{"allow with status 500", `decision := {"allow": true, "status": 500}`, 500, keystore.CodeAuthorizerFailed},
		{"allow with status 201", `decision := {"allow": true, "status": 201}`, 500, keystore.CodeAuthorizerFailed},
		{"allow with status 999", `decision := {"allow": true, "status": 999}`, 500, keystore.CodeAuthorizerFailed},
		{"allow is a string", `decision := {"allow": "true", "status": 200}`, 500, keystore.CodeAuthorizerFailed},
		{"allow is a number", `decision := {"allow": 1, "status": 200}`, 500, keystore.CodeAuthorizerFailed},
		{"allow is null", `decision := {"allow": null, "status": 200}`, 500, keystore.CodeAuthorizerFailed},
		{"status is a string", `decision := {"allow": true, "status": "200"}`, 500, keystore.CodeAuthorizerFailed},
		{"status is a fraction", `decision := {"allow": true, "status": 200.5}`, 500, keystore.CodeAuthorizerFailed},
		{"status is null", `decision := {"allow": true, "status": null}`, 500, keystore.CodeAuthorizerFailed},
		{"code of the wrong type", `decision := {"allow": false, "status": 403, "code": 7}`, 500, keystore.CodeAuthorizerFailed},
		{"deny with status 200", `decision := {"allow": false, "status": 200, "code": "allowed"}`, 403, keystore.CodeForbidden},
		{"deny with status 0", `decision := {"allow": false, "status": 0}`, 403, keystore.CodeForbidden},
		{"deny with status 999", `decision := {"allow": false, "status": 999, "code": "weird"}`, 403, keystore.CodeForbidden},
		{"deny without status", `decision := {"allow": false}`, 403, keystore.CodeForbidden},
		{"empty decision", `decision := {}`, 403, keystore.CodeForbidden},
		{"huge code", `decision := {"allow": false, "status": 403, "code": "` + huge + `"}`, 403, keystore.CodeForbidden},
		{"huge message", `decision := {"allow": false, "status": 409, "code": "key_limit_exceeded", "message": "` + huge + `"}`, 409, "key_limit_exceeded"},
		{"undefined decision", `decision := {"allow": true} if input.never == "never"`, 500, keystore.CodeAuthorizerFailed},
		{"not an object", `decision := true`, 500, keystore.CodeAuthorizerFailed},
		{"evaluation past the timeout", slow, 500, keystore.CodeAuthorizerFailed},
	} {
		t.Run(tc.note, func(t *testing.T) {
			h, store := keysFixture(t, tc.rule)
			start := time.Now()
			req := httptest.NewRequest(http.MethodPost, "/v1/services/team-demo/keys", strings.NewReader(`{"name":"web","contentApi":{"default":{"get":true}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer team-demo-admin-token")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("refused in %s", took)
			}
			var p server.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("%d %.200s: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != tc.status || p.Status != tc.status || p.Code != tc.code {
				t.Errorf("got %d %.80q %.80q, want %d %q", rec.Code, p.Code, p.Detail, tc.status, tc.code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if n := len(p.Detail); n == 0 || n > 512 {
				t.Errorf("detail of %d bytes, want 1..512", n)
			}
			if n := store.KeyCounts()["team-demo"]; n != 0 {
				t.Errorf("%d keys after a refused create", n)
			}
		})
	}
}

// keysFixture serves the keys API with the keys policy rule (and the same
// rule for the decision entrypoints) and a 100 ms evaluation timeout, on
// the committed services and members without seed keys (seed keys are
// checked by the keys policy at start).
func keysFixture(t *testing.T, rule string) (http.Handler, *keystore.Store) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	policies, data := t.TempDir(), t.TempDir()
	for _, pkg := range []string{"content", "management", "keys", "network"} {
		write(t, filepath.Join(policies, pkg, pkg+".rego"), "package "+pkg+"\n\n"+rule+"\n")
	}
	// legacy's entrypoints are migration and selection
	write(t, filepath.Join(policies, "legacy", "legacy.rego"), "package legacy\n\n"+
		strings.ReplaceAll(rule, "decision", "migration")+"\n\n"+strings.ReplaceAll(rule, "decision", "selection")+"\n")
	for _, f := range []string{"services.json", "members.json"} {
		b, err := os.ReadFile(filepath.Join("../../data", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(data, f), string(b))
	}
	eng, err := engine.New(t.Context(), policies, engine.Options{Timeout: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{
		DataDir: data, Authorizer: authz.New(eng), Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet}).Handler(), store
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
