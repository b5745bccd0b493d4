package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/keygate/keygate/internal/keystore/local"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/server"
)

// The key store scopes the decision cache's invalidation itself: it owns
// a cachescope.Ledger (CacheScopes) and touches it after each change is
// visible and before it is answered. These tests run the server on the
// real store, so they fail if a write path forgets a touch.
var _ decision.CacheScoper = (*keystore.Store)(nil)

// generationOnly hides the store's ledger: a cache on it falls back to the
// store's generation (every write invalidates everything).
type generationOnly struct{ server.KeyStore }

// ipAuthorizer is the fake key authorizer that also allows every IP
// restriction write.
type ipAuthorizer struct{ keystoretest.Authorizer }

func (*ipAuthorizer) AuthorizeIPRestrictions(context.Context, keystore.NetworkRequest) (keystore.NetworkDecision, error) {
	return keystore.NetworkDecision{Allow: true, Status: http.StatusOK}, nil
}

var adminTokens = map[string]string{
	"team-demo": "team-demo-admin-token", "hobby-demo": "hobby-demo-admin-token",
	"business-demo": "business-demo-admin-token", "enterprise-demo": "enterprise-demo-admin-token",
}

// TestScopedCacheNeverChangesAnAnswer is the cache's property test with
// invalidation scoped per service and per secret: a cached server on a
// scoped store and an uncached one on the same store must give identical
// answers, decision ids aside, to random questions interleaved with key
// creates, updates, rotations, deletes, IP restriction changes and data
// reloads on several services.
func TestScopedCacheNeverChangesAnAnswer(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	eng, _ := openDeps(t, "../../policies", copyTree(t, "../../data"))
	store, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{
		DataDir: copyTree(t, "../../data"), Authorizer: &ipAuthorizer{}, Network: &ipAuthorizer{}, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	scoped := store
	metrics := server.NewMetrics(store.KeyCounts)
	cached := server.New(eng, scoped, metrics, server.Options{Logger: quiet, CacheEntries: 256})
	uncached := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet, CacheEntries: -1})

	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	writable := []string{"team-demo", "hobby-demo", "business-demo", "enterprise-demo"}
	services := append([]string{"no-such-service"}, writable...)
	secrets := []string{"team-demo-read-key", "unknown-secret", ""}
	var ids []string
	paths := []string{"/api/v1/blogs", "/api/v1/blogs/abc", "/api/v1/contact", "/api/v1/contact/x",
		"/api/v1/media", "/api/v1/contents/blogs/abc/status", "/api/v1/blogs?status=draft"}
	specs := []keystore.KeySpec{
		{Name: "drafts", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true}}},
		{Name: "writer", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true},
			Individual: map[string]keystore.ContentPerms{"contact": {Post: true, Put: true}}}},
		{Name: "mgmt", ManagementAPI: keystore.ManagementPerms{GetMedia: true, PatchContentStatus: true}},
		{Name: "none"},
	}
	ipSettings := []keystore.IPRestrictions{
		{Default: []string{"203.0.113.0/24"}},
		{},
	}
	questions := make([]map[string]any, 40)
	for i := range questions {
		questions[i] = map[string]any{"service": pick(services), "api": pick([]string{"content", "management"}),
			"method": pick([]string{"GET", "POST", "PATCH", "DELETE"}), "path": pick(paths),
			"clientIp": pick([]string{"203.0.113.9", "192.0.2.1"})}
	}
	ctx := t.Context()
	requests := 0
	for step := range 3000 {
		switch {
		case step%31 == 30: // a key write
			svc := pick(writable)
			switch op := rng.IntN(4); {
			case op == 0 || len(ids) == 0:
				if c, err := scoped.CreateKey(ctx, adminTokens[svc], svc, specs[rng.IntN(len(specs))]); err == nil {
					ids = append(ids, svc+"/"+c.ID)
					secrets = append(secrets, c.Secret)
				}
			default:
				i := rng.IntN(len(ids))
				svc, id, _ := splitID(ids[i])
				switch op {
				case 1:
					_, _ = scoped.UpdateKey(ctx, adminTokens[svc], svc, id, specs[rng.IntN(len(specs))])
				case 2:
					if c, err := scoped.RotateKey(ctx, adminTokens[svc], svc, id); err == nil {
						secrets = append(secrets, c.Secret) // the old secret stays in the pool
					}
				case 3:
					if scoped.DeleteKey(ctx, adminTokens[svc], svc, id) == nil {
						ids = append(ids[:i], ids[i+1:]...)
					}
				}
			}
		case step%211 == 210: // an IP restriction change
			svc := pick(writable)
			if _, err := scoped.PutIPRestrictions(ctx, adminTokens[svc], svc, ipSettings[rng.IntN(len(ipSettings))]); err != nil {
				t.Fatalf("ip restrictions of %s: %v", svc, err)
			}
		case step%997 == 996:
			if err := scoped.ReloadData(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			q := questions[rng.IntN(len(questions))]
			q["apiKey"] = pick(append(secrets[:3:3], secrets[max(3, len(secrets)-6):]...))
			body, _ := json.Marshal(q)
			a, b := decideVia(t, cached.Handler(), body), decideVia(t, uncached.Handler(), body)
			if a != b {
				t.Fatalf("step %d: cached and uncached answers differ for %s:\n cached:   %s\n uncached: %s", step, body, a, b)
			}
			requests++
		}
	}
	hits := int(counterValue(t, metrics, "keygate_decision_cache_hits_total"))
	if hits == 0 || hits == requests {
		t.Fatalf("%d cache hits of %d requests: the property was not exercised on both paths", hits, requests)
	}
	t.Logf("%d requests, %d cache hits, %d keys live", requests, hits, len(ids))
}

