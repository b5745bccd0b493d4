package origin_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/tests/gateway/origin"
)

type listBody struct {
	Contents []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"contents"`
	TotalCount int `json:"totalCount"`
}

func serve(t *testing.T, method, host, target string, headers map[string]string, body string) *httptest.ResponseRecorder {
	t.Helper()
	o := origin.New(slog.New(slog.DiscardHandler))
	req := httptest.NewRequestWithContext(t.Context(), method, target, strings.NewReader(body))
	req.Host = host
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	o.ServeHTTP(rec, req)
	return rec
}

func ids(t *testing.T, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	var b listBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("decode list %q: %v", rec.Body.String(), err)
	}
	out := []string{}
	for _, c := range b.Contents {
		out = append(out, c.ID)
	}
	return out
}

func TestListVisibility(t *testing.T) {
	drafts := map[string]string{origin.HeaderDrafts: "true", origin.HeaderFilterOn: "published"}
	tests := []struct {
		note    string
		query   string
		headers map[string]string
		want    []string
	}{
		{"published only without headers", "", nil, []string{"published-1", "pubdraft-1"}},
		{"drafts=false is published only", "", map[string]string{origin.HeaderDrafts: "false"}, []string{"published-1", "pubdraft-1"}},
		{"drafts", "", drafts, []string{"published-1", "draft-1", "pubdraft-1"}},
		{"closed", "", map[string]string{origin.HeaderClosed: "true"}, []string{"published-1", "pubdraft-1", "closed-1"}},
		{"drafts and closed", "", map[string]string{origin.HeaderDrafts: "true", origin.HeaderClosed: "true"}, []string{"published-1", "draft-1", "pubdraft-1", "closed-1"}},
		{"filter on published values: draft category does not match", "?filters=category[equals]tech", drafts, []string{"draft-1"}},
		{"filter on published values: published category matches", "?filters=category[equals]news", drafts, []string{"published-1", "pubdraft-1"}},
		{"q on published title", "?q=old", drafts, []string{"pubdraft-1"}},
		{"q on draft title of a published content finds nothing", "?q=renewed", drafts, []string{}},
		{"without filterOn the shown version is matched", "?q=renewed", map[string]string{origin.HeaderDrafts: "true"}, []string{"pubdraft-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			rec := serve(t, http.MethodGet, "team-demo.microcms.io", "/api/v1/blogs"+tc.query, tc.headers, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if got := ids(t, rec); !slices.Equal(got, tc.want) {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSingleFetch(t *testing.T) {
	tests := []struct {
		note      string
		target    string
		headers   map[string]string
		wantCode  int
		wantTitle string
	}{
		{"published", "/api/v1/blogs/published-1", nil, 200, "Hello keygate"},
		{"draft hidden", "/api/v1/blogs/draft-1", nil, 404, ""},
		{"draft with draftKey", "/api/v1/blogs/draft-1?draftKey=dk-draft-1", map[string]string{origin.HeaderDraftKey: "true"}, 200, "Unreleased feature"},
		{"draftKey value without the gateway's permission", "/api/v1/blogs/draft-1?draftKey=dk-draft-1", nil, 404, ""},
		{"wrong draftKey", "/api/v1/blogs/draft-1?draftKey=nope", map[string]string{origin.HeaderDraftKey: "true"}, 404, ""},
		{"draft with drafts", "/api/v1/blogs/draft-1", map[string]string{origin.HeaderDrafts: "true"}, 200, "Unreleased feature"},
		{"published-and-draft shows published", "/api/v1/blogs/pubdraft-1", nil, 200, "Pricing (old)"},
		{"published-and-draft with draftKey shows draft", "/api/v1/blogs/pubdraft-1?draftKey=dk-pubdraft-1", map[string]string{origin.HeaderDraftKey: "true"}, 200, "Pricing (renewed)"},
		{"closed hidden", "/api/v1/blogs/closed-1", nil, 404, ""},
		{"closed with closed", "/api/v1/blogs/closed-1", map[string]string{origin.HeaderClosed: "true"}, 200, "Campaign 2023"},
		{"unknown id", "/api/v1/blogs/nope", map[string]string{origin.HeaderDrafts: "true"}, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			rec := serve(t, http.MethodGet, "team-demo.microcms.io", tc.target, tc.headers, "")
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if tc.wantTitle == "" {
				return
			}
			var item struct{ Title string }
			if err := json.Unmarshal(rec.Body.Bytes(), &item); err != nil {
				t.Fatal(err)
			}
			if item.Title != tc.wantTitle {
				t.Errorf("title = %q, want %q", item.Title, tc.wantTitle)
			}
		})
	}
}

func TestWritesAndManagement(t *testing.T) {
	tests := []struct {
		note     string
		method   string
		host     string
		target   string
		body     string
		wantCode int
	}{
		{"contact POST", "POST", "team-demo.microcms.io", "/api/v1/contact", `{"name":"a"}`, 201},
		{"blogs PUT", "PUT", "team-demo.microcms.io", "/api/v1/blogs/new-1", `{"title":"a"}`, 201},
		{"blogs PATCH", "PATCH", "team-demo.microcms.io", "/api/v1/blogs/published-1", `{"title":"a"}`, 200},
		{"blogs DELETE", "DELETE", "team-demo.microcms.io", "/api/v1/blogs/published-1", "", 202},
		{"invalid JSON", "POST", "team-demo.microcms.io", "/api/v1/contact", `{`, 400},
		{"object API", "GET", "team-demo.microcms.io", "/api/v1/site", "", 200},
		{"unknown API", "GET", "team-demo.microcms.io", "/api/v1/nope", "", 404},
		{"management media", "GET", "team-demo.microcms-management.io", "/api/v2/media", "", 200},
		{"management status", "PATCH", "team-demo.microcms-management.io", "/api/v1/contents/blogs/draft-1/status", `{"status":["PUBLISH"]}`, 200},
		{"management service", "GET", "team-demo.microcms-management.io:8080", "/api/v1/service", "", 200},
		{"content route on the management host", "GET", "team-demo.microcms-management.io", "/api/v1/blogs", "", 404},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			rec := serve(t, tc.method, tc.host, tc.target, map[string]string{"Content-Type": "application/json", origin.HeaderAPIKey: "secret"}, tc.body)
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if got := rec.Header().Get(origin.EchoAPIKeySeen); got != "true" {
				t.Errorf("%s = %q, want true", origin.EchoAPIKeySeen, got)
			}
			if got, want := rec.Header().Get(origin.EchoBodyBytes), strconv.Itoa(len(tc.body)); got != want {
				t.Errorf("%s = %q, want %s", origin.EchoBodyBytes, got, want)
			}
		})
	}
}

func TestEchoesKeygateHeaders(t *testing.T) {
	rec := serve(t, http.MethodGet, "team-demo.microcms.io", "/api/v1/blogs", map[string]string{
		"X-Keygate-Key-Id": "key_1", "X-Keygate-Decision-Id": "d1", origin.HeaderDrafts: "true",
	}, "")
	for name, want := range map[string]string{
		"X-Echo-Keygate-Key-Id": "key_1", "X-Echo-Keygate-Decision-Id": "d1", "X-Echo-Keygate-Drafts": "true",
		origin.EchoAPI: "content", origin.EchoAPIKeySeen: "false", origin.EchoMethod: "GET",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
}
