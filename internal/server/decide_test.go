package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/server"
)

func postDecide(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestDecideRequestBounds: requests whose shape would make a decision
// expensive or ambiguous are refused with a 400 problem naming the field.
func TestDecideRequestBounds(t *testing.T) {
	h := newFixture(t, server.Options{})
	manyPath := "/api/v1/blogs?" + strings.Repeat("a=1&", 101)
	manyQuery := map[string]string{}
	for i := range 101 {
		manyQuery["p"+strconv.Itoa(i)] = "1"
	}
	mq, _ := json.Marshal(map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs", "query": manyQuery})
	for _, tc := range []struct {
		note, body, field string
	}{
		{"101 parameters in the path", `{"service":"team-demo","method":"GET","path":"` + manyPath + `"}`, "path"},
		{"101 parameters in query", string(mq), "query"},
		{"the key header twice", `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","headers":{"X-MICROCMS-API-KEY":"a","x-microcms-api-key":"b"}}`, "headers"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			rec := postDecide(t, h, tc.body)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Field "+tc.field) {
				t.Fatalf("got %d %s, want 400 naming field %s", rec.Code, rec.Body, tc.field)
			}
		})
	}
	// 100 parameters are fine.
	ok := "/api/v1/blogs?" + strings.TrimSuffix(strings.Repeat("a=1&", 100), "&")
	if rec := postDecide(t, h, `{"service":"team-demo","method":"GET","path":"`+ok+`","apiKey":"team-demo-read-key"}`); rec.Code != http.StatusOK {
		t.Fatalf("100 parameters: %d %s", rec.Code, rec.Body)
	}
}

// TestLongQuestionsAreNotCached: a question whose cache key would exceed
// the per-entry bound is answered every time but never stored, so the
// entry bound also bounds memory.
func TestLongQuestionsAreNotCached(t *testing.T) {
	h := newFixture(t, server.Options{})
	// A long endpoint: the policy reads it, so it is part of the cache key
	// (a long content id is not, and would be cached).
	long := `{"service":"team-demo","method":"GET","path":"/api/v1/` + strings.Repeat("x", 2000) + `","apiKey":"team-demo-read-key"}`
	short := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs/abc","apiKey":"team-demo-read-key"}`
	for i, body := range []string{long, long, short, short} {
		if rec := postDecide(t, h, body); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	metrics := rec.Body.String()
	if !strings.Contains(metrics, "keygate_decision_cache_hits_total 1\n") || !strings.Contains(metrics, "keygate_decision_cache_misses_total 3\n") {
		t.Fatalf("want 1 hit (the short question) and 3 misses (the long one twice):\n%s", grepLines(metrics, "keygate_decision_cache"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
