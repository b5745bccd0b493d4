package server_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

// lineBuffer collects what a decision log writes (from its own goroutine).
type lineBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// scrapeSeries reads a metrics handler's samples by series (name and
// labels as exposed).
func scrapeSeries(tb testing.TB, h http.Handler) map[string]float64 {
	tb.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] += v
		}
	}
	return out
}

// shadowResults sums keygate_shadow_evaluations_total by result.
func shadowResults(tb testing.TB, h http.Handler) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for series, v := range scrapeSeries(tb, h) {
		if !strings.HasPrefix(series, "keygate_shadow_evaluations_total{") {
			continue
		}
		_, rest, _ := strings.Cut(series, `result="`)
		result, _, _ := strings.Cut(rest, `"`)
		out[result] += v
	}
	return out
}

// TestReplayOfLoggedTrafficReportsNoChange is a property test: a server
// with --legacy-headers, the decision cache and a shadow candidate that is
// the serving policy itself answers random traffic (on /v1/decide and
// /v1/forward-auth) — old and new key headers mixed, content and management, allowed and denied, unknown
// secrets, keys of other services, restricted and unrestricted services.
// Replaying its own decision log against the serving policy must report no
// change, every line replayable; the shadow must agree on every decision.
func TestReplayOfLoggedTrafficReportsNoChange(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	data := copyTree(t, "../../data")
	writeFile(t, filepath.Join(data, "ip-restrictions.json"),
		`{"business-demo": {"default": ["203.0.113.0/24"], "apis": {"blogs": ["198.51.100.7"]}}}`)
	eng, store := openDeps(t, copyTree(t, "../../policies"), data)

	admin := map[string]string{"team-demo": "team-demo-admin-token", "hobby-demo": "hobby-demo-admin-token",
		"business-demo": "business-demo-admin-token"}
	specs := []keystore.KeySpec{
		{Name: "reader", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}},
		{Name: "drafts", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true}}},
		{Name: "writer", ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{
			"blogs": {Post: true, Put: true, Patch: true, Delete: true}, "contact": {Post: true}}}},
		{Name: "mgmt", ManagementAPI: keystore.ManagementPerms{GetMedia: true, GetContents: true, PatchContentStatus: true}},
	}
	secrets := []string{"team-demo-read-key", "no-such-secret", ""}
	own := map[string][]string{"team-demo": {"team-demo-read-key"}}
	for _, svc := range []string{"team-demo", "business-demo", "hobby-demo"} {
		for _, spec := range specs {
			c, err := store.CreateKey(t.Context(), admin[svc], svc, spec)
			if err != nil {
				continue // hobby's plan allows one key
			}
			secrets = append(secrets, c.Secret)
			own[svc] = append(own[svc], c.Secret)
		}
	}

	var logged lineBuffer
	l := decision.NewDecisionLog(&logged, decision.DecisionLogOptions{Dropped: func(string, int) { t.Error("a decision-log line was dropped") }})
	metrics := server.NewMetrics(store.KeyCounts)
	// Some answers come from a stale key store (503 store_stale): the
	// policy is not asked, and there is nothing to replay or shadow.
	stale := &staleStore{Store: store}
	stale.ready.Store(true)
	srv := server.New(eng, stale, metrics, server.Options{
		Logger: quiet, DecisionLog: l, LegacyHeaders: true, MaxStaleness: time.Minute,
		Shadow: decision.ShadowOptions{Policy: eng, Sample: 1, Queue: 8192},
	})
	h := srv.Handler()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 20))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	services := []string{"team-demo", "team-demo", "business-demo", "hobby-demo", "no-such-service"}
	methods := []string{"GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	contentPaths := []string{"/api/v1/blogs", "/api/v1/blogs/abc", "/api/v1/contact", "/api/v1/blogs/abc?draftKey=k1",
		"/api/v1/blogs?status=draft&limit=3", "/api/v1/blogs/a%3Fb", "/api/v1/blogs/a%25b", "/api/v1/blogs/a%00b", "/api/v1/blogs?q=a%00b", "/nope",
		// Longer than the log keeps a field: the line is marked cut.
		"/api/v1/blogs/" + strings.Repeat("x", 1500), "/api/v1/blogs?q=" + strings.Repeat("y", 1500)}
	managementPaths := []string{"/api/v1/media", "/api/v1/contents/blogs/abc/status", "/api/v1/contents/blogs", "/api/v1/nope"}
	clientIPs := []string{"", "203.0.113.9", "198.51.100.7", "192.0.2.1"}
	oldHeaders := []string{decision.LegacyAPIKeyHeader, decision.LegacyWriteKeyHeader, decision.LegacyDraftKeyHeader}

	const n = 600
	answered, staleAnswers, forwarded := 0, 0, 0
	for range n {
		staleness := time.Duration(0)
		if rng.IntN(20) == 0 {
			staleness = 2 * time.Minute
			staleAnswers++
		}
		stale.staleness.Store(int64(staleness))
		body := map[string]any{"service": pick(services), "method": pick(methods)}
		if rng.IntN(4) == 0 {
			body["api"], body["path"] = "management", pick(managementPaths)
		} else {
			body["api"], body["path"] = "content", pick(contentPaths)
		}
		if ip := pick(clientIPs); ip != "" {
			body["clientIp"] = ip
		}
		// Mostly a key of the asking service, sometimes any secret (of
		// another service, unknown, empty).
		secret := func() string {
			if ks := own[body["service"].(string)]; len(ks) > 0 && rng.IntN(3) > 0 {
				return pick(ks)
			}
			return pick(secrets)
		}
		headers := map[string]string{}
		mode := rng.IntN(3) // 0: the new header only, 1: old headers only, 2: both
		if mode != 1 {
			headers[decision.APIKeyHeader] = secret()
		}
		if mode != 0 {
			for _, name := range oldHeaders {
				if rng.IntN(2) == 0 {
					if rng.IntN(2) == 0 {
						name = strings.ToLower(name) // header names are case-insensitive
					}
					headers[name] = secret()
				}
			}
		}
		body["headers"] = headers
		if svc := body["service"].(string); body["api"] == "content" && svc != "no-such-service" && rng.IntN(4) == 0 {
			// Through /v1/forward-auth, as a proxy asks: the same
			// decision, the key headers on the request itself.
			req := httptest.NewRequest(http.MethodGet, "/v1/forward-auth", nil)
			req.Host = svc + ".microcms.io"
			req.Header.Set("X-Forwarded-Method", body["method"].(string))
			req.Header.Set("X-Forwarded-Uri", body["path"].(string))
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Header().Get("X-Keygate-Status") == "" {
				t.Fatalf("forward-auth %s %s: %d %s", body["method"], body["path"], rec.Code, rec.Body)
			}
			forwarded++
			answered++
			continue
		}
		b, _ := json.Marshal(body)
		if rec := postDecide(t, h, string(b)); rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", b, rec.Code, rec.Body)
		}
		answered++
	}
	// Wait for the shadow to have judged every decision.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := shadowResults(t, metrics.Handler())
		if res["agree"]+res["disagree"]+res["error"]+res["skipped"] >= float64(answered-staleAnswers) {
			if res["disagree"] != 0 || res["error"] != 0 || res["skipped"] != 0 {
				t.Errorf("shadow with the serving policy itself: %v", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shadow judged %v of %d decisions", res, answered)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	l.Close()

	rp := decision.NewReplayer(eng, store)
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != answered {
		t.Fatalf("%d decision-log lines for %d decisions", len(lines), answered)
	}
	// What the traffic covered, so that the property is not vacuous.
	seen := map[string]int{}
	for _, line := range lines {
		var e decision.LoggedDecision
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Shadow != nil {
			t.Fatalf("a shadow disagreement was logged: %s", line)
		}
		kind := "new"
		if e.Legacy != nil {
			kind = "legacy"
		}
		seen[kind+" "+e.Code]++
		if e.Truncated {
			seen["truncated"]++
		}
		out, err := rp.Replay(t.Context(), &e)
		switch {
		case err != nil:
			t.Errorf("not replayable: %v\n%s", err, line)
		case out.NotAsked != e.NotAsked || e.NotAsked != (e.Code == "store_stale"):
			t.Errorf("an answer of a stale store not told apart: %+v\n%s", out, line)
		case !e.NotAsked && out.Truncated != e.Truncated || e.Truncated != strings.Contains(line, "…"):
			t.Errorf("a line cut by the log not told apart: %+v\n%.200s", out, line)
		case out.KeyDeleted || out.KeyChanged:
			t.Errorf("keys changed under replay: %+v\n%s", out, line)
		case out.Err != nil:
			t.Errorf("evaluation error %v\n%s", out.Err, line)
		case out.Changed:
			t.Errorf("replay against the serving policy changed %d %s %q → %d %s %q (key header %q)\n%s",
				e.Status, e.Code, deref(e.Message), out.Decision.Status, out.Decision.Code, out.Decision.Message, out.KeyHeader, line)
		}
	}
	t.Logf("covered: %v; %d through forward-auth", seen, forwarded)
	for _, want := range []string{"truncated", "new store_stale", "legacy allowed", "legacy conflicting_api_keys", "legacy invalid_api_key",
		"new allowed", "new invalid_api_key"} {
		if seen[want] == 0 {
			t.Errorf("the traffic had no %q decision: %v", want, seen)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
