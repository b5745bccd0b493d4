package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// perms is a permission set as the key-management API takes it.
type perms map[string]bool

func keySpec(name string, def perms, individual map[string]perms, management perms) map[string]any {
	content := map[string]any{"default": def}
	if individual != nil {
		content["individual"] = individual
	}
	spec := map[string]any{"name": name, "contentApi": content}
	if management != nil {
		spec["managementApi"] = management
	}
	return spec
}

var allWrites = perms{"get": true, "post": true, "put": true, "patch": true, "delete": true}

// decideKeys are the keys the decision tests use, created through the API.
type decideKeys struct {
	seed, preview, blogDrafts, businessWriter, management, hobbyWriter string
}

func newDecideFixture(t *testing.T) (*fixture, decideKeys) {
	t.Helper()
	f := newFixture(t)
	var k decideKeys
	// The seed's use case: GET by default, and the blogs API with POST and PUT only.
	k.seed = f.createKey(t, "business-demo", keySpec("seed", perms{"get": true},
		map[string]perms{"blogs": {"post": true, "put": true}}, nil)).Secret
	k.preview = f.createKey(t, "business-demo", keySpec("preview",
		perms{"get": true, "getAllDrafts": true, "getAllClosed": true}, nil, nil)).Secret
	k.blogDrafts = f.createKey(t, "business-demo", keySpec("blog drafts", perms{"get": true},
		map[string]perms{"blogs": {"get": true, "getAllDrafts": true}}, nil)).Secret
	k.businessWriter = f.createKey(t, "business-demo", keySpec("writer", allWrites, nil, nil)).Secret
	k.management = f.createKey(t, "business-demo", keySpec("management", perms{}, nil,
		perms{"getContents": true, "patchContentStatus": true, "getMedia": true})).Secret
	k.hobbyWriter = f.createKey(t, "hobby-demo", keySpec("writer", allWrites, nil, nil)).Secret
	return f, k
}

const (
	invalidKeyMessage = "X-MICROCMS-API-KEY header is invalid."
	// unknownSecret matches no key.
	unknownSecret = "e2e-unknown-secret-5f1c"
)

var (
	published     = visibility{Published: true, FilterOn: "published"}
	nothing       = visibility{FilterOn: "published"}
	withDraftKey  = visibility{Published: true, DraftKey: true, FilterOn: "published"}
	draftsClosed  = visibility{Published: true, Drafts: true, Closed: true, FilterOn: "published"}
	draftsOnly    = visibility{Published: true, Drafts: true, FilterOn: "published"}
	planFeatureNA = "Status parameter is not available in the current plan. Please upgrade your plan."
)

