package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestForwardAuth asks /v1/forward-auth the way nginx auth_request, Traefik
// ForwardAuth and Envoy ext_authz (HTTP service) do. Every answer is 200,
// 401 or 403 — the statuses those proxies accept — and the microCMS status
// and message travel in X-Keygate-* headers.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	f, k := newDecideFixture(t)

	nginx := func(method, uri, host, secret string) []string {
		h := []string{"X-Original-Method", method, "X-Original-URI", uri, "X-Forwarded-Host", host}
		if secret != "" {
			h = append(h, "X-MICROCMS-API-KEY", secret)
		}
		return h
	}
	traefik := func(method, uri, host, secret string) []string {
		return []string{"X-Forwarded-Method", method, "X-Forwarded-Uri", uri, "X-Forwarded-Host", host, "X-Forwarded-Proto", "https",
			"X-MICROCMS-API-KEY", secret}
	}
	envoyHost := func(host, secret string) []string { return []string{"Host", host, "X-MICROCMS-API-KEY", secret} }

	cases := []struct {
		note   string
		method string // of the request to keygate
		path   string
		header []string
		status int               // what keygate answers the proxy
		want   map[string]string // X-Keygate-* headers
	}{
		{"nginx allows", "GET", "/v1/forward-auth", nginx("GET", "/api/v1/blogs/abc?draftKey=xyz", "team-demo.microcms.io", demoReadKey), 200,
			map[string]string{"Status": "200", "Code": "allowed", "Message": "", "Key-Id": "team-demo-read", "Endpoint": "blogs", "Content-Id": "abc",
				"Permission": "get", "Drafts": "false", "Closed": "false", "Draft-Key": "true", "Filter-On": "published"}},
		{"nginx: microCMS's 400 travels in headers", "GET", "/v1/forward-auth", nginx("POST", "/api/v1/blogs", "team-demo.microcms.io", demoReadKey), 403,
			map[string]string{"Status": "400", "Code": "method_forbidden", "Message": "POST is forbidden.", "Permission": "post", "Draft-Key": "false"}},
		{"nginx: no key", "GET", "/v1/forward-auth", nginx("GET", "/api/v1/blogs", "team-demo.microcms.io", ""), 401,
			map[string]string{"Status": "401", "Code": "invalid_api_key", "Message": invalidKeyMessage, "Key-Id": ""}},
		{"nginx: unknown key", "GET", "/v1/forward-auth", nginx("GET", "/api/v1/blogs", "team-demo.microcms.io", unknownSecret), 401,
			map[string]string{"Status": "401", "Message": invalidKeyMessage}},
		{"nginx: key of another service", "GET", "/v1/forward-auth", nginx("GET", "/api/v1/blogs", "hobby-demo.microcms.io", demoReadKey), 401,
			map[string]string{"Status": "401", "Message": invalidKeyMessage}},
		{"nginx: policy 404", "GET", "/v1/forward-auth", nginx("GET", "/favicon.ico", "team-demo.microcms.io", demoReadKey), 403,
			map[string]string{"Status": "404", "Code": "not_found", "Message": "Not found."}},
		{"nginx: policy 405", "GET", "/v1/forward-auth", nginx("OPTIONS", "/api/v1/blogs", "team-demo.microcms.io", demoReadKey), 403,
			map[string]string{"Status": "405", "Code": "method_not_allowed", "Message": "OPTIONS is not allowed."}},
		{"nginx: status parameter on hobby", "GET", "/v1/forward-auth", nginx("POST", "/api/v1/blogs?status=draft", "hobby-demo.microcms.io", k.hobbyWriter), 403,
			map[string]string{"Status": "400", "Code": "plan_feature_unavailable", "Message": planFeatureNA}},
		{"nginx: unusable URI", "GET", "/v1/forward-auth", nginx("GET", "api/v1/blogs", "team-demo.microcms.io", demoReadKey), 403,
			map[string]string{"Status": "400", "Code": "invalid_forward_request"}},
		{"traefik: drafts and closed", "GET", "/v1/forward-auth", traefik("GET", "/api/v1/blogs", "business-demo.microcms.io", k.preview), 200,
			map[string]string{"Status": "200", "Drafts": "true", "Closed": "true", "Draft-Key": "false", "Filter-On": "published"}},
		{"traefik: individual permission", "GET", "/v1/forward-auth", traefik("PUT", "/api/v1/blogs/abc", "business-demo.microcms.io", k.seed), 200,
			map[string]string{"Status": "200", "Permission": "put", "Content-Id": "abc"}},
		{"traefik: individual replaces default", "GET", "/v1/forward-auth", traefik("GET", "/api/v1/blogs/abc", "business-demo.microcms.io", k.seed), 403,
			map[string]string{"Status": "400", "Message": "GET is forbidden."}},
		{"traefik: management host", "GET", "/v1/forward-auth", traefik("GET", "/api/v2/media", "business-demo.microcms-management.io", k.management), 200,
			map[string]string{"Status": "200", "Permission": "getMedia"}},
		{"traefik: management denied", "GET", "/v1/forward-auth", traefik("POST", "/api/v1/media", "business-demo.microcms-management.io", k.management), 403,
			map[string]string{"Status": "403", "Code": "forbidden", "Message": "Forbidden"}},
		{"traefik: upper-case host", "GET", "/v1/forward-auth", traefik("GET", "/api/v1/news", "TEAM-DEMO.microCMS.io", demoReadKey), 200,
			map[string]string{"Status": "200", "Endpoint": "news"}},
		{"envoy allows", "GET", "/v1/forward-auth/api/v1/blogs/abc?draftKey=k", envoyHost("team-demo.microcms.io", demoReadKey), 200,
			map[string]string{"Status": "200", "Content-Id": "abc", "Draft-Key": "true"}},
		{"envoy: host with port", "HEAD", "/v1/forward-auth/api/v1/blogs", envoyHost("team-demo.microcms.io:443", demoReadKey), 200,
			map[string]string{"Status": "200", "Permission": "get"}},
		{"envoy: DELETE forbidden", "DELETE", "/v1/forward-auth/api/v1/blogs/abc", envoyHost("team-demo.microcms.io", demoReadKey), 403,
			map[string]string{"Status": "400", "Message": "DELETE is forbidden."}},
		{"envoy: writer", "PATCH", "/v1/forward-auth/api/v1/blogs/abc", envoyHost("business-demo.microcms.io", k.businessWriter), 200,
			map[string]string{"Status": "200", "Permission": "patch"}},
		{"envoy: management", "PATCH", "/v1/forward-auth/api/v1/contents/blogs/abc/status", envoyHost("business-demo.microcms-management.io", k.management), 200,
			map[string]string{"Status": "200", "Permission": "patchContentStatus"}},
		{"service header", "GET", "/v1/forward-auth", append(nginx("GET", "/api/v1/blogs", "127.0.0.1", demoReadKey), "X-Keygate-Service", "team-demo"), 200,
			map[string]string{"Status": "200"}},
		{"service and api headers", "GET", "/v1/forward-auth",
			append(nginx("GET", "/api/v1/media", "localhost", k.management), "X-Keygate-Service", "business-demo", "X-Keygate-Api", "management"), 200,
			map[string]string{"Status": "200", "Permission": "getMedia"}},
		{"service header names the wrong service", "GET", "/v1/forward-auth",
			append(nginx("GET", "/api/v1/blogs", "team-demo.microcms.io", demoReadKey), "X-Keygate-Service", "business-demo"), 401,
			map[string]string{"Status": "401"}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			r := f.do(t, tc.method, tc.path, nil, tc.header...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%s; X-Keygate-Status %s)", r.status, tc.status, r.body, r.header.Get("X-Keygate-Status"))
			}
			for name, want := range tc.want {
				if got := r.header.Get("X-Keygate-" + name); got != want {
					t.Errorf("X-Keygate-%s = %q, want %q", name, got, want)
				}
			}
			id := r.header.Get("X-Keygate-Decision-Id")
			if tc.want["Code"] != "invalid_forward_request" {
				if id == "" || r.header.Get("X-Keygate-Policy-Revision") == "" {
					t.Errorf("no decision id or policy revision in %v", r.header)
				}
				f.addDecision(id)
			}
			if r.status != http.StatusOK && tc.method != http.MethodHead {
				var body struct {
					Message string `json:"message"`
				}
				if err := json.Unmarshal(r.body, &body); err != nil || body.Message == "" {
					t.Errorf("deny body %q is not microCMS's {\"message\"}", r.body)
				}
				if m := tc.want["Message"]; m != "" && body.Message != m {
					t.Errorf("body message %q, want %q", body.Message, m)
				}
			}
		})
	}
}
