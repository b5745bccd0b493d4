package e2e

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// Regression tests on the real binary, one per defect a review found: each
// sends the request that showed the defect and failed before the fix.

// forwardLines sends a forward-auth request whose header pairs may repeat a
// name: each pair is one header line.
func (f *fixture) forwardLines(t *testing.T, target string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
		if strings.EqualFold(header[i], "X-MICROCMS-API-KEY") {
			f.addSecret(header[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// Defect 1: a trailing dot or a comma list in X-Forwarded-Host had a
// management route judged by the content policy (200 with a default get).
func TestHostShapeDecidesNothingByGuess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		host       string
		wantStatus string // X-Keygate-Status
		wantCode   string
	}{
		{"team-demo.microcms-management.io", "403", "forbidden"},
		{"team-demo.microcms-management.io.", "403", "forbidden"}, // the same host, absolute
		{"team-demo.microcms-management.io, x", "403", "invalid_host"},
		{"team-demo.microcms-management.io.x", "403", "invalid_host"},
		{"cms.internal", "403", "unknown_host"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			r := f.do(t, http.MethodGet, "/v1/forward-auth", nil, "X-Original-Method", "GET", "X-Original-URI", "/api/v1/members",
				"X-Forwarded-Host", tc.host, "X-MICROCMS-API-KEY", demoReadKey)
			if r.status != http.StatusForbidden || r.header.Get("X-Keygate-Status") != tc.wantStatus || r.header.Get("X-Keygate-Code") != tc.wantCode {
				t.Fatalf("got %d status %q code %q, want 403 %s %s", r.status, r.header.Get("X-Keygate-Status"), r.header.Get("X-Keygate-Code"),
					tc.wantStatus, tc.wantCode)
			}
			if id := r.header.Get("X-Keygate-Decision-Id"); id != "" {
				f.addDecision(id)
			}
		})
	}
}

// Defect 4: a 1 MB service was answered and logged whole.
func TestServiceIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	big := strings.Repeat("s", 1<<20-200)
	for range 5 {
		f.do(t, http.MethodPost, "/v1/decide", map[string]any{"service": big, "method": "GET", "path": "/api/v1/blogs", "apiKey": demoReadKey}).
			problem(t, http.StatusBadRequest, "invalid_field")
	}
	f.do(t, http.MethodPost, "/v1/decide", map[string]any{"service": strings.Repeat("s", 64), "method": "GET", "path": "/api/v1/blogs"}).
		problem(t, http.StatusBadRequest, "invalid_field")
	f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey))
	f.stopGracefully(t)
	st, err := os.Stat(f.work.decisionLog)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 4<<10 {
		t.Fatalf("decision log is %d bytes after one decision: a refused request was logged", st.Size())
	}
}

// Defect 5: the Envoy route decoded the path twice (%2562logs became
// blogs), against X-Original-URI's single decoding.
func TestEnvoyPathDecodedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	envoy := f.do(t, http.MethodGet, "/v1/forward-auth/api/v1/%2562logs", nil, "Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey)
	nginx := f.do(t, http.MethodGet, "/v1/forward-auth", nil, "X-Original-Method", "GET", "X-Original-URI", "/api/v1/%2562logs",
		"X-Forwarded-Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey)
	for _, r := range []reply{envoy, nginx} {
		f.addDecision(r.header.Get("X-Keygate-Decision-Id"))
		if r.status != http.StatusForbidden || r.header.Get("X-Keygate-Status") != "404" || r.header.Get("X-Keygate-Endpoint") != "" {
			t.Errorf("got %d status %q endpoint %q, want 403 with 404 and no endpoint", r.status, r.header.Get("X-Keygate-Status"), r.header.Get("X-Keygate-Endpoint"))
		}
	}
}

// Defect 6: /v1/decide took the last of two equal header names, and
// forward-auth the first of two key header lines.
func TestDuplicateKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.addSecret("nope-not-a-key")
	body := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","headers":{"X-MICROCMS-API-KEY":"nope-not-a-key","X-MICROCMS-API-KEY":"` + demoReadKey + `"}}`
	f.do(t, http.MethodPost, "/v1/decide", body).problem(t, http.StatusBadRequest, "duplicate_field")
	// A member named twice after a headers or query object is a duplicate
	// too (the scan used to stop at the object's end and judge the last).
	for _, after := range []string{`"headers":{"Accept":"a"}`, `"query":{"limit":"1"}`} {
		body := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs",` + after + `,"apiKey":"nope-not-a-key","apiKey":"` + demoReadKey + `"}`
		f.do(t, http.MethodPost, "/v1/decide", body).problem(t, http.StatusBadRequest, "duplicate_field")
	}
	both := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"` + demoReadKey + `","headers":{"X-MICROCMS-API-KEY":"` + demoReadKey + `"}}`
	f.do(t, http.MethodPost, "/v1/decide", both).problem(t, http.StatusBadRequest, "invalid_field")

	r := f.forwardLines(t, "/v1/forward-auth", "X-Original-Method", "GET", "X-Original-URI", "/api/v1/blogs",
		"X-Forwarded-Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey, "X-MICROCMS-API-KEY", "nope-not-a-key")
	if r.status != http.StatusUnauthorized || r.header.Get("X-Keygate-Status") != "401" {
		t.Fatalf("two key header lines: %d (X-Keygate-Status %q), want 401", r.status, r.header.Get("X-Keygate-Status"))
	}
}

// Defect 7: /metrics listed every service id with its key count.
func TestMetricsNameNoService(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey))
	r := f.do(t, http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	for _, svc := range demoServices {
		if strings.Contains(string(r.body), svc) {
			t.Errorf("/metrics names service %s", svc)
		}
	}
	if got := parseMetrics(t, r.body).value("keygate_keys_stored"); got != 1 {
		t.Errorf("keygate_keys_stored = %v, want 1", got)
	}
}

// Defect 8: HEAD /health answered 405.
func TestHeadOnOperationalRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, path := range []string{"/health", "/v1/policies", "/metrics", keysPath("team-demo")} {
		t.Run(path, func(t *testing.T) {
			get := f.do(t, http.MethodGet, path, nil, bearer(adminToken("team-demo"))...)
			head := f.do(t, http.MethodHead, path, nil, bearer(adminToken("team-demo"))...)
			if head.status != get.status || head.status != http.StatusOK || len(head.body) != 0 ||
				head.header.Get("Content-Type") != get.header.Get("Content-Type") {
				t.Fatalf("HEAD %d %q %q, GET %d %q", head.status, head.header.Get("Content-Type"), head.body, get.status, get.header.Get("Content-Type"))
			}
		})
	}
}
