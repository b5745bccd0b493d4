package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/server"
	"github.com/open-policy-agent/opa/v1/ast"
)

// stuckPolicy is a shadow candidate whose every evaluation blocks until
// released: the worst candidate there is.
type stuckPolicy struct {
	*engine.Engine
	release chan struct{}
	started chan struct{}
}

func (p *stuckPolicy) Decide(ctx context.Context, ep string, in ast.Value) (engine.Decision, error) {
	select {
	case p.started <- struct{}{}:
	default:
	}
	<-p.release
	return p.Engine.Decide(ctx, ep, in)
}

// TestShadowNeverBlocksAnAnswer: with a candidate stuck on its first
// evaluation and a queue of 2, a hundred decisions are answered at once,
// identically to a server without a shadow; the overflow is dropped and
// counted, and Close returns once the candidate is released.
func TestShadowNeverBlocksAnAnswer(t *testing.T) {
	dataDir := t.TempDir()
	if err := os.CopyFS(dataDir, os.DirFS("../../data")); err != nil {
		t.Fatal(err)
	}
	eng, store := openDeps(t, "../../policies", dataDir)
	cand := &stuckPolicy{Engine: eng, release: make(chan struct{}), started: make(chan struct{}, 1)}
	metrics := server.NewMetrics(store.KeyCounts)
	l := decision.NewDecisionLog(io.Discard, decision.DecisionLogOptions{})
	srv := server.New(eng, store, metrics, server.Options{
		Logger: slog.New(slog.DiscardHandler), DecisionLog: l, CacheEntries: -1,
		Shadow: decision.ShadowOptions{Policy: cand, Sample: 1, Queue: 2, Workers: 1},
	})
	plain := newFixture(t, server.Options{CacheEntries: -1})
	h := srv.Handler()

	bodies := []string{
		`{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`,
		`{"service":"team-demo","method":"POST","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`,
		`{"service":"team-demo","method":"GET","path":"/api/v1/blogs"}`,
	}
	start := time.Now()
	for i := range 100 {
		body := bodies[i%len(bodies)]
		got, want := postDecide(t, h, body), postDecide(t, plain, body)
		if got.Code != want.Code || withoutID(t, got.Body.Bytes()) != withoutID(t, want.Body.Bytes()) {
			t.Fatalf("answer with a stuck shadow %s, without %s", got.Body, want.Body)
		}
		if i == 0 {
			<-cand.started // the worker holds the first decision from now on
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("100 decisions took %s with a stuck shadow", took)
	}
	dropped := scrapeHandler(t, metrics.Handler())["keygate_shadow_dropped_total"]
	if dropped < 100-1-2 {
		t.Errorf("dropped %v, want at least %d (one evaluating, two queued)", dropped, 100-1-2)
	}
	close(cand.release)
	srv.Close()
	l.Close()
}

func withoutID(t *testing.T, b []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	delete(m, "decisionId")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestShadowSkipsADecisionWhoseKeyChanged: a key updated, rotated or
// deleted between a served decision and its shadow evaluation makes the
// candidate's question another one (the key's input, or which key the
// secret names, changed): the evaluation is skipped and counted, never
// reported as a disagreement. The candidate (the serving policy itself) is
// held on an earlier decision while the key changes.
func TestShadowSkipsADecisionWhoseKeyChanged(t *testing.T) {
	const token = "team-demo-admin-token"
	reader := keystore.KeySpec{Name: "reader", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
	removePerms := func(t *testing.T, store *keystore.Store, id string) {
		if _, err := store.UpdateKey(t.Context(), token, "team-demo", id, keystore.KeySpec{Name: "reader"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		note string
		// legacy sends the key in X-API-KEY to a server with
		// --legacy-headers.
		legacy bool
		change func(t *testing.T, store *keystore.Store, id string)
	}{
		{"permissions removed, old header", true, removePerms},
		{"permissions removed", false, func(t *testing.T, store *keystore.Store, id string) {
			if _, err := store.UpdateKey(t.Context(), token, "team-demo", id, keystore.KeySpec{Name: "reader"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"rotated", false, func(t *testing.T, store *keystore.Store, id string) {
			if _, err := store.RotateKey(t.Context(), token, "team-demo", id); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", false, func(t *testing.T, store *keystore.Store, id string) {
			if err := store.DeleteKey(t.Context(), token, "team-demo", id); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			created, err := store.CreateKey(t.Context(), token, "team-demo", reader)
			if err != nil {
				t.Fatal(err)
			}
			cand := &stuckPolicy{Engine: eng, release: make(chan struct{}), started: make(chan struct{}, 1)}
			metrics := server.NewMetrics(store.KeyCounts)
			var logged lineBuffer
			l := decision.NewDecisionLog(&logged, decision.DecisionLogOptions{})
			srv := server.New(eng, store, metrics, server.Options{
				Logger: slog.New(slog.DiscardHandler), DecisionLog: l, CacheEntries: -1, LegacyHeaders: tc.legacy,
				Shadow: decision.ShadowOptions{Policy: cand, Sample: 1, Queue: 8, Workers: 1},
			})
			h := srv.Handler()
			ask := func(secret string) {
				body := `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","apiKey":"` + secret + `"}`
				if tc.legacy {
					body = `{"service":"team-demo","method":"GET","path":"/api/v1/blogs","headers":{"X-API-KEY":"` + secret + `"}}`
				}
				if rec := postDecide(t, h, body); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"allow":true`) {
					t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
				}
			}
			ask("team-demo-read-key")
			<-cand.started // the worker holds the first decision
			ask(created.Secret)
			tc.change(t, store, created.ID)
			close(cand.release)
			deadline := time.Now().Add(10 * time.Second)
			var res map[string]float64
			for {
				res = shadowResults(t, metrics.Handler())
				if res["agree"]+res["disagree"]+res["error"]+res["skipped"] >= 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			srv.Close()
			l.Close()
			if res["agree"] != 1 || res["skipped"] != 1 || res["disagree"] != 0 || res["error"] != 0 {
				t.Errorf("shadow results %v, want the first decision agreed and the second skipped", res)
			}
			if d := scrapeHandler(t, metrics.Handler())["keygate_shadow_disagreements_total"]; d != 0 {
				t.Errorf("%v disagreements counted", d)
			}
			if strings.Contains(logged.String(), `"shadow":`) {
				t.Errorf("a disagreement was logged:\n%s", logged.String())
			}
		})
	}
}
