package main

import (
	"net/http"
	"testing"
)

// TestForwardAuthConventions calls keygate's /v1/forward-auth the way each gateway does, without
// the gateway (Traefik and Envoy are not installed here):
//
//   - nginx auth_request: GET with X-Original-Method, X-Original-URI, X-Forwarded-Host;
//   - Traefik ForwardAuth: GET with X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host,
//     X-Forwarded-Proto, X-Forwarded-For (and, unless authRequestHeaders limits them, every client
//     header);
//   - Envoy ext_authz (HTTP service): the original method, path_prefix + the original path and
//     query as the path, the original Host, Content-Length: 0, and the headers allowed_headers
//     lets through.
//
// Each answers 200, 401 or 403 with the microCMS status and message and the visibility headers.
func TestForwardAuthConventions(t *testing.T) {
	kg := newKeygate(t)
	k := createKey(t, kg.URL, "business-demo",
		`{"name":"fa","contentApi":{"default":{"get":true,"getAllDrafts":true},"individual":{"contact":{"post":true}}},"managementApi":{"getMedia":true}}`)

	nginx := func(method, host, uri, key string) request {
		return request{path: "/v1/forward-auth", key: key, header: map[string]string{
			"X-Original-Method": method, "X-Original-URI": uri, "X-Forwarded-Host": host,
		}}
	}
	traefik := func(method, host, uri, key string) request {
		return request{path: "/v1/forward-auth", key: key, header: map[string]string{
			"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-Forwarded-Host": host,
			"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7",
		}}
	}
	envoy := func(method, host, uri, key string) request {
		return request{method: method, path: "/v1/forward-auth" + uri, key: key, header: map[string]string{
			"Host": host, "X-Forwarded-Proto": "https", "X-Request-Id": "3f2c0b7e-envoy",
		}}
	}
	conventions := []struct {
		name  string
		build func(method, host, uri, key string) request
	}{
		{"nginx", nginx},
		{"traefik", traefik},
		{"envoy", envoy},
	}

	tests := []struct {
		note       string
		method     string
		host       string
		uri        string
		key        string
		want       int               // forward-auth status: 200, 401 or 403
		wantStatus string            // X-Keygate-Status: microCMS's status
		wantMsg    string            // X-Keygate-Message
		wantHeader map[string]string // further X-Keygate-* headers
	}{
		{note: "allowed list with drafts", method: "GET", host: businessContent, uri: "/api/v1/blogs?limit=5", key: k.secret,
			want: 200, wantStatus: "200",
			wantHeader: map[string]string{"X-Keygate-Key-Id": k.id, "X-Keygate-Endpoint": "blogs", "X-Keygate-Permission": "get",
				"X-Keygate-Drafts": "true", "X-Keygate-Closed": "false", "X-Keygate-Draft-Key": "false", "X-Keygate-Filter-On": "published"}},
		{note: "single fetch with draftKey", method: "GET", host: businessContent, uri: "/api/v1/blogs/draft-1?draftKey=dk-draft-1", key: k.secret,
			want: 200, wantStatus: "200",
			wantHeader: map[string]string{"X-Keygate-Content-Id": "draft-1", "X-Keygate-Draft-Key": "true"}},
		{note: "individual POST", method: "POST", host: businessContent, uri: "/api/v1/contact", key: k.secret,
			want: 200, wantStatus: "200", wantHeader: map[string]string{"X-Keygate-Permission": "post", "X-Keygate-Drafts": "false"}},
		{note: "missing key", method: "GET", host: businessContent, uri: "/api/v1/blogs",
			want: 401, wantStatus: "401", wantMsg: msgInvalidKey},
		{note: "key of another service", method: "GET", host: businessContent, uri: "/api/v1/blogs", key: teamReadKey,
			want: 401, wantStatus: "401", wantMsg: msgInvalidKey},
		{note: "GET replaced by the individual entry", method: "GET", host: businessContent, uri: "/api/v1/contact", key: k.secret,
			want: 403, wantStatus: "400", wantMsg: "GET is forbidden."},
		{note: "DELETE without permission", method: "DELETE", host: businessContent, uri: "/api/v1/blogs/published-1", key: k.secret,
			want: 403, wantStatus: "400", wantMsg: "DELETE is forbidden."},
		{note: "management allowed", method: "GET", host: businessManagement, uri: "/api/v2/media", key: k.secret,
			want: 200, wantStatus: "200", wantHeader: map[string]string{"X-Keygate-Permission": "getMedia"}},
		{note: "management denied", method: "POST", host: businessManagement, uri: "/api/v1/media", key: k.secret,
			want: 403, wantStatus: "403", wantMsg: msgForbidden},
		{note: "management unknown route", method: "GET", host: businessManagement, uri: "/api/v1/whatever", key: k.secret,
			want: 403, wantStatus: "403", wantMsg: msgForbidden},
	}
	for _, conv := range conventions {
		t.Run(conv.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.note, func(t *testing.T) {
					got := do(t, kg.URL, conv.build(tc.method, tc.host, tc.uri, tc.key))
					if got.status != tc.want {
						t.Errorf("forward-auth status = %d, want %d (%s)", got.status, tc.want, got)
					}
					want := map[string]string{"X-Keygate-Status": tc.wantStatus, "X-Keygate-Message": tc.wantMsg}
					for name, v := range tc.wantHeader {
						want[name] = v
					}
					for name, w := range want {
						if v := got.header.Get(name); v != w {
							t.Errorf("%s = %q, want %q", name, v, w)
						}
					}
					for _, name := range []string{"X-Keygate-Decision-Id", "X-Keygate-Policy-Revision"} {
						if got.header.Get(name) == "" {
							t.Errorf("no %s header", name)
						}
					}
				})
			}
		})
	}

	// Where the host does not name the service or the API (an internal host name, a path-based
	// route), the gateway says so with X-Keygate-Service and X-Keygate-Api.
	t.Run("service and API named by headers", func(t *testing.T) {
		tests := []struct {
			note       string
			header     map[string]string
			want       int
			wantStatus string
		}{
			{"service header", map[string]string{"X-Keygate-Service": "business-demo", "X-Forwarded-Uri": "/api/v1/blogs", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "cms.internal"}, 200, "200"},
			{"management by header", map[string]string{"X-Keygate-Service": "business-demo", "X-Keygate-Api": "management", "X-Forwarded-Uri": "/api/v1/media", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "cms.internal"}, 200, "200"},
			{"management by header, no permission", map[string]string{"X-Keygate-Service": "business-demo", "X-Keygate-Api": "management", "X-Forwarded-Uri": "/api/v1/members", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "cms.internal"}, 403, "403"},
			// A host that is not <service>.microcms.io or <service>.microcms-management.io names no
			// service: a deny, never a guess from its first label.
			{"no service anywhere", map[string]string{"X-Forwarded-Uri": "/api/v1/blogs", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "cms.internal"}, 403, "403"},
		}
		for _, tc := range tests {
			t.Run(tc.note, func(t *testing.T) {
				got := do(t, kg.URL, request{method: http.MethodGet, path: "/v1/forward-auth", key: k.secret, header: tc.header})
				if got.status != tc.want || got.header.Get("X-Keygate-Status") != tc.wantStatus {
					t.Errorf("got %d with X-Keygate-Status %q, want %d with %q (%s)",
						got.status, got.header.Get("X-Keygate-Status"), tc.want, tc.wantStatus, got)
				}
			})
		}
	})
}