func splitID(s string) (svc, id string, ok bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// TestKeyWritesToOneServiceLeaveOthersHot: with a scoped store, key writes
// to one service leave the cached decisions of another service hits; with
// a store that has only a generation (the control), each write turns them
// into misses.
func TestKeyWritesToOneServiceLeaveOthersHot(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name     string
		scoped   bool
		wantHits int
	}{
		{"scoped store", true, 20},
		{"store generation only", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			var keys server.KeyStore = store
			if !tc.scoped {
				keys = generationOnly{store}
			}
			writer := store
			metrics := server.NewMetrics(store.KeyCounts)
			h := server.New(eng, keys, metrics, server.Options{Logger: quiet}).Handler()
			hot := []byte(`{"service":"team-demo","api":"content","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`)
			want := decideVia(t, h, hot)
			ctx := t.Context()
			tok := adminTokens["business-demo"]
			for i := range 20 {
				c, err := writer.CreateKey(ctx, tok, "business-demo", keystore.KeySpec{Name: fmt.Sprint("k", i)})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := writer.UpdateKey(ctx, tok, "business-demo", c.ID, keystore.KeySpec{Name: "renamed",
					ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}); err != nil {
					t.Fatal(err)
				}
				if err := writer.DeleteKey(ctx, tok, "business-demo", c.ID); err != nil {
					t.Fatal(err)
				}
				before := counterValue(t, metrics, "keygate_decision_cache_hits_total")
				if got := decideVia(t, h, hot); got != want {
					t.Fatalf("after write %d the answer changed:\n%s\nwant\n%s", i, got, want)
				}
				if counterValue(t, metrics, "keygate_decision_cache_hits_total") == before {
					if tc.wantHits > 0 {
						t.Fatalf("after writes to business-demo, team-demo's question missed the cache (write %d)", i)
					}
				}
			}
			hits := int(counterValue(t, metrics, "keygate_decision_cache_hits_total"))
			if hits != tc.wantHits {
				t.Fatalf("%d hits on team-demo's question across 20 rounds of business-demo writes, want %d", hits, tc.wantHits)
			}
		})
	}
}

