package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/server"
	"github.com/open-policy-agent/opa/v1/ast"
)

// policyFault is one way a policy can misbehave, and the deny keygate must
// answer with. A case is either a literal decision object (driven through a
// stub and through a real Rego file) or a whole rule (Rego only) with the
// error the engine reports for it (stub only).
type policyFault struct {
	note    string
	literal string // the decision object, as Rego
	rule    string // the decision rule, when literal is empty
	stubErr error  // what the engine reports for rule
	status  int    // X-Keygate-Status / the decision's status
	code    string
}

// slowRule loops for long (10^10 iterations, constant memory) without
// time.sleep: only the evaluation timeout stops it.
const slowRule = `decision := {"allow": true} if {
	count([x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000); x == y + 100001]) > 0
}`

func policyFaults() []policyFault {
	huge := strings.Repeat("x", 1<<20)
	return []policyFault{
		{note: "allow with status 500", literal: `{"allow": true, "status": 500}`, status: 503, code: "policy_error"},
		{note: "allow with status 403", literal: `{"allow": true, "status": 403, "code": "forbidden"}`, status: 503, code: "policy_error"},
		{note: "allow with status 201", literal: `{"allow": true, "status": 201}`, status: 503, code: "policy_error"},
		{note: "allow with status 999", literal: `{"allow": true, "status": 999}`, status: 503, code: "policy_error"},
		{note: "allow is a string", literal: `{"allow": "true", "status": 200}`, status: 503, code: "policy_error"},
		{note: "allow is a number", literal: `{"allow": 1, "status": 200}`, status: 503, code: "policy_error"},
		{note: "allow is null", literal: `{"allow": null, "status": 200}`, status: 503, code: "policy_error"},
		{note: "status is a string", literal: `{"allow": true, "status": "200"}`, status: 503, code: "policy_error"},
		{note: "status is a fraction", literal: `{"allow": true, "status": 200.5}`, status: 503, code: "policy_error"},
		{note: "status is null", literal: `{"allow": true, "status": null}`, status: 503, code: "policy_error"},
		{note: "deny with status 200", literal: `{"allow": false, "status": 200, "code": "allowed"}`, status: 403, code: "denied"},
		{note: "deny with status 0", literal: `{"allow": false, "status": 0}`, status: 403, code: "denied"},
		{note: "deny with status 302", literal: `{"allow": false, "status": 302, "code": "moved"}`, status: 403, code: "denied"},
		{note: "deny with status 999", literal: `{"allow": false, "status": 999, "code": "weird"}`, status: 403, code: "denied"},
		{note: "deny with status -1", literal: `{"allow": false, "status": -1}`, status: 403, code: "denied"},
		{note: "deny without status", literal: `{"allow": false}`, status: 403, code: "denied"},
		{note: "empty decision", literal: `{}`, status: 403, code: "denied"},
		{note: "code and message of the wrong type", literal: `{"allow": false, "status": 401, "code": 7, "message": ["x"]}`, status: 401, code: "denied"},
		{note: "huge code", literal: `{"allow": false, "status": 403, "code": "` + huge + `"}`, status: 403, code: "denied"},
		{note: "code that is no token", literal: `{"allow": false, "status": 403, "code": "bad code\r\nX-Injected: 1"}`, status: 403, code: "denied"},
		{note: "huge message", literal: `{"allow": false, "status": 403, "code": "forbidden", "message": "` + huge + `"}`, status: 403, code: "forbidden"},
		{note: "huge endpoint on an allow", literal: `{"allow": true, "status": 200, "endpoint": "` + huge + `"}`, status: 503, code: "policy_error"},
		{note: "huge permission on a deny", literal: `{"allow": false, "status": 404, "permission": "` + huge + `"}`, status: 503, code: "policy_error"},
		// The content id is the server's parse of the path: one the policy
		// answers is ignored, however long.
		{note: "huge contentId on a deny is ignored", literal: `{"allow": false, "status": 404, "code": "not_found", "contentId": "` + huge + `"}`, status: 404, code: "not_found"},
		{note: "undefined decision", rule: `decision := {"allow": true} if input.never == "never"`, stubErr: engine.ErrUndefined, status: 503, code: "policy_error"},
		{note: "not an object", rule: `decision := true`, stubErr: engine.ErrNotObject, status: 503, code: "policy_error"},
		{note: "evaluation past the timeout", rule: slowRule, stubErr: fmt.Errorf("evaluate: %w after 100ms", context.DeadlineExceeded), status: 503, code: "policy_error"},
	}
}

// stubDecider answers every decision with one value or error; everything
// else is the real engine's.
type stubDecider struct {
	*engine.Engine
	value ast.Value
	err   error
}

func (s stubDecider) Decide(ctx context.Context, entrypoint string, input ast.Value) (engine.Decision, error) {
	d := engine.Decision{Revision: s.Revision()}
	if s.err != nil {
		return d, s.err
	}
	d.Value = s.value.(ast.Object)
	return d, nil
}

