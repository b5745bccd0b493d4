package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
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
	l := server.NewDecisionLog(io.Discard, server.DecisionLogOptions{})
	srv := server.New(eng, store, metrics, server.Options{
		Logger: slog.New(slog.DiscardHandler), DecisionLog: l, CacheEntries: -1,
		Shadow: server.ShadowOptions{Policy: cand, Sample: 1, Queue: 2, Workers: 1},
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