// TestScopedRevocationRace: per service, while several goroutines ask the
// same question with a key of that service (so its allow is cached) and
// writers churn keys of another service, revoking the key (delete, an
// update granting nothing, a rotation) must deny every question asked
// after the revocation was answered: no cached allow survives it.
func TestScopedRevocationRace(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	scoped := store
	h := server.New(eng, scoped, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet}).Handler()
	readAll := keystore.KeySpec{Name: "reader", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
	revocations := []struct {
		name   string
		revoke func(ctx context.Context, svc, id string) error
	}{
		{"delete", func(ctx context.Context, svc, id string) error {
			return scoped.DeleteKey(ctx, adminTokens[svc], svc, id)
		}},
		{"update to nothing", func(ctx context.Context, svc, id string) error {
			_, err := scoped.UpdateKey(ctx, adminTokens[svc], svc, id, keystore.KeySpec{Name: "nothing"})
			return err
		}},
		{"rotate", func(ctx context.Context, svc, id string) error {
			_, err := scoped.RotateKey(ctx, adminTokens[svc], svc, id)
			return err
		}},
	}
	for _, svc := range []string{"team-demo", "enterprise-demo"} {
		other := map[string]string{"team-demo": "enterprise-demo", "enterprise-demo": "team-demo"}[svc]
		for _, rv := range revocations {
			t.Run(svc+"/"+rv.name, func(t *testing.T) {
				ctx := t.Context()
				c, err := scoped.CreateKey(ctx, adminTokens[svc], svc, readAll)
				if err != nil {
					t.Fatal(err)
				}
				body := fmt.Appendf(nil, `{"service":%q,"api":"content","method":"GET","path":"/api/v1/blogs","apiKey":%q}`, svc, c.Secret)
				if status, allow := askDecide(h, body); status != http.StatusOK || !allow {
					t.Fatalf("the new key is not allowed before its revocation (status %d)", status)
				}
				var revoked atomic.Bool
				var lateAllows, asked atomic.Int64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							after := revoked.Load()
							_, allow := askDecide(h, body)
							if after {
								asked.Add(1)
								if allow {
									lateAllows.Add(1)
								}
							}
						}
					})
				}
				wg.Go(func() { // churn in the other service
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if k, err := scoped.CreateKey(ctx, adminTokens[other], other, readAll); err == nil {
							_ = scoped.DeleteKey(ctx, adminTokens[other], other, k.ID)
						}
					}
				})
				time.Sleep(50 * time.Millisecond)
				if err := rv.revoke(ctx, svc, c.ID); err != nil {
					t.Fatal(err)
				}
				revoked.Store(true)
				for asked.Load() < 200 {
					time.Sleep(5 * time.Millisecond)
				}
				close(stop)
				wg.Wait()
				if n := lateAllows.Load(); n > 0 {
					t.Fatalf("%d of %d questions asked after the revocation was answered were allowed", n, asked.Load())
				}
			})
		}
	}
}