// brokenEngine loads a policy directory whose entrypoints all
// evaluate rule, with a 100 ms evaluation timeout.
func brokenEngine(t *testing.T, rule string) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range []string{"content", "management", "keys", "network", "legacy"} {
		if err := os.MkdirAll(filepath.Join(dir, pkg), 0o755); err != nil {
			t.Fatal(err)
		}
		src := "package " + pkg + "\n\n" + rule + "\n"
		if pkg == "legacy" { // its entrypoints are migration and selection
			src = "package legacy\n\n" + strings.ReplaceAll(rule, "decision", "migration") + "\n\n" + strings.ReplaceAll(rule, "decision", "selection") + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, pkg, pkg+".rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := engine.New(t.Context(), dir, engine.Options{Timeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestMisbehavingPolicy: every malformed answer a policy can give is a
// deny with a 4xx/5xx status, a stable code and a bounded message, on
// /v1/decide (both APIs) and /v1/forward-auth, whether the answer comes
// from a stub or from a real Rego file loaded by the engine.
func TestMisbehavingPolicy(t *testing.T) {
	eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	for _, tc := range policyFaults() {
		rule := tc.rule
		if rule == "" {
			rule = "decision := " + tc.literal
		}
		t.Run(tc.note+"/rego", func(t *testing.T) {
			h := server.New(brokenEngine(t, rule), store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			checkPolicyFault(t, h, tc)
		})
		t.Run(tc.note+"/stub", func(t *testing.T) {
			stub := stubDecider{Engine: eng, err: tc.stubErr}
			if tc.literal != "" {
				stub.value = ast.MustParseTerm(tc.literal).Value
			}
			h := server.New(stub, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			checkPolicyFault(t, h, tc)
		})
	}
}

func checkPolicyFault(t *testing.T, h http.Handler, tc policyFault) {
	t.Helper()
	// Asked twice: a malformed answer must not be cached as something else.
	for range 2 {
		for _, api := range []string{"content", "management"} {
			start := time.Now()
			rec := postDecide(t, h, `{"service":"team-demo","api":"`+api+`","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("%s: decided in %s", api, took)
			}
			var d struct {
				Allow   bool   `json:"allow"`
				Status  int    `json:"status"`
				Code    string `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &d); rec.Code != http.StatusOK || err != nil {
				t.Fatalf("%s: /v1/decide answered %d %.200s", api, rec.Code, rec.Body)
			}
			if d.Allow || d.Status != tc.status || d.Code != tc.code {
				t.Errorf("%s: /v1/decide allow=%v status=%d code=%.80q, want a deny %d %q", api, d.Allow, d.Status, d.Code, tc.status, tc.code)
			}
			if n := len(d.Message); n == 0 || n > 512 {
				t.Errorf("%s: message of %d bytes, want 1..512", api, n)
			}
			if n := rec.Body.Len(); n > 4096 {
				t.Errorf("%s: answer of %d bytes, want a few hundred", api, n)
			}
		}

		req := httptest.NewRequest(http.MethodGet, "/v1/forward-auth", nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/api/v1/blogs")
		req.Header.Set("X-Forwarded-Host", "team-demo.microcms.io")
		req.Header.Set("X-MICROCMS-API-KEY", "team-demo-read-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		want := http.StatusForbidden
		if tc.status == http.StatusUnauthorized {
			want = http.StatusUnauthorized
		}
		hd := rec.Header()
		if rec.Code != want || hd.Get("X-Keygate-Status") != fmt.Sprint(tc.status) || hd.Get("X-Keygate-Code") != tc.code {
			t.Errorf("/v1/forward-auth answered %d (X-Keygate-Status %q, code %.80q), want %d (%d, %q)",
				rec.Code, hd.Get("X-Keygate-Status"), hd.Get("X-Keygate-Code"), want, tc.status, tc.code)
		}
		if n := len(hd.Get("X-Keygate-Message")); n == 0 || n > 512 {
			t.Errorf("X-Keygate-Message of %d bytes, want 1..512", n)
		}
		// What a proxy must buffer: nginx's default is 4-8 KiB.
		size := 0
		for k, vs := range hd {
			for _, v := range vs {
				size += len(k) + len(v) + 4
			}
		}
		if size > 4096 || rec.Body.Len() > 1024 {
			t.Errorf("forward-auth answer of %d header bytes and %d body bytes", size, rec.Body.Len())
		}
	}
}

// TestWellFormedDecisionsPass is the control of TestMisbehavingPolicy:
// a decision that keeps the contract reaches the client unchanged.
func TestWellFormedDecisionsPass(t *testing.T) {
	_, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	for _, tc := range []struct {
		note, literal string
		allow         bool
		status        int
		code, message string
	}{
		{"allow with status 200", `{"allow": true, "status": 200, "code": "allowed"}`, true, 200, "allowed", ""},
		{"allow without status", `{"allow": true}`, true, 200, "allowed", ""},
		{"deny with its own code and message", `{"allow": false, "status": 400, "code": "method_not_allowed", "message": "POST is forbidden."}`, false, 400, "method_not_allowed", "POST is forbidden."},
		{"deny without message", `{"allow": false, "status": 404, "code": "not_found"}`, false, 404, "not_found", "Not Found"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			h := server.New(brokenEngine(t, "decision := "+tc.literal), store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			rec := postDecide(t, h, `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`)
			var d struct {
				Allow   bool   `json:"allow"`
				Status  int    `json:"status"`
				Code    string `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow || d.Status != tc.status || d.Code != tc.code || d.Message != tc.message {
				t.Fatalf("got %+v, want allow=%v %d %q %q", d, tc.allow, tc.status, tc.code, tc.message)
			}
		})
	}
}
