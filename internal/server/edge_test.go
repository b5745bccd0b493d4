package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/server"
)

// forwardAuth sends one forward-auth request to h. header holds name, value
// pairs; a name given twice is sent as two header lines, and "Host" sets
// the request's own host.
func forwardAuth(t *testing.T, h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Host = "keygate.internal:8181"
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestForwardAuthHostShapes is the class test of defect 1: the host names
// the service and the API only in exactly the shapes
// <label>.microcms.io and <label>.microcms-management.io (any case, one
// trailing dot, a port); a host of any other shape is a 403, and never a
// guess at a service or an API. GET /api/v1/members is a content read the
// demo key may do, and a management route it may not: which policy judged
// it shows.
func TestForwardAuthHostShapes(t *testing.T) {
	h := newFixture(t, server.Options{})
	const key = "team-demo-read-key" // team-demo, default GET only
	content := func(status int) [3]string { return [3]string{strconv.Itoa(status), "", "get"} }
	management := [3]string{"403", "forbidden", "getMembers"}
	deny := func(code string) [3]string { return [3]string{"403", code, ""} }
	long63 := strings.Repeat("a", 63)
	for _, tc := range []struct {
		note   string
		host   []string // header pairs naming the host (and service/api)
		want   int      // forward-auth status
		expect [3]string
	}{
		{"content host", []string{"X-Forwarded-Host", "team-demo.microcms.io"}, 200, content(200)},
		{"management host", []string{"X-Forwarded-Host", "team-demo.microcms-management.io"}, 403, management},
		{"management host, trailing dot", []string{"X-Forwarded-Host", "team-demo.microcms-management.io."}, 403, management},
		{"management host, upper case", []string{"X-Forwarded-Host", "TEAM-DEMO.MICROCMS-MANAGEMENT.IO"}, 403, management},
		{"management host with port", []string{"X-Forwarded-Host", "team-demo.microcms-management.io:443"}, 403, management},
		{"management host, trailing dot and port", []string{"X-Forwarded-Host", "team-demo.microcms-management.io.:443"}, 403, management},
		{"content host, trailing dot", []string{"X-Forwarded-Host", "team-demo.microcms.io."}, 200, content(200)},
		{"content host as Host (envoy)", []string{"Host", "team-demo.microcms.io:8443"}, 200, content(200)},
		{"management host as Host (envoy)", []string{"Host", "team-demo.microcms-management.io."}, 403, management},
		{"63-byte label, unknown service", []string{"X-Forwarded-Host", long63 + ".microcms.io"}, 401, content(401)},

		{"two trailing dots", []string{"X-Forwarded-Host", "team-demo.microcms-management.io.."}, 403, deny("invalid_host")},
		{"comma list", []string{"X-Forwarded-Host", "team-demo.microcms-management.io, x"}, 403, deny("invalid_host")},
		{"comma list without space", []string{"X-Forwarded-Host", "team-demo.microcms-management.io,team-demo.microcms.io"}, 403, deny("invalid_host")},
		{"two X-Forwarded-Host lines", []string{"X-Forwarded-Host", "team-demo.microcms.io", "X-Forwarded-Host", "team-demo.microcms-management.io"}, 403, deny("invalid_host")},
		{"trailing dot plus more", []string{"X-Forwarded-Host", "team-demo.microcms-management.io.x"}, 403, deny("invalid_host")},
		{"API domain inside another", []string{"X-Forwarded-Host", "team-demo.microcms.io.evil.example"}, 403, deny("invalid_host")},
		{"deeper name", []string{"X-Forwarded-Host", "a.team-demo.microcms.io"}, 403, deny("invalid_host")},
		{"bare domain", []string{"X-Forwarded-Host", "microcms-management.io"}, 403, deny("invalid_host")},
		{"empty label", []string{"X-Forwarded-Host", ".microcms.io"}, 403, deny("invalid_host")},
		{"empty inner label", []string{"X-Forwarded-Host", "team-demo..microcms.io"}, 403, deny("invalid_host")},
		{"label over 63 bytes", []string{"X-Forwarded-Host", long63 + "a.microcms.io"}, 403, deny("invalid_host")},
		{"label with underscore", []string{"X-Forwarded-Host", "team_demo.microcms.io"}, 403, deny("invalid_host")},
		{"label starting with a hyphen", []string{"X-Forwarded-Host", "-team.microcms.io"}, 403, deny("invalid_host")},
		{"empty port", []string{"X-Forwarded-Host", "team-demo.microcms.io:"}, 403, deny("invalid_host")},
		{"port not a number", []string{"X-Forwarded-Host", "team-demo.microcms.io:https"}, 403, deny("invalid_host")},
		{"space inside", []string{"X-Forwarded-Host", "team-demo .microcms.io"}, 403, deny("invalid_host")},
		{"userinfo", []string{"X-Forwarded-Host", "x@team-demo.microcms.io"}, 403, deny("invalid_host")},
		{"IPv4 literal", []string{"X-Forwarded-Host", "127.0.0.1"}, 403, deny("unknown_host")},
		{"IPv6 literal with port", []string{"Host", "[::1]:8181"}, 403, deny("unknown_host")},
		{"another domain", []string{"X-Forwarded-Host", "team-demo.example.com"}, 403, deny("unknown_host")},
		{"internal name", []string{"X-Forwarded-Host", "cms.internal"}, 403, deny("unknown_host")},

		{"service header with an internal host", []string{"X-Forwarded-Host", "cms.internal", "X-Keygate-Service", "team-demo"}, 200, content(200)},
		{"service header with an IP host", []string{"Host", "10.0.0.7:80", "X-Keygate-Service", "team-demo"}, 200, content(200)},
		{"service and management API headers", []string{"X-Forwarded-Host", "cms.internal", "X-Keygate-Service", "team-demo", "X-Keygate-Api", "management"}, 403, management},
		{"management API header on a management host", []string{"X-Forwarded-Host", "team-demo.microcms-management.io", "X-Keygate-Api", "management"}, 403, management},
		{"service header does not excuse a malformed host", []string{"X-Forwarded-Host", "a, b", "X-Keygate-Service", "team-demo"}, 403, deny("invalid_host")},
		{"service header not a service id", []string{"X-Forwarded-Host", "cms.internal", "X-Keygate-Service", "Team-Demo"}, 403, deny("invalid_service_header")},
		{"service header over 63 bytes", []string{"X-Forwarded-Host", "cms.internal", "X-Keygate-Service", long63 + "a"}, 403, deny("invalid_service_header")},
		{"service header twice", []string{"X-Forwarded-Host", "cms.internal", "X-Keygate-Service", "team-demo", "X-Keygate-Service", "hobby-demo"}, 403, deny("invalid_service_header")},
		{"api header of neither API", []string{"X-Forwarded-Host", "team-demo.microcms.io", "X-Keygate-Api", "mgmt"}, 403, deny("invalid_api_header")},
		{"api header contradicts a management host", []string{"X-Forwarded-Host", "team-demo.microcms-management.io", "X-Keygate-Api", "content"}, 403, deny("conflicting_api")},
		{"api header contradicts a content host", []string{"X-Forwarded-Host", "team-demo.microcms.io", "X-Keygate-Api", "management"}, 403, deny("conflicting_api")},
	} {
		t.Run(tc.note, func(t *testing.T) {
			hdr := append([]string{"X-Original-Method", "GET", "X-Original-URI", "/api/v1/members", "X-MICROCMS-API-KEY", key}, tc.host...)
			rec := forwardAuth(t, h, http.MethodGet, "/v1/forward-auth", hdr...)
			got := [3]string{rec.Header().Get("X-Keygate-Status"), rec.Header().Get("X-Keygate-Code"), rec.Header().Get("X-Keygate-Permission")}
			if tc.expect[1] == "" {
				got[1] = ""
			}
			if rec.Code != tc.want || got != tc.expect {
				t.Fatalf("got %d %v (%s), want %d %v", rec.Code, got, rec.Header().Get("X-Keygate-Message"), tc.want, tc.expect)
			}
		})
	}
}

// TestForwardAuthDecodesOnce is the class test of defect 5: the path is
// decoded exactly once under every header convention, so the same URI gets
// the same answer whether it travels in X-Original-URI, X-Forwarded-Uri or
// after Envoy's path prefix.
func TestForwardAuthDecodesOnce(t *testing.T) {
	h := newFixture(t, server.Options{})
	const key = "team-demo-read-key"
	conventions := []struct {
		name  string
		build func(uri string) (target string, header []string)
	}{
		{"nginx", func(uri string) (string, []string) {
			return "/v1/forward-auth", []string{"X-Original-Method", "GET", "X-Original-URI", uri}
		}},
		{"traefik", func(uri string) (string, []string) {
			return "/v1/forward-auth", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", uri}
		}},
		{"envoy", func(uri string) (string, []string) { return "/v1/forward-auth" + uri, nil }},
	}
	for _, tc := range []struct {
		note, uri string
		want      int
		status    string // X-Keygate-Status
		endpoint  string
		contentID string
	}{
		{"plain", "/api/v1/blogs", 200, "200", "blogs", ""},
		{"one encoded letter", "/api/v1/%62logs", 200, "200", "blogs", ""},
		{"double-encoded letter stays encoded", "/api/v1/%2562logs", 403, "404", "", ""},
		{"encoded slash is a slash", "/api/v1/blogs%2Fabc", 200, "200", "blogs", "abc"},
		{"double-encoded slash is no slash", "/api/v1/blogs%252Fabc", 403, "404", "", ""},
		{"double-encoded dots", "/api/v1/blogs/%252e%252e", 403, "404", "", ""},
		{"encoded dots", "/api/v1/blogs/%2e%2e", 403, "404", "", ""},
		{"query is decoded once too", "/api/v1/blogs/abc?draftKey=%2561", 200, "200", "blogs", "abc"},
	} {
		for _, conv := range conventions {
			t.Run(conv.name+"/"+tc.note, func(t *testing.T) {
				target, hdr := conv.build(tc.uri)
				hdr = append(hdr, "X-Forwarded-Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", key)
				rec := forwardAuth(t, h, http.MethodGet, target, hdr...)
				if rec.Code != tc.want || rec.Header().Get("X-Keygate-Status") != tc.status ||
					rec.Header().Get("X-Keygate-Endpoint") != tc.endpoint || rec.Header().Get("X-Keygate-Content-Id") != tc.contentID {
					t.Fatalf("got %d status %q endpoint %q content %q, want %d %q %q %q", rec.Code,
						rec.Header().Get("X-Keygate-Status"), rec.Header().Get("X-Keygate-Endpoint"), rec.Header().Get("X-Keygate-Content-Id"),
						tc.want, tc.status, tc.endpoint, tc.contentID)
				}
			})
		}
	}
}

// TestDuplicateKeys is the class test of defect 6: a decision request that
// names a field, a header or the key twice is refused (400 on decide, 401
// or 403 on forward-auth), never judged on one of the two.
func TestDuplicateKeys(t *testing.T) {
	h := newFixture(t, server.Options{})
	const q = `"service":"team-demo","method":"GET","path":"/api/v1/blogs"`
	for _, tc := range []struct {
		note, body string
		want       int
		code       string
		field      string
	}{
		{"the key header twice, same spelling", `{` + q + `,"headers":{"X-MICROCMS-API-KEY":"nope","X-MICROCMS-API-KEY":"team-demo-read-key"}}`, 400, "duplicate_field", "headers.X-MICROCMS-API-KEY"},
		{"the key header twice, two spellings", `{` + q + `,"headers":{"x-microcms-api-key":"nope","X-MICROCMS-API-KEY":"team-demo-read-key"}}`, 400, "duplicate_field", "headers.X-MICROCMS-API-KEY"},
		{"the key header twice, escaped", `{` + q + `,"headers":{"X-MICROCMS-API-KEY":"nope","\u0058-MICROCMS-API-KEY":"team-demo-read-key"}}`, 400, "duplicate_field", "headers.X-MICROCMS-API-KEY"},
		{"another header twice", `{` + q + `,"headers":{"Accept":"a","accept":"b","X-MICROCMS-API-KEY":"team-demo-read-key"}}`, 400, "duplicate_field", "headers.accept"},
		// Found by FuzzDecide: an empty name twice was taken for "no duplicate".
		{"the empty header name twice", `{` + q + `,"apiKey":"team-demo-read-key","headers":{"":"a","":"b"}}`, 400, "duplicate_field", "headers."},
		{"the empty query name twice", `{` + q + `,"apiKey":"team-demo-read-key","query":{"":"a","":"b"}}`, 400, "duplicate_field", "query."},
		{"apiKey twice", `{` + q + `,"apiKey":"nope","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "apiKey"},
		{"apiKey twice, another case", `{` + q + `,"apiKey":"nope","APIKEY":"team-demo-read-key"}`, 400, "duplicate_field", "APIKEY"},
		{"service twice", `{` + q + `,"service":"hobby-demo","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "service"},
		{"service twice, escaped", `{` + q + `,"\u0073ervice":"hobby-demo","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "service"},
		{"query parameter twice", `{` + q + `,"query":{"draftKey":"a","draftKey":"b"},"apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "query.draftKey"},
		{"apiKey and the key header", `{` + q + `,"apiKey":"team-demo-read-key","headers":{"X-MICROCMS-API-KEY":"team-demo-read-key"}}`, 400, "invalid_field", "apiKey"},
		// A member after the headers or query object is a member too: the
		// scan goes on past the object's closing brace.
		{"service twice, after a query object", `{` + q + `,"query":{"a":"1"},"service":"hobby-demo","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "service"},
		{"path twice, after an empty query object", `{` + q + `,"query":{},"path":"/api/v1/secret","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "path"},
		{"headers twice, another case", `{` + q + `,"headers":{"X-MICROCMS-API-KEY":"team-demo-read-key"},"Headers":{"X-MICROCMS-API-KEY":"nope"}}`, 400, "duplicate_field", "Headers"},
		{"apiKey twice, after a headers object", `{` + q + `,"headers":{"Accept":"a"},"apiKey":"nope","apiKey":"team-demo-read-key"}`, 400, "duplicate_field", "apiKey"},
		{"query parameters differing in case are two", `{` + q + `,"query":{"draftKey":"a","draftkey":"b"},"apiKey":"team-demo-read-key"}`, 200, "", ""},
		{"other headers are fine", `{` + q + `,"headers":{"Accept":"a","X-MICROCMS-API-KEY":"team-demo-read-key"}}`, 200, "", ""},
		{"nested values are skipped", `{` + q + `,"headers":{"A":"x,}{\"]"},"apiKey":"team-demo-read-key"}`, 200, "", ""},
	} {
		t.Run("decide/"+tc.note, func(t *testing.T) {
			rec := postDecide(t, h, tc.body)
			if rec.Code != tc.want {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			if tc.want == 200 {
				return
			}
			var p server.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != tc.code || !strings.Contains(p.Detail, "Field "+tc.field+" ") {
				t.Fatalf("problem %s, want code %s naming field %s", rec.Body, tc.code, tc.field)
			}
		})
	}
	for _, tc := range []struct {
		note   string
		header []string
		want   int
		code   string
	}{
		{"the key twice", []string{"X-MICROCMS-API-KEY", "nope", "X-MICROCMS-API-KEY", "team-demo-read-key"}, 401, "duplicate_api_key"},
		{"the same key twice", []string{"X-MICROCMS-API-KEY", "team-demo-read-key", "x-microcms-api-key", "team-demo-read-key"}, 401, "duplicate_api_key"},
		{"a comma list of keys", []string{"X-MICROCMS-API-KEY", "team-demo-read-key, nope"}, 401, "invalid_api_key"},
		{"X-Original-URI twice", []string{"X-MICROCMS-API-KEY", "team-demo-read-key", "X-Original-URI", "/api/v1/members"}, 403, "duplicate_forward_header"},
		{"once", []string{"X-MICROCMS-API-KEY", "team-demo-read-key"}, 200, "allowed"},
	} {
		t.Run("forward-auth/"+tc.note, func(t *testing.T) {
			hdr := append([]string{"X-Original-Method", "GET", "X-Original-URI", "/api/v1/blogs", "X-Forwarded-Host", "team-demo.microcms.io"}, tc.header...)
			rec := forwardAuth(t, h, http.MethodGet, "/v1/forward-auth", hdr...)
			if rec.Code != tc.want || rec.Header().Get("X-Keygate-Code") != tc.code {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Header().Get("X-Keygate-Code"), tc.want, tc.code)
			}
		})
	}
}

// TestFieldBounds is the class test of defect 4: every field that reaches
// the decision log, a metric, the cache or the policy is bounded; over the
// bound it is a 400 naming the field on decide, a deny on forward-auth.
func TestFieldBounds(t *testing.T) {
	h := newFixture(t, server.Options{})
	body := func(fields map[string]any) string {
		b := map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs", "apiKey": "team-demo-read-key"}
		for k, v := range fields {
			if v == nil {
				delete(b, k)
				continue
			}
			b[k] = v
		}
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(j)
	}
	bigQuery := map[string]string{"q": strings.Repeat("x", 8<<10)}
	manyHeaders := map[string]string{}
	for i := range 65 {
		manyHeaders["X-H"+strconv.Itoa(i)] = "v"
	}
	for _, tc := range []struct {
		note   string
		fields map[string]any
		field  string // "" = accepted
	}{
		{"a megabyte of service", map[string]any{"service": strings.Repeat("s", 1<<20-200)}, "service"},
		{"service of 64 bytes", map[string]any{"service": strings.Repeat("s", 64)}, "service"},
		{"service of 63 bytes", map[string]any{"service": strings.Repeat("s", 63)}, ""},
		{"service in upper case", map[string]any{"service": "Team-Demo"}, "service"},
		{"service with a slash", map[string]any{"service": "team-demo/x"}, "service"},
		{"service with a newline", map[string]any{"service": "team-demo\n"}, "service"},
		{"service ending in a hyphen", map[string]any{"service": "team-"}, "service"},
		{"method of 33 bytes", map[string]any{"method": strings.Repeat("G", 33)}, "method"},
		{"path over 8 KiB", map[string]any{"path": "/api/v1/blogs/" + strings.Repeat("x", 8<<10)}, "path"},
		{"query over 8 KiB", map[string]any{"query": bigQuery}, "query"},
		{"apiKey over 1 KiB", map[string]any{"apiKey": strings.Repeat("k", 1025)}, "apiKey"},
		{"key header over 1 KiB", map[string]any{"apiKey": nil, "headers": map[string]string{"X-MICROCMS-API-KEY": strings.Repeat("k", 1025)}}, "headers"},
		{"65 headers", map[string]any{"apiKey": nil, "headers": manyHeaders}, "headers"},
		{"a header value over 8 KiB", map[string]any{"headers": map[string]string{"Accept": strings.Repeat("a", 8<<10+1)}}, "headers"},
		{"a header name over 256 bytes", map[string]any{"headers": map[string]string{strings.Repeat("a", 257): "x"}}, "headers"},
	} {
		t.Run("decide/"+tc.note, func(t *testing.T) {
			rec := postDecide(t, h, body(tc.fields))
			if tc.field == "" {
				if rec.Code != http.StatusOK {
					t.Fatalf("got %d %s, want 200", rec.Code, rec.Body)
				}
				return
			}
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `Field `+tc.field+` `) {
				t.Fatalf("got %d %.300s, want 400 naming field %s", rec.Code, rec.Body, tc.field)
			}
			if rec.Body.Len() > 1024 {
				t.Errorf("the refusal is %d bytes: it echoes the field", rec.Body.Len())
			}
		})
	}
	for _, tc := range []struct {
		note   string
		header []string
		code   string
	}{
		{"service header over 63 bytes", []string{"X-Keygate-Service", strings.Repeat("s", 64)}, "invalid_service_header"},
		{"method over 32 bytes", []string{"X-Original-Method", strings.Repeat("G", 33)}, "invalid_forward_request"},
		{"URI over 8 KiB", []string{"X-Original-URI", "/api/v1/blogs/" + strings.Repeat("x", 8<<10)}, "invalid_forward_request"},
		{"key over 1 KiB", []string{"X-MICROCMS-API-KEY", strings.Repeat("k", 1025)}, "invalid_forward_request"},
		{"host over 260 bytes", []string{"X-Forwarded-Host", strings.Repeat("a.", 130) + "microcms.io"}, "invalid_host"},
	} {
		t.Run("forward-auth/"+tc.note, func(t *testing.T) {
			base := map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/blogs",
				"X-Forwarded-Host": "team-demo.microcms.io", "X-MICROCMS-API-KEY": "team-demo-read-key"}
			for i := 0; i+1 < len(tc.header); i += 2 {
				base[tc.header[i]] = tc.header[i+1]
			}
			var hdr []string
			for k, v := range base {
				hdr = append(hdr, k, v)
			}
			rec := forwardAuth(t, h, http.MethodGet, "/v1/forward-auth", hdr...)
			if rec.Code != http.StatusForbidden || rec.Header().Get("X-Keygate-Code") != tc.code {
				t.Fatalf("got %d %q, want 403 %q", rec.Code, rec.Header().Get("X-Keygate-Code"), tc.code)
			}
		})
	}
}

// TestHeadOnGetRoutes (defect 8): HEAD answers every GET route with the
// GET's status and content type, and no body.
func TestHeadOnGetRoutes(t *testing.T) {
	srv := httptest.NewServer(newFixture(t, server.Options{}))
	t.Cleanup(srv.Close)
	admin := "Bearer team-demo-admin-token"
	for _, tc := range []struct{ path, auth string }{
		{"/health", ""},
		{"/v1/policies", ""},
		{"/metrics", ""},
		{"/v1/services/team-demo/keys", admin},
		{"/v1/services/team-demo/keys/team-demo-read", admin},
		{"/v1/services/team-demo/keys/nope", admin},
		{"/v1/services/team-demo/keys", ""},
	} {
		t.Run(tc.path+" "+tc.auth, func(t *testing.T) {
			do := func(method string) (*http.Response, []byte) {
				req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Accept-Encoding", "identity")
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, b
			}
			get, _ := do(http.MethodGet)
			head, body := do(http.MethodHead)
			if head.StatusCode != get.StatusCode || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") || len(body) != 0 {
				t.Fatalf("HEAD %d %q body %q; GET %d %q", head.StatusCode, head.Header.Get("Content-Type"), body,
					get.StatusCode, get.Header.Get("Content-Type"))
			}
			if head.StatusCode == http.StatusMethodNotAllowed {
				t.Fatal("HEAD is not routed")
			}
		})
	}
}

// TestMetricsNameNoService (defect 7): the default /metrics names no
// service; EnablePerService adds the per-service key counts.
func TestMetricsNameNoService(t *testing.T) {
	services := []string{"hobby-demo", "team-demo", "business-demo", "enterprise-demo"}
	for _, perService := range []bool{false, true} {
		t.Run("perService="+strconv.FormatBool(perService), func(t *testing.T) {
			eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			m := server.NewMetrics(store.KeyCounts)
			if perService {
				m.EnablePerService()
			}
			h := server.New(eng, store, m, server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			for _, svc := range services {
				postDecide(t, h, `{"service":"`+svc+`","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			out := rec.Body.String()
			if !strings.Contains(out, "keygate_keys_stored 1\n") {
				t.Errorf("no keygate_keys_stored 1 in /metrics")
			}
			for _, svc := range services {
				if got := strings.Contains(out, svc); got != perService {
					t.Errorf("/metrics names %s: %v, want %v", svc, got, perService)
				}
			}
			if perService && !strings.Contains(out, `keygate_keys{service="team-demo"} 1`) {
				t.Errorf("no keys of team-demo in /metrics")
			}
		})
	}
}

// TestForwardAuthAnyMethod: Envoy sends the original method, which may be
// one the router does not know; forward-auth still answers with a decision
// (found by FuzzForwardAuth: it was a 405 problem).
func TestForwardAuthAnyMethod(t *testing.T) {
	h := newFixture(t, server.Options{})
	for _, method := range []string{"PROPFIND", "0", "BREW"} {
		t.Run(method, func(t *testing.T) {
			rec := forwardAuth(t, h, method, "/v1/forward-auth/api/v1/blogs", "Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", "team-demo-read-key")
			if rec.Code != http.StatusForbidden || rec.Header().Get("X-Keygate-Status") != "405" {
				t.Fatalf("got %d %q, want 403 with X-Keygate-Status 405", rec.Code, rec.Header().Get("X-Keygate-Status"))
			}
		})
	}
}

// TestRefusalsDoNotEchoLongNames: a refused body names the offending field,
// clipped, never whole.
func TestRefusalsDoNotEchoLongNames(t *testing.T) {
	h := newFixture(t, server.Options{})
	long := strings.Repeat("f", 100<<10)
	for _, tc := range []struct{ note, body, code string }{
		{"a long field named twice", `{"` + long + `":1,"` + long + `":2}`, "duplicate_field"},
		{"a long unknown field", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","` + long + `":1}`, "unknown_field"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			rec := postDecide(t, h, tc.body)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"code":"`+tc.code+`"`) || rec.Body.Len() > 1024 {
				t.Fatalf("got %d, %d bytes: %.200s", rec.Code, rec.Body.Len(), rec.Body)
			}
		})
	}
}