func TestDecideContent(t *testing.T) {
	t.Parallel()
	f, k := newDecideFixture(t)

	type want struct {
		allow      bool
		status     int
		code       string
		message    string
		permission string
		endpoint   string
		contentID  string
		vis        visibility
	}
	allowGet := func(endpoint, id string, vis visibility) want {
		return want{allow: true, status: 200, code: "allowed", permission: "get", endpoint: endpoint, contentID: id, vis: vis}
	}
	allowWrite := func(perm, endpoint, id string) want {
		return want{allow: true, status: 200, code: "allowed", permission: perm, endpoint: endpoint, contentID: id, vis: nothing}
	}
	forbidden := func(method, perm, endpoint, id string) want {
		return want{status: 400, code: "method_forbidden", message: method + " is forbidden.", permission: perm, endpoint: endpoint, contentID: id, vis: nothing}
	}
	invalid := want{status: 401, code: "invalid_api_key", message: invalidKeyMessage, vis: nothing}
	planRefused := func(perm string) want {
		return want{status: 400, code: "plan_feature_unavailable", message: planFeatureNA, permission: perm, endpoint: "blogs", vis: nothing}
	}

	cases := []struct {
		note string
		body map[string]any
		want want
	}{
		{"demo key lists", contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey), allowGet("blogs", "", published)},
		{"demo key reads one", contentReq("team-demo", "GET", "/api/v1/blogs/abc", demoReadKey), allowGet("blogs", "abc", published)},
		{"lower-case method is not GET (RFC 9110: methods are case-sensitive)", contentReq("team-demo", "get", "/api/v1/blogs/abc", demoReadKey),
			want{status: 405, code: "method_not_allowed", message: "get is not allowed.", vis: nothing}},
		{"HEAD is GET", contentReq("team-demo", "HEAD", "/api/v1/blogs/abc", demoReadKey), allowGet("blogs", "abc", published)},
		{"draftKey in the path's query", contentReq("team-demo", "GET", "/api/v1/blogs/abc?draftKey=xyz&fields=id", demoReadKey), allowGet("blogs", "abc", withDraftKey)},
		{"draftKey in query", with(contentReq("team-demo", "GET", "/api/v1/blogs/abc", demoReadKey), "query", map[string]string{"draftKey": "xyz"}), allowGet("blogs", "abc", withDraftKey)},
		{"draftKey on a list shows no draft", contentReq("team-demo", "GET", "/api/v1/blogs?draftKey=xyz", demoReadKey), allowGet("blogs", "", published)},
		{"key in headers", headersReq("team-demo", "GET", "/api/v1/news", "X-MICROCMS-API-KEY", demoReadKey), allowGet("news", "", published)},
		{"key in lower-case header", headersReq("team-demo", "GET", "/api/v1/news", "x-microcms-api-key", demoReadKey), allowGet("news", "", published)},
		{"no key", map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs"}, invalid},
		{"empty key", contentReq("team-demo", "GET", "/api/v1/blogs", ""), invalid},
		{"unknown key", contentReq("team-demo", "GET", "/api/v1/blogs", unknownSecret), invalid},
		{"unknown key in headers", headersReq("team-demo", "GET", "/api/v1/blogs", "X-MICROCMS-API-KEY", unknownSecret), invalid},
		{"key of another service", contentReq("business-demo", "GET", "/api/v1/blogs", demoReadKey), invalid},
		{"unknown service", contentReq("no-such-service", "GET", "/api/v1/blogs", demoReadKey), invalid},
		{"401 before 404", contentReq("team-demo", "GET", "/nowhere", unknownSecret), invalid},
		{"POST without post", contentReq("team-demo", "POST", "/api/v1/blogs", demoReadKey), forbidden("POST", "post", "blogs", "")},
		{"PUT without put", contentReq("team-demo", "PUT", "/api/v1/blogs/abc", demoReadKey), forbidden("PUT", "put", "blogs", "abc")},
		{"PATCH without patch", contentReq("team-demo", "PATCH", "/api/v1/blogs/abc", demoReadKey), forbidden("PATCH", "patch", "blogs", "abc")},
		{"DELETE without delete", contentReq("team-demo", "DELETE", "/api/v1/blogs/abc", demoReadKey), forbidden("DELETE", "delete", "blogs", "abc")},
		{"individual replaces default: GET", contentReq("business-demo", "GET", "/api/v1/blogs", k.seed), forbidden("GET", "get", "blogs", "")},
		{"individual replaces default: POST", contentReq("business-demo", "POST", "/api/v1/blogs", k.seed), allowWrite("post", "blogs", "")},
		{"individual replaces default: PUT", contentReq("business-demo", "PUT", "/api/v1/blogs/abc", k.seed), allowWrite("put", "blogs", "abc")},
		{"individual replaces default: PATCH", contentReq("business-demo", "PATCH", "/api/v1/blogs/abc", k.seed), forbidden("PATCH", "patch", "blogs", "abc")},
		{"default elsewhere: GET", contentReq("business-demo", "GET", "/api/v1/news", k.seed), allowGet("news", "", published)},
		{"default elsewhere: POST", contentReq("business-demo", "POST", "/api/v1/news", k.seed), forbidden("POST", "post", "news", "")},
		{"drafts and closed", contentReq("business-demo", "GET", "/api/v1/blogs", k.preview), allowGet("blogs", "", draftsClosed)},
		{"drafts and closed in a detail", contentReq("business-demo", "GET", "/api/v1/blogs/abc", k.preview), allowGet("blogs", "abc", draftsClosed)},
		{"drafts and a draftKey", contentReq("business-demo", "GET", "/api/v1/blogs/abc?draftKey=k", k.preview),
			allowGet("blogs", "abc", visibility{Published: true, Drafts: true, Closed: true, DraftKey: true, FilterOn: "published"})},
		{"drafts never on a write", contentReq("business-demo", "POST", "/api/v1/blogs", k.preview), forbidden("POST", "post", "blogs", "")},
		{"individual drafts", contentReq("business-demo", "GET", "/api/v1/blogs", k.blogDrafts), allowGet("blogs", "", draftsOnly)},
		{"no drafts elsewhere", contentReq("business-demo", "GET", "/api/v1/news", k.blogDrafts), allowGet("news", "", published)},
		{"writes carry no visibility", contentReq("business-demo", "DELETE", "/api/v1/blogs/abc", k.businessWriter), allowWrite("delete", "blogs", "abc")},
		{"status on a paid plan", contentReq("business-demo", "POST", "/api/v1/blogs?status=draft", k.businessWriter), allowWrite("post", "blogs", "")},
		{"status on hobby: POST", contentReq("hobby-demo", "POST", "/api/v1/blogs?status=draft", k.hobbyWriter), planRefused("post")},
		{"status on hobby: query field", with(contentReq("hobby-demo", "PATCH", "/api/v1/blogs/abc", k.hobbyWriter), "query", map[string]string{"status": "closed"}),
			want{status: 400, code: "plan_feature_unavailable", message: planFeatureNA, permission: "patch", endpoint: "blogs", contentID: "abc", vis: nothing}},
		// Any parameter an origin might read as status is refused on hobby.
		{"status[] on hobby", contentReq("hobby-demo", "POST", "/api/v1/blogs?status%5B%5D=draft", k.hobbyWriter), planRefused("post")},
		{"Status on hobby", contentReq("hobby-demo", "POST", "/api/v1/blogs?Status=draft", k.hobbyWriter), planRefused("post")},
		{"' status' on hobby", contentReq("hobby-demo", "POST", "/api/v1/blogs?%20status=draft", k.hobbyWriter), planRefused("post")},
		{"status after ';' on hobby", contentReq("hobby-demo", "POST", "/api/v1/blogs?x=1;status=draft", k.hobbyWriter), planRefused("post")},
		{"status%00 on hobby (PHP cuts names at NUL)", contentReq("hobby-demo", "POST", "/api/v1/blogs?status%00=draft", k.hobbyWriter), planRefused("post")},
		{"[status] on hobby (Rack 2 drops brackets)", contentReq("hobby-demo", "PUT", "/api/v1/blogs/abc?%5Bstatus%5D=draft", k.hobbyWriter),
			want{status: 400, code: "plan_feature_unavailable", message: planFeatureNA, permission: "put", endpoint: "blogs", contentID: "abc", vis: nothing}},
		{"status] on hobby", contentReq("hobby-demo", "PATCH", "/api/v1/blogs/abc?status%5D=draft", k.hobbyWriter),
			want{status: 400, code: "plan_feature_unavailable", message: planFeatureNA, permission: "patch", endpoint: "blogs", contentID: "abc", vis: nothing}},
		{"STATUS in the query field on hobby", with(contentReq("hobby-demo", "POST", "/api/v1/blogs", k.hobbyWriter), "query", map[string]string{"STATUS": "closed"}), planRefused("post")},
		{"statuses is another parameter", contentReq("hobby-demo", "POST", "/api/v1/blogs?statuses=1", k.hobbyWriter), allowWrite("post", "blogs", "")},
		// Endpoints are lower-case; another spelling has no route, never the default.
		{"endpoint in lower case: its individual entry", contentReq("business-demo", "GET", "/api/v1/blogs/abc", k.seed), forbidden("GET", "get", "blogs", "abc")},
		{"endpoint in another case: no route", contentReq("business-demo", "GET", "/api/v1/Blogs/abc", k.seed), want{status: 404, code: "not_found", message: "Not found.", vis: nothing}},
		{"hobby without status", contentReq("hobby-demo", "POST", "/api/v1/blogs", k.hobbyWriter), allowWrite("post", "blogs", "")},
		{"hobby GET with status", contentReq("hobby-demo", "GET", "/api/v1/blogs?status=draft", k.hobbyWriter), allowGet("blogs", "", published)},
		{"forbidden before plan", contentReq("hobby-demo", "POST", "/api/v1/blogs?status=draft", unknownSecret), invalid},
		{"OPTIONS", contentReq("team-demo", "OPTIONS", "/api/v1/blogs", demoReadKey),
			want{status: 405, code: "method_not_allowed", message: "OPTIONS is not allowed.", vis: nothing}},
		{"not a content path", contentReq("team-demo", "GET", "/api/v2/blogs", demoReadKey), want{status: 404, code: "not_found", message: "Not found.", vis: nothing}},
		{"too deep", contentReq("team-demo", "GET", "/api/v1/blogs/abc/def", demoReadKey), want{status: 404, code: "not_found", message: "Not found.", vis: nothing}},
		{"root", contentReq("team-demo", "GET", "/", demoReadKey), want{status: 404, code: "not_found", message: "Not found.", vis: nothing}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			d := f.decide(t, tc.body)
			w := tc.want
			got := want{allow: d.Allow, status: d.Status, code: d.Code, message: d.Message, permission: d.Permission,
				endpoint: d.Endpoint, contentID: d.ContentID, vis: d.Visibility}
			// The permission and endpoint of a 401/404/405 are the policy's
			// business; the contract fixes them only for allows and 400s.
			if w.status == 401 || w.status == 404 || w.status == 405 {
				got.permission, got.endpoint, got.contentID = "", "", ""
			}
			if got != w {
				t.Errorf("decision\n got %+v\nwant %+v", got, w)
			}
			// keyId names the presented key when it exists and belongs to
			// the service asked about (a 401 for a known secret means another
			// service's key, whose id that service must not learn).
			secret, _ := tc.body["apiKey"].(string)
			if h, ok := tc.body["headers"].(map[string]string); ok {
				for _, v := range h {
					secret = v
				}
			}
			if known := secret != "" && secret != unknownSecret && w.status != 401; known != (d.KeyID != "") {
				t.Errorf("keyId %q for secret %q", d.KeyID, secret)
			}
		})
	}
}

