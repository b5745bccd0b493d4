package server_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
)

// copyTree copies a directory (policies/ or data/) into a temp dir.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDecisionCacheNeverChangesAnAnswer is a property test: two servers
// share one engine and one key store, one with the decision cache and one
// without. Random decision requests (drawn from small pools so the cache
// gets hits) interleaved with key creates, updates, rotations, deletes,
// data reloads and policy reloads between two versions must get identical
// answers from both, decision ids aside.
func TestDecisionCacheNeverChangesAnAnswer(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	policies := copyTree(t, "../../policies")
	data := copyTree(t, "../../data")
	// business-demo restricts addresses (seeded): the client address is
	// then part of the question, elsewhere it is not.
	writeFile(t, filepath.Join(data, "ip-restrictions.json"),
		`{"business-demo": {"default": ["203.0.113.0/24", "2001:db8::/32"], "apis": {"blogs": ["198.51.100.7"], "contact": []}}}`)
	eng, store := openDeps(t, policies, data)
	metrics := server.NewMetrics(store.KeyCounts)
	cached := server.New(eng, store, metrics, server.Options{Logger: quiet, CacheEntries: 64})
	uncached := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet, CacheEntries: -1})

	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	secrets := []string{"team-demo-read-key", "unknown-secret", ""}
	var ids []string
	services := []string{"team-demo", "hobby-demo", "business-demo", "no-such-service"}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	paths := []string{"/api/v1/blogs", "/api/v1/blogs/abc", "/api/v1/contact", "/api/v1/contact/x",
		"/api/v1/media", "/api/v2/media", "/api/v1/contents/blogs/abc/status", "/nope", "/api/v1/blogs?status=draft",
		"/api/v1/blogs/abc?draftKey=k1", "/api/v1/blogs/a%00b"}
	apis := []string{"content", "management"}
	clientIPs := []string{"", "203.0.113.9", "198.51.100.7", "192.0.2.1", "2001:db8::1"}

	admin := map[string]string{"team-demo": "team-demo-admin-token", "hobby-demo": "hobby-demo-admin-token", "business-demo": "business-demo-admin-token"}
	specs := []keystore.KeySpec{
		{Name: "drafts", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true}}},
		{Name: "writer", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true},
			Individual: map[string]keystore.ContentPerms{"contact": {Post: true, Put: true}}}},
		{Name: "mgmt", ManagementAPI: keystore.ManagementPerms{GetMedia: true, PatchContentStatus: true}},
		{Name: "none"},
	}
	// Version 1 of the policy drops HEAD (405) and gives hobby the status
	// parameter: both change answers the pools below ask for.
	contentRego := filepath.Join(policies, "content", "content.rego")
	plansJSON := filepath.Join(policies, "plans", "data.json")
	type policyVersion struct{ rego, plans string }
	v0 := policyVersion{readFile(t, contentRego), readFile(t, plansJSON)}
	v1 := policyVersion{
		regexp.MustCompile(`"HEAD":\s*"get",\s*`).ReplaceAllString(v0.rego, ""),
		strings.Replace(v0.plans, `"hobby": {"maxKeys": 1, "statusParameter": false`, `"hobby": {"maxKeys": 1, "statusParameter": true`, 1),
	}
	if v1.rego == v0.rego || v1.plans == v0.plans {
		t.Fatal("the policy edits of version 1 no longer apply: update the test")
	}
	versions := []policyVersion{v0, v1}
	// A fixed pool of questions, so that the cache gets hits.
	questions := make([]map[string]any, 40)
	for i := range questions {
		questions[i] = map[string]any{"service": pick(services), "api": pick(apis), "method": pick(methods), "path": pick(paths)}
		if ip := pick(clientIPs); ip != "" {
			questions[i]["clientIp"] = ip
		}
	}
	var hits, requests int
	version := 0
	for step := range 3000 {
		switch {
		case step%397 == 396: // policy reload between two versions, via a broken edit
			version = 1 - version
			writeFile(t, contentRego, "package content\n\ndecision := {\n") // syntax error: rejected
			if _, err := eng.Reload(t.Context()); err == nil {
				t.Fatal("a broken policy was accepted")
			}
			writeFile(t, contentRego, versions[version].rego)
			writeFile(t, plansJSON, versions[version].plans)
			if _, err := eng.Reload(t.Context()); err != nil {
				t.Fatal(err)
			}
		case step%53 == 52: // a key write
			svc := pick([]string{"team-demo", "hobby-demo", "business-demo"})
			switch op := rng.IntN(4); {
			case op == 0 || len(ids) == 0:
				c, err := store.CreateKey(t.Context(), admin[svc], svc, specs[rng.IntN(len(specs))])
				if err == nil {
					ids = append(ids, svc+"/"+c.Key.ID)
					secrets = append(secrets, c.Secret)
				}
			default:
				i := rng.IntN(len(ids))
				svc, id, _ := strings.Cut(ids[i], "/")
				switch op {
				case 1:
					_, _ = store.UpdateKey(t.Context(), admin[svc], svc, id, specs[rng.IntN(len(specs))])
				case 2:
					if c, err := store.RotateKey(t.Context(), admin[svc], svc, id); err == nil {
						secrets = append(secrets, c.Secret) // the old secret stays in the pool: it must now be 401
					}
				case 3:
					if err := store.DeleteKey(t.Context(), admin[svc], svc, id); err == nil {
						ids = append(ids[:i], ids[i+1:]...)
					}
				}
			}
		case step%499 == 498: // data reload (same content: a new generation)
			if err := store.ReloadData(t.Context()); err != nil {
				t.Fatal(err)
			}
		default:
			q := questions[rng.IntN(len(questions))]
			q["apiKey"] = pick(append(secrets[:3:3], secrets[max(3, len(secrets)-3):]...))
			body, _ := json.Marshal(q)
			a, b := decideVia(t, cached.Handler(), body), decideVia(t, uncached.Handler(), body)
			if a != b {
				t.Fatalf("step %d: cached and uncached answers differ for %s:\n cached:   %s\n uncached: %s", step, body, a, b)
			}
			requests++
		}
	}
	hits = int(counterValue(t, metrics, "keygate_decision_cache_hits_total"))
	if hits == 0 || hits == requests {
		t.Fatalf("%d cache hits of %d requests: the property was not exercised on both paths", hits, requests)
	}
	t.Logf("%d requests, %d cache hits, %d keys live", requests, hits, len(ids))
}

// decideVia posts body to /v1/decide and returns the answer without its
// decision id.
func decideVia(t *testing.T, h http.Handler, body []byte) string {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/decide", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("decide %s: %d %s", body, rec.Code, rec.Body)
	}
	var d map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	delete(d, "decisionId")
	out, _ := json.Marshal(d)
	return string(out)
}

// counterValue reads one counter from the metrics endpoint.
func counterValue(t *testing.T, m *server.Metrics, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in metrics", name)
	return 0
}
