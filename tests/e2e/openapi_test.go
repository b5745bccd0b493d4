package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/server/openapi"
)

// TestOpenAPIServed: the binary serves the document it was built with.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := f.do(t, http.MethodGet, "/v1/openapi.json", nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, openapi.Document()) {
		t.Fatalf("GET /v1/openapi.json: %d, %d bytes; want 200 and the embedded document (%d bytes)", r.status, len(r.body), len(openapi.Document()))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	r.decode(t, &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
}

// TestOpenAPIAnswers produces the documented answers the feature tests do
// not: HEAD on every GET route, the refusals of each endpoint, the legacy
// import over HTTP, forward-auth under every method. Each answer is checked
// here for its status and code, and by the client's contract transport
// against the document (schema, headers, no undocumented member).
func TestOpenAPIAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const (
		svc     = "business-demo"
		legacy1 = "legacy-tour-read-value-0001"
		legacy2 = "legacy-tour-draft-value-0002"
	)
	f.addSecret(legacy1)
	f.addSecret(legacy2)
	admin, editor := bearer(adminToken(svc)), bearer(editorToken(svc))
	key := f.createKey(t, svc, map[string]any{"name": "tour", "contentApi": map[string]any{"default": map[string]bool{"get": true}}})
	keyPath := keysPath(svc, key.Key.ID)
	big := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	nginx := func(method string, extra ...string) []string {
		return append([]string{"X-Original-Method", method, "X-Original-URI", "/api/v1/blogs", "X-Forwarded-Host", "team-demo.microcms.io"}, extra...)
	}
	legacyBody := func(header, value string) map[string]any {
		return map[string]any{"keys": []map[string]string{{"header": header, "value": value, "name": "old"}}}
	}
	for _, tc := range []struct {
		note         string
		method, path string
		body         any
		header       []string
		status       int
		code         string // of a problem answer
	}{
		{note: "HEAD health", method: http.MethodHead, path: "/health", status: 200},
		{note: "HEAD policies", method: http.MethodHead, path: "/v1/policies", status: 200},
		{note: "HEAD history", method: http.MethodHead, path: "/v1/policies/history", status: 200},
		{note: "HEAD metrics", method: http.MethodHead, path: "/metrics", status: 200},
		{note: "HEAD openapi", method: http.MethodHead, path: "/v1/openapi.json", status: 200},
		{note: "HEAD key list", method: http.MethodHead, path: keysPath(svc), header: admin, status: 200},
		{note: "HEAD key list without token", method: http.MethodHead, path: keysPath(svc), status: 401},
		{note: "HEAD key list as editor", method: http.MethodHead, path: keysPath(svc), header: editor, status: 403},
		{note: "HEAD key", method: http.MethodHead, path: keyPath, header: admin, status: 200},
		{note: "HEAD unknown key", method: http.MethodHead, path: keysPath(svc, "key_nope"), header: admin, status: 404},
		{note: "HEAD key without token", method: http.MethodHead, path: keyPath, status: 401},
		{note: "HEAD key as editor", method: http.MethodHead, path: keyPath, header: editor, status: 403},
		{note: "HEAD audit", method: http.MethodHead, path: "/v1/services/" + svc + "/audit", header: admin, status: 200},
		{note: "HEAD audit bad limit", method: http.MethodHead, path: "/v1/services/" + svc + "/audit?limit=0", header: admin, status: 400},
		{note: "HEAD audit without token", method: http.MethodHead, path: "/v1/services/" + svc + "/audit", status: 401},
		{note: "HEAD audit as editor", method: http.MethodHead, path: "/v1/services/" + svc + "/audit", header: editor, status: 403},
		{note: "HEAD ip-restrictions", method: http.MethodHead, path: "/v1/services/" + svc + "/ip-restrictions", header: admin, status: 200},
		{note: "HEAD ip-restrictions without token", method: http.MethodHead, path: "/v1/services/" + svc + "/ip-restrictions", status: 401},
		{note: "HEAD ip-restrictions as editor", method: http.MethodHead, path: "/v1/services/" + svc + "/ip-restrictions", header: editor, status: 403},

		{note: "audit: unknown parameter", method: http.MethodGet, path: "/v1/services/" + svc + "/audit?page=2", header: admin, status: 400, code: "invalid_query"},
		{note: "audit: limit over 100", method: http.MethodGet, path: "/v1/services/" + svc + "/audit?limit=101", header: admin, status: 400, code: "invalid_query"},
		// A member of another service learns nothing of which services exist.
		{note: "keys of an unknown service", method: http.MethodGet, path: keysPath("no-such-service"), header: admin, status: 403, code: "forbidden"},
		{note: "create on an unknown service", method: http.MethodPost, path: keysPath("no-such-service"), body: map[string]string{"name": "x"}, header: admin, status: 403, code: "forbidden"},
		{note: "ip-restrictions of an unknown service", method: http.MethodGet, path: "/v1/services/no-such-service/ip-restrictions", header: admin, status: 403, code: "forbidden"},
		{note: "ip-restrictions: not JSON", method: http.MethodPut, path: "/v1/services/" + svc + "/ip-restrictions", body: "default=1", header: append([]string{"Content-Type", "text/plain"}, admin...), status: 415, code: "unsupported_media_type"},
		{note: "ip-restrictions: too large", method: http.MethodPut, path: "/v1/services/" + svc + "/ip-restrictions", body: big, header: admin, status: 413, code: "body_too_large"},
		{note: "rotate: malformed Idempotency-Key", method: http.MethodPost, path: keyPath + "/rotate", header: append([]string{"Idempotency-Key", strings.Repeat("k", 129)}, admin...), status: 400, code: "invalid_idempotency_key"},
		{note: "delete: malformed Idempotency-Key", method: http.MethodDelete, path: keyPath, header: append([]string{"Idempotency-Key", "has space"}, admin...), status: 400, code: "invalid_idempotency_key"},
		{note: "rotate with an Idempotency-Key", method: http.MethodPost, path: keyPath + "/rotate", header: append([]string{"Idempotency-Key", "tour-rotate-1"}, admin...), status: 200},
		{note: "rotate replayed", method: http.MethodPost, path: keyPath + "/rotate", header: append([]string{"Idempotency-Key", "tour-rotate-1"}, admin...), status: 200},
		{note: "create with an Idempotency-Key", method: http.MethodPost, path: keysPath(svc), body: map[string]string{"name": "tour 2"}, header: append([]string{"Idempotency-Key", "tour-create-1"}, admin...), status: 201},
		{note: "rotate reusing the create's Idempotency-Key", method: http.MethodPost, path: keyPath + "/rotate", header: append([]string{"Idempotency-Key", "tour-create-1"}, admin...), status: 422, code: "idempotency_key_reused"},
		{note: "delete reusing the rotation's Idempotency-Key", method: http.MethodDelete, path: keyPath, header: append([]string{"Idempotency-Key", "tour-rotate-1"}, admin...), status: 422, code: "idempotency_key_reused"},

		{note: "legacy import", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: legacyBody("X-API-KEY", legacy1), header: admin, status: 200},
		{note: "legacy import again", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: legacyBody("X-API-KEY", legacy1), header: admin, status: 200},
		{note: "legacy import of an unknown header", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: legacyBody("X-OTHER-KEY", legacy2), header: admin, status: 200},
		{note: "legacy import with write methods", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys",
			body: map[string]any{"keys": []map[string]string{{"header": "X-WRITE-API-KEY", "value": legacy2}}, "writeMethods": map[string][]string{"blogs": {"POST"}}}, header: admin, status: 200},
		{note: "legacy import of no key", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: map[string]any{"keys": []any{}}, header: admin, status: 400, code: "invalid_field"},
		{note: "legacy import: unknown member", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: map[string]any{"keys": []any{}, "dryRun": true}, header: admin, status: 400, code: "unknown_field"},
		{note: "legacy import without token", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: legacyBody("X-API-KEY", legacy1), status: 401, code: "unauthenticated"},
		{note: "legacy import as editor", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: legacyBody("X-API-KEY", legacy1), header: editor, status: 403, code: "forbidden"},
		{note: "legacy import: not JSON", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: "keys", header: append([]string{"Content-Type", "text/plain"}, admin...), status: 415, code: "unsupported_media_type"},
		{note: "legacy import: too large", method: http.MethodPost, path: "/v1/services/" + svc + "/legacy-keys", body: big, header: admin, status: 413, code: "body_too_large"},

		{note: "forward-auth POST", method: http.MethodPost, path: "/v1/forward-auth", header: nginx("GET", "X-MICROCMS-API-KEY", demoReadKey), status: 200},
		{note: "forward-auth PUT", method: http.MethodPut, path: "/v1/forward-auth", header: nginx("GET"), status: 401},
		{note: "forward-auth PATCH", method: http.MethodPatch, path: "/v1/forward-auth", header: nginx("DELETE", "X-MICROCMS-API-KEY", demoReadKey), status: 403},
		{note: "forward-auth DELETE", method: http.MethodDelete, path: "/v1/forward-auth", header: nginx("GET", "X-MICROCMS-API-KEY", demoReadKey), status: 200},
		{note: "forward-auth OPTIONS", method: http.MethodOptions, path: "/v1/forward-auth", header: nginx("GET", "X-MICROCMS-API-KEY", demoReadKey), status: 200},
		{note: "forward-auth HEAD", method: http.MethodHead, path: "/v1/forward-auth", header: nginx("GET"), status: 401},
		{note: "forward-auth TRACE", method: http.MethodTrace, path: "/v1/forward-auth", header: nginx("GET", "X-MICROCMS-API-KEY", demoReadKey), status: 200},
		{note: "forward-auth PROPFIND (Envoy)", method: "PROPFIND", path: "/v1/forward-auth/api/v1/blogs", header: []string{"Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey}, status: 403},
		{note: "forward-auth Envoy GET", method: http.MethodGet, path: "/v1/forward-auth/api/v1/blogs", header: []string{"Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey}, status: 200},

		{note: "no such route", method: http.MethodGet, path: "/v1/nope", status: 404, code: "not_found"},
		{note: "no such method", method: http.MethodDelete, path: "/v1/decide", status: 405, code: "method_not_allowed"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			r := f.do(t, tc.method, tc.path, tc.body, tc.header...)
			if tc.code != "" && tc.method != http.MethodHead {
				r.problem(t, tc.status, tc.code)
				return
			}
			if r.status != tc.status {
				t.Fatalf("%s %s: %d, want %d; body %.300s", tc.method, tc.path, r.status, tc.status, r.body)
			}
			var secret struct {
				Secret string `json:"secret"`
			}
			if json.Unmarshal(r.body, &secret) == nil {
				f.addSecret(secret.Secret)
			}
			if id := r.header.Get("X-Keygate-Decision-Id"); id != "" {
				f.addDecision(id)
			}
			if strings.HasSuffix(tc.path, "/legacy-keys") && tc.status == http.StatusOK {
				var res struct {
					Results []struct {
						Result string `json:"result"`
					} `json:"results"`
				}
				if err := json.Unmarshal(r.body, &res); err != nil || len(res.Results) != 1 {
					t.Fatalf("legacy import answered %s", r.body)
				}
				t.Logf("legacy import: %s", res.Results[0].Result)
			}
		})
	}
}

// TestContractCatchesDrift: the contract check fails each kind of drift the
// e2e tests rely on it to catch, and passes the answers it must accept.
func TestContractCatchesDrift(t *testing.T) {
	t.Parallel()
	problemJSON := func(status int, code string) string {
		return `{"type":"https://keygate.dev/problems/x","title":"T","status":` + strconv.Itoa(status) + `,"detail":"d","instance":"/x","code":"` + code + `"}`
	}
	const decision = `{"decisionId":"d1","allow":true,"status":200,"code":"allowed","message":"","permission":"get","endpoint":"blogs",` +
		`"contentId":"","keyId":"k","visibility":{"published":true,"drafts":false,"closed":false,"draftKey":false,"filterOn":"published"},"policyRevision":"r"}`
	validDecide := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"k"}`
	fwd := []string{"X-Keygate-Status", "403", "X-Keygate-Code", "forbidden", "X-Keygate-Message", "Forbidden"}
	for _, tc := range []struct {
		note         string
		method, path string
		reqBody      string
		status       int
		ctype        string
		header       []string
		body         string
		want         string // in the failure; "" for none
	}{
		{"the router's 404 for an undocumented path", "GET", "/v1/nope", "", 404, "application/problem+json", nil, problemJSON(404, "not_found"), ""},
		{"an undocumented path answered", "GET", "/v1/nope", "", 200, "application/json", nil, `{}`, "undocumented endpoint"},
		{"the router's 405 for an undocumented method", "DELETE", "/v1/decide", "", 405, "application/problem+json", nil, problemJSON(405, "method_not_allowed"), ""},
		{"an undocumented method answered", "DELETE", "/v1/decide", "", 200, "application/json", nil, decision, "undocumented method"},
		{"a documented answer", "POST", "/v1/decide", validDecide, 200, "application/json; charset=utf-8", nil, decision, ""},
		{"an undocumented member", "POST", "/v1/decide", validDecide, 200, "application/json", nil, strings.Replace(decision, `"d1"`, `"d1","extra":1`, 1), "extra"},
		{"a missing member", "POST", "/v1/decide", validDecide, 200, "application/json", nil, strings.Replace(decision, `"keyId":"k",`, "", 1), "keyId"},
		{"an undocumented status", "POST", "/v1/decide", validDecide, 418, "application/problem+json", nil, problemJSON(418, "teapot"), "status 418 is not documented"},
		{"an undocumented content type", "POST", "/v1/decide", validDecide, 200, "text/plain", nil, decision, "text/plain"},
		{"a problem without its code", "POST", "/v1/decide", validDecide, 400, "application/problem+json", nil, `{"type":"t","title":"T","status":400}`, "code"},
		{"a malformed request refused", "POST", "/v1/decide", `{"service":"team-demo","nope":1}`, 400, "application/problem+json", nil, problemJSON(400, "unknown_field"), ""},
		{"a malformed request accepted", "POST", "/v1/decide", `{"service":"team-demo","nope":1}`, 200, "application/json", nil, decision, "the document refuses this request"},
		{"a malformed request refused with an undocumented body", "POST", "/v1/decide", `{`, 400, "application/json", nil, `{"error":"x"}`, "application/json"},
		{"a key list without a token refused", "GET", "/v1/services/team-demo/keys", "", 401, "application/problem+json", nil, problemJSON(401, "unauthenticated"), ""},
		{"forward-auth under a method OpenAPI cannot name", "PROPFIND", "/v1/forward-auth/api/v1/blogs", "", 403, "application/json", fwd, `{"message":"Forbidden"}`, ""},
		{"forward-auth without its status header", "GET", "/v1/forward-auth", "", 403, "application/json", fwd[2:], `{"message":"Forbidden"}`, "X-Keygate-Status"},
		{"forward-auth with an undocumented status", "GET", "/v1/forward-auth", "", 400, "application/json", fwd, `{"message":"Forbidden"}`, "status 400 is not documented"},
		{"a body where none is documented", "GET", "/v1/forward-auth", "", 200, "text/plain", fwd, "ok", "without a body"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			var body io.Reader
			if tc.reqBody != "" {
				body = strings.NewReader(tc.reqBody)
			}
			req, err := http.NewRequestWithContext(t.Context(), tc.method, "http://127.0.0.1:1"+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{"Content-Type": {tc.ctype}}}
			for i := 0; i+1 < len(tc.header); i += 2 {
				resp.Header.Set(tc.header[i], tc.header[i+1])
			}
			got := apiContract.check(req, []byte(tc.reqBody), resp, []byte(tc.body))
			switch {
			case tc.want == "" && got != "":
				t.Fatalf("failed: %s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Fatalf("check = %q, want a failure naming %q", got, tc.want)
			}
		})
	}
}