func TestDecideManagement(t *testing.T) {
	t.Parallel()
	f, k := newDecideFixture(t)
	mgmt := func(method, path, secret string) map[string]any {
		return with(contentReq("business-demo", method, path, secret), "api", "management")
	}
	cases := []struct {
		note       string
		body       map[string]any
		allow      bool
		status     int
		message    string
		permission string
	}{
		{"contents list", mgmt("GET", "/api/v1/contents/blogs", k.management), true, 200, "", "getContents"},
		{"one content", mgmt("GET", "/api/v1/contents/blogs/abc?depth=1", k.management), true, 200, "", "getContents"},
		{"content status", mgmt("PATCH", "/api/v1/contents/blogs/abc/status", k.management), true, 200, "", "patchContentStatus"},
		{"media v1", mgmt("GET", "/api/v1/media", k.management), true, 200, "", "getMedia"},
		{"media v2", mgmt("GET", "/api/v2/media", k.management), true, 200, "", "getMedia"},
		{"createdBy without the flag", mgmt("PATCH", "/api/v1/contents/blogs/abc/createdBy", k.management), false, 403, "Forbidden", "patchContentCreatedBy"},
		{"media upload without the flag", mgmt("POST", "/api/v1/media", k.management), false, 403, "Forbidden", "postMedia"},
		{"members without the flag", mgmt("GET", "/api/v1/members", k.management), false, 403, "Forbidden", "getMembers"},
		{"content key on management", mgmt("GET", "/api/v1/service", demoReadKey), false, 401, invalidKeyMessage, ""},
		{"service without the flag", mgmt("GET", "/api/v1/service", k.preview), false, 403, "Forbidden", "getService"},
		{"unknown route", mgmt("GET", "/api/v1/webhooks", k.management), false, 403, "Forbidden", ""},
		{"no key", map[string]any{"service": "business-demo", "api": "management", "method": "GET", "path": "/api/v1/media"}, false, 401, invalidKeyMessage, ""},
		{"content API is separate", contentReq("business-demo", "GET", "/api/v1/blogs", k.management), false, 400, "GET is forbidden.", "get"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			d := f.decide(t, tc.body)
			if d.Allow != tc.allow || d.Status != tc.status || d.Message != tc.message {
				t.Errorf("decision %+v, want allow=%v status=%d message=%q", d, tc.allow, tc.status, tc.message)
			}
			if tc.permission != "" && d.Permission != tc.permission {
				t.Errorf("permission %q, want %q", d.Permission, tc.permission)
			}
			if !d.Allow && d.Visibility != nothing {
				t.Errorf("a deny shows visibility %+v", d.Visibility)
			}
		})
	}
}

