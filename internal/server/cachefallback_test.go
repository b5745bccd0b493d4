package server_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/server"
)

// TestCacheKeyOfPathsTheViewCannotProject: a policy may read a part of
// the request the server's request view does not project itself (the
// whole query object, one element of the parameter names, the whole
// route); the cache key then holds that part of the built input. Two
// questions that differ only there must not share a cached answer: each
// pair is asked twice in turn through the decision cache, and every answer
// is the policy's own.
func TestCacheKeyOfPathsTheViewCannotProject(t *testing.T) {
	for _, tc := range []struct {
		note string
		// rule allows exactly the request at allowed.
		rule, read       string
		allowed, refused string
	}{
		{"the whole query", `input.request.query == {"a": "1"}`, "query",
			"/api/v1/blogs?a=1", "/api/v1/blogs?a=2"},
		{"one parameter name", `input.request.parameters[0] == "a"`, "parameters",
			"/api/v1/blogs?a=1", "/api/v1/blogs?b=1"},
		{"the whole route", `input.request.route == {"endpoint": "blogs", "kind": "list"}`, "route",
			"/api/v1/blogs", "/api/v1/blogs/abc"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			eng := brokenEngine(t, `decision := {"allow": true, "status": 200, "code": "allowed"} if {
	`+tc.rule+`
} else := {"allow": false, "status": 403, "code": "refused", "message": "Refused."}`)
			_, proj := eng.Projection(engine.Content)
			if proj == nil || !proj.Cacheable || proj.Whole || !strings.Contains(proj.String(), tc.read) {
				t.Fatalf("projection %v: the test needs a cacheable projection reading %s", proj, tc.read)
			}
			_, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			metrics := server.NewMetrics(store.KeyCounts)
			h := server.New(eng, store, metrics, server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			for round := range 2 {
				for _, q := range []struct {
					path  string
					allow bool
				}{{tc.allowed, true}, {tc.refused, false}} {
					body, _ := json.Marshal(map[string]string{"service": "team-demo", "method": "GET", "path": q.path})
					rec := postDecide(t, h, string(body))
					var d struct{ Allow bool }
					if err := json.Unmarshal(rec.Body.Bytes(), &d); rec.Code != http.StatusOK || err != nil {
						t.Fatalf("%s: %d %s", q.path, rec.Code, rec.Body)
					}
					if d.Allow != q.allow {
						t.Errorf("round %d, %s: allow %v, want %v (a cached answer of the other question?)", round, q.path, d.Allow, q.allow)
					}
				}
			}
			if hits := scrapeHandler(t, metrics.Handler())["keygate_decision_cache_hits_total"]; hits != 2 {
				t.Errorf("%v cache hits, want 2 (the second round): the cache must answer, and answer right", hits)
			}
		})
	}
}