// askDecide posts body to /v1/decide and returns the status and allow.
func askDecide(h http.Handler, body []byte) (int, bool) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/decide", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	var d struct {
		Allow bool `json:"allow"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &d)
	return rec.Code, d.Allow
}

// TestCacheHitRateUnderSpreadWrites: questions spread over every key of
// several services, with a key update to a random one of those keys after
// every tenth question. On the store's ledger a write invalidates only the
// updated key's decisions, so most questions still hit; on the generation
// alone every write empties the cache's view of every key. Both hit rates
// are logged (the figure the scoping is for); the answers must match an
// uncached server throughout.
func TestCacheHitRateUnderSpreadWrites(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	rates := map[bool]float64{}
	for _, scoped := range []bool{true, false} {
		eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
		var keys server.KeyStore = store
		if !scoped {
			keys = generationOnly{store}
		}
		metrics := server.NewMetrics(store.KeyCounts)
		h := server.New(eng, keys, metrics, server.Options{Logger: quiet}).Handler()
		uncached := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet, CacheEntries: -1}).Handler()
		ctx := t.Context()
		type key struct{ svc, id, secret string }
		var ks []key
		readAll := keystore.KeySpec{Name: "reader", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
		for _, svc := range []string{"business-demo", "enterprise-demo"} {
			for range 8 {
				c, err := store.CreateKey(ctx, adminTokens[svc], svc, readAll)
				if err != nil {
					t.Fatalf("create on %s: %v", svc, err)
				}
				ks = append(ks, key{svc, c.ID, c.Secret})
			}
		}
		rng := rand.New(rand.NewPCG(7, 7))
		before := counterValue(t, metrics, "keygate_decision_cache_hits_total")
		const questions = 2000
		for i := range questions {
			if i%10 == 9 {
				k := ks[rng.IntN(len(ks))]
				spec := readAll
				spec.Name = fmt.Sprint("reader-", i)
				if _, err := store.UpdateKey(ctx, adminTokens[k.svc], k.svc, k.id, spec); err != nil {
					t.Fatal(err)
				}
			}
			k := ks[rng.IntN(len(ks))]
			body := fmt.Appendf(nil, `{"service":%q,"api":"content","method":"GET","path":"/api/v1/blogs","apiKey":%q}`, k.svc, k.secret)
			if a, b := decideVia(t, h, body), decideVia(t, uncached, body); a != b {
				t.Fatalf("question %d: cached and uncached answers differ:\n%s\n%s", i, a, b)
			}
		}
		rates[scoped] = (counterValue(t, metrics, "keygate_decision_cache_hits_total") - before) / questions
	}
	t.Logf("hit rate over 16 keys of 2 services, one key update per 10 questions: scoped %.1f%%, generation only %.1f%%",
		100*rates[true], 100*rates[false])
	if rates[true] < 0.8 || rates[false] > rates[true]/2 {
		t.Fatalf("hit rates scoped %.2f, generation only %.2f: want scoped >= 0.8 and at least twice the generation's", rates[true], rates[false])
	}
}

// TestCachedAllowEndsWithIPRestrictionChange: a decision cached under one
// IP restriction setting of a service is not served after the setting
// changes to one that refuses the client, on the real store (the change
// touches the service in the store's ledger).
func TestCachedAllowEndsWithIPRestrictionChange(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	eng, _ := openDeps(t, "../../policies", copyTree(t, "../../data"))
	store, err := keystore.New(t.Context(), local.New(local.Options{StatePath: filepath.Join(t.TempDir(), "state.json")}), keystore.Options{
		DataDir: copyTree(t, "../../data"), Authorizer: &ipAuthorizer{}, Network: &ipAuthorizer{}, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h := server.New(eng, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: quiet}).Handler()
	ctx := t.Context()
	const svc = "enterprise-demo"
	c, err := store.CreateKey(ctx, adminTokens[svc], svc, keystore.KeySpec{Name: "reader",
		ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Appendf(nil, `{"service":%q,"api":"content","method":"GET","path":"/api/v1/blogs","apiKey":%q,"clientIp":"203.0.113.9"}`, svc, c.Secret)
	for _, step := range []struct {
		allowed string
		want    bool
	}{
		{"203.0.113.0/24", true},
		{"198.51.100.0/24", false},
		{"203.0.113.0/24", true},
	} {
		if _, err := store.PutIPRestrictions(ctx, adminTokens[svc], svc, keystore.IPRestrictions{Default: []string{step.allowed}}); err != nil {
			t.Fatal(err)
		}
		for range 3 { // the second and third answers may come from the cache
			if status, allow := askDecide(h, body); status != http.StatusOK || allow != step.want {
				t.Fatalf("restricted to %s: status %d allow %v, want allow %v", step.allowed, status, allow, step.want)
			}
		}
	}
}