// TestDecideMalformed: a decision request keygate does not understand is a
// problem+json 400 (413, 415), never a decision.
func TestDecideMalformed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	huge := `{"service":"team-demo","method":"GET","path":"/api/v1/` + strings.Repeat("a", 1<<20) + `"}`
	cases := []struct {
		note        string
		body        string
		contentType string
		status      int
		code        string
		detail      string // a substring of the detail
	}{
		{"bad JSON", `{"service":"team-demo",`, "", 400, "invalid_json", ""},
		{"not JSON", `service=team-demo`, "", 400, "invalid_json", ""},
		{"empty body", ``, "", 400, "invalid_json", ""},
		{"two values", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs"} {}`, "", 400, "invalid_json", ""},
		{"unknown field", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"` + demoReadKey + `","key":"x"}`, "", 400, "unknown_field", `"key"`},
		{"service of the wrong type", `{"service":1,"method":"GET","path":"/api/v1/blogs"}`, "", 400, "invalid_field", "service"},
		{"apiKey of the wrong type", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":7}`, "", 400, "invalid_field", "apiKey"},
		{"query values must be strings", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","query":{"limit":10}}`, "", 400, "invalid_field", "query"},
		{"headers must be an object", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","headers":"x"}`, "", 400, "invalid_field", "headers"},
		{"array body", `[]`, "", 400, "invalid_field", "must be a JSON object"},
		{"string body", `"GET /api/v1/blogs"`, "", 400, "invalid_field", "must be a JSON object"},
		{"missing service", `{"method":"GET","path":"/api/v1/blogs"}`, "", 400, "invalid_field", "service"},
		{"missing method", `{"service":"team-demo","path":"/api/v1/blogs"}`, "", 400, "invalid_field", "method"},
		{"missing path", `{"service":"team-demo","method":"GET"}`, "", 400, "invalid_field", "path"},
		{"relative path", `{"service":"team-demo","method":"GET","path":"api/v1/blogs"}`, "", 400, "invalid_field", "path"},
		{"bad escape in path", `{"service":"team-demo","method":"GET","path":"/api/v1/%zz"}`, "", 400, "invalid_field", "path"},
		{"bad escape in query", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs?draftKey=%zz"}`, "", 400, "invalid_field", "path"},
		{"not a method", `{"service":"team-demo","method":"GE T","path":"/api/v1/blogs"}`, "", 400, "invalid_field", "method"},
		{"unknown api", `{"service":"team-demo","api":"graphql","method":"GET","path":"/api/v1/blogs"}`, "", 400, "invalid_field", "api"},
		{"body over 1 MiB", huge, "", 413, "body_too_large", ""},
		{"text/plain", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs"}`, "text/plain", 415, "unsupported_media_type", ""},
		{"form", `service=team-demo`, "application/x-www-form-urlencoded", 415, "unsupported_media_type", ""},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			var hdr []string
			if tc.contentType != "" {
				hdr = []string{"Content-Type", tc.contentType}
			}
			r := f.do(t, http.MethodPost, "/v1/decide", tc.body, hdr...)
			p := r.problem(t, tc.status, tc.code)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not name %q", p.Detail, tc.detail)
			}
			if p.Instance != "/v1/decide" {
				t.Errorf("instance %q", p.Instance)
			}
			if strings.Contains(string(r.body), demoReadKey) {
				t.Errorf("the problem echoes the secret: %s", r.body)
			}
		})
	}
	t.Run("charset parameter is fine", func(t *testing.T) {
		t.Parallel()
		r := f.do(t, http.MethodPost, "/v1/decide", contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey),
			"Content-Type", "application/json; charset=utf-8")
		if r.status != http.StatusOK {
			t.Fatalf("got %s", r)
		}
	})
}

func with(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

func headersReq(service, method, path, header, secret string) map[string]any {
	return map[string]any{"service": service, "method": method, "path": path, "headers": map[string]string{header: secret}}
}
