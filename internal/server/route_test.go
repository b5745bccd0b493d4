package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/engine"

	"github.com/keygate/keygate/internal/server"
)

// TestDecideRoutesAndParameters drives /v1/decide with the spellings a reading of the routes found:
// an endpoint in another case is no endpoint (404, never the default permissions while an
// origin matching case-insensitively serves contact), and on a plan without the status
// parameter every query parameter that normalises to status is refused on a write. The
// content id of the answer is the server's parse of the path.
func TestDecideRoutesAndParameters(t *testing.T) {
	h := newFixture(t, server.Options{})
	// A hobby key like the seed's use case 1: GET by default, POST on contact.
	req := httptest.NewRequest(http.MethodPost, "/v1/services/hobby-demo/keys", strings.NewReader(
		`{"name":"form","contentApi":{"default":{"get":true},"individual":{"contact":{"post":true}}}}`))
	req.Header.Set("Authorization", "Bearer hobby-demo-admin-token")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var created struct {
		Secret string `json:"secret"`
	}
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &created) != nil || created.Secret == "" {
		t.Fatalf("create hobby key: %d %s", rec.Code, rec.Body)
	}
	ask := func(t *testing.T, method, path string, query map[string]string) map[string]any {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"service": "hobby-demo", "method": method, "path": path, "query": query, "apiKey": created.Secret})
		rec := postDecide(t, h, string(body))
		var d map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &d) != nil {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		return d
	}
	for _, tc := range []struct {
		note, method, path string
		query              map[string]string
		status             float64
		code               string
		endpoint           string
		contentID          string
	}{
		{"lower-case endpoint: its individual entry", "GET", "/api/v1/contact", nil, 400, "method_forbidden", "contact", ""},
		{"lower-case endpoint: POST granted", "POST", "/api/v1/contact", nil, 200, "allowed", "contact", ""},
		{"upper-case endpoint: no route", "GET", "/api/v1/Contact", nil, 404, "not_found", "", ""},
		{"upper-case endpoint: no route for POST", "POST", "/api/v1/CONTACT/abc", nil, 404, "not_found", "", ""},
		{"content id echoed from the parse", "GET", "/api/v1/blogs/Ab-9_x", nil, 200, "allowed", "blogs", "Ab-9_x"},
		{"status", "POST", "/api/v1/contact?status=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"status[]", "POST", "/api/v1/contact?status%5B%5D=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"Status", "POST", "/api/v1/contact?Status=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"leading space", "POST", "/api/v1/contact?%20status=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"plus as space", "POST", "/api/v1/contact?+status=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"after a semicolon", "POST", "/api/v1/contact?x=1;status=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"NUL after the name (PHP ends names there)", "POST", "/api/v1/contact?status%00=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"in brackets (Rack 2 drops them)", "POST", "/api/v1/contact?%5Bstatus%5D=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"closing bracket after the name", "POST", "/api/v1/contact?status]=draft", nil, 400, "plan_feature_unavailable", "contact", ""},
		{"in the query object", "POST", "/api/v1/contact", map[string]string{"STATUS": "closed"}, 400, "plan_feature_unavailable", "contact", ""},
		{"other parameters", "POST", "/api/v1/contact?statuses=1&xstatus=2", nil, 200, "allowed", "contact", ""},
		{"a GET may carry one", "GET", "/api/v1/blogs?Status=draft", nil, 200, "allowed", "blogs", ""},
	} {
		t.Run(tc.note, func(t *testing.T) {
			d := ask(t, tc.method, tc.path, tc.query)
			if d["status"] != tc.status || d["code"] != tc.code || d["endpoint"] != tc.endpoint || d["contentId"] != tc.contentID {
				t.Errorf("got status %v code %v endpoint %q contentId %q; want %v %s %q %q",
					d["status"], d["code"], d["endpoint"], d["contentId"], tc.status, tc.code, tc.endpoint, tc.contentID)
			}
		})
	}
}

// TestPoliciesShowCacheKeys: /v1/policies shows, per entrypoint, the input paths the
// decision cache keys on.
func TestPoliciesShowCacheKeys(t *testing.T) {
	h := newFixture(t, server.Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/policies", nil))
	var body struct {
		CacheKeys []struct {
			Entrypoint string   `json:"entrypoint"`
			Cacheable  bool     `json:"cacheable"`
			Paths      []string `json:"paths"`
		} `json:"cacheKeys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.CacheKeys) != len(engine.DefaultEntrypoints()) {
		t.Fatalf("GET /v1/policies: %v %s", err, rec.Body)
	}
	for _, p := range body.CacheKeys {
		if p.Entrypoint == "data.content.decision" && (!p.Cacheable || !slices.Contains(p.Paths, "input.request.route.endpoint") ||
			slices.Contains(p.Paths, "input.request.contentId")) {
			t.Errorf("content cache key %+v: want the endpoint, not the content id", p)
		}
	}
}
