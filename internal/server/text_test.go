package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/server"
)

// writeCounters is the key-write counters of /metrics (the 503s among them).
func writeCounters(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var lines []string
	for l := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(l, "keygate_key_writes_total") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "")
}

// TestUnstorableTextIsRefusedAtTheEdge is the class test of text that
// reaches a store: on every key-management route, a NUL or invalid UTF-8 in
// a path segment, a query value or a body string is a 400 problem, with and
// without a token, on the state file and on PostgreSQL alike — never a 503
// store_unavailable (PostgreSQL refuses both in text), and no key write is
// counted.
func TestUnstorableTextIsRefusedAtTheEdge(t *testing.T) {
	stores := []struct{ name, postgres string }{{"state file", ""}, {"postgres", ""}}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			postgres := st.postgres
			if st.name == "postgres" {
				c := pgtest.Start(t)
				url, err := c.NewDatabase(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				postgres = url
			}
			eng, store := openStoreDeps(t, postgres)
			h := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()
			counters := writeCounters(t, h)
			before := storeState(t, store)
			admin := 0
			for _, r := range h.(*gin.Engine).Routes() {
				if !strings.HasPrefix(r.Path, "/v1/services/") {
					continue
				}
				admin++
				params := map[string]string{"service": "team-demo", "id": "team-demo-read"}
				type variant struct{ note, target, body, code string }
				var variants []variant
				for _, bad := range []string{"%00", "%ff", "a%00b", "%c3%28"} {
					for name := range params {
						if !strings.Contains(r.Path, ":"+name) {
							continue
						}
						p := map[string]string{"service": params["service"], "id": params["id"]}
						p[name] = bad
						variants = append(variants, variant{name + " " + bad, routeTarget(r.Path, p), "", "invalid_path"})
					}
					for _, q := range []string{"key=" + bad, bad + "=1", "actor=x&action=" + bad} {
						variants = append(variants, variant{"query " + q, routeTarget(r.Path, params) + "?" + q, "", "invalid_query"})
					}
				}
				if rt, ok := bodyRoutes[r.Method+" "+r.Path]; ok {
					target := routeTarget(r.Path, rt.params)
					variants = append(variants,
						variant{"a NUL in the body", target, fmt.Sprintf(rt.body, `\u0000`), "invalid_field"},
						variant{"invalid UTF-8 in the body", target, fmt.Sprintf(rt.body, "\xff"), "invalid_field"})
				}
				for _, v := range variants {
					for _, token := range []string{"", "Bearer team-demo-admin-token"} {
						var body *bytes.Reader
						if v.body != "" {
							body = bytes.NewReader([]byte(v.body))
						} else {
							body = bytes.NewReader(nil)
						}
						req := httptest.NewRequest(r.Method, v.target, body)
						req.Header.Set("Content-Type", "application/json")
						if token != "" {
							req.Header.Set("Authorization", token)
						}
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						var p server.Problem
						_ = json.Unmarshal(rec.Body.Bytes(), &p)
						if rec.Code != http.StatusBadRequest || r.Method != http.MethodHead && p.Code != v.code {
							t.Errorf("%s %s (%s, token %v): got %d %.200s, want 400 %s", r.Method, r.Path, v.note, token != "", rec.Code, rec.Body, v.code)
						}
					}
				}
			}
			if admin < 10 {
				t.Fatalf("only %d key-management routes found", admin)
			}
			if got := writeCounters(t, h); got != counters {
				t.Errorf("key write counters moved:\nbefore %s\nafter  %s", counters, got)
			}
			if after := storeState(t, store); after != before {
				t.Errorf("refused requests changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestAccessLogBoundsClientText: the access log writes a client's path and
// method cut to 256 bytes (with the path's length beside a cut one),
// whatever their length: an unauthenticated request cannot write 60 KB a
// line.
func TestAccessLogBoundsClientText(t *testing.T) {
	var logs bytes.Buffer
	eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts),
		server.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}).Handler()
	long := strings.Repeat("k", 60<<10)
	for _, tc := range []struct {
		note, method, target string
		pathBytes            int
	}{
		{"a 60 KB key id", http.MethodDelete, "/v1/services/team-demo/keys/" + long, len("/v1/services/team-demo/keys/") + len(long)},
		{"a 60 KB unknown path", http.MethodGet, "/" + long, 1 + len(long)},
		{"a 60 KB path of multi-byte runes", http.MethodGet, "/v1/services/" + strings.Repeat("é", 30<<10) + "/keys", len("/v1/services//keys") + 60<<10},
		{"a 60 KB method", strings.Repeat("M", 60<<10), "/v1/services/team-demo/keys", 0},
		{"a short path is whole", http.MethodGet, "/v1/services/team-demo/keys/x", 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			logs.Reset()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.target, nil))
			line := logs.String()
			if len(line) > 1<<10 {
				t.Fatalf("a log line of %d bytes", len(line))
			}
			var e struct {
				Method, Path string
				PathBytes    int
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if tc.pathBytes == 0 {
				if len(tc.method) <= 256 && (e.Path != tc.target || e.PathBytes != 0) {
					t.Errorf("path %q (%d bytes), want %q whole", e.Path, e.PathBytes, tc.target)
				}
				return
			}
			if e.PathBytes != tc.pathBytes || !strings.HasSuffix(e.Path, "…") || !strings.HasPrefix(tc.target, strings.TrimSuffix(e.Path, "…")) ||
				strings.ContainsRune(e.Path, '\uFFFD') {
				t.Errorf("path %q (%d bytes), want a cut of %q with its length %d", e.Path, e.PathBytes, tc.target[:40], tc.pathBytes)
			}
		})
	}
}
