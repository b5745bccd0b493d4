package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/server"
)

// publishWatcher runs after every time the engine has published a reload's
// outcome in its Status, before the server's reload returns.
type publishWatcher struct {
	*engine.Engine
	published func()
}

func (p publishWatcher) Reload(ctx context.Context) (engine.ReloadResult, error) {
	res, err := p.Engine.Reload(ctx)
	p.published()
	return res, err
}

func (p publishWatcher) ReloadObserved(ctx context.Context, observe func(engine.ReloadResult, error)) (engine.ReloadResult, error) {
	res, err := p.Engine.ReloadObserved(ctx, observe)
	p.published()
	return res, err
}

// TestReloadCountedBeforePublished: by the time a reload's outcome shows
// in /health, keygate_reloads_total counts it and /v1/policies/history
// holds it, for a rejected edit and a good one.
func TestReloadCountedBeforePublished(t *testing.T) {
	policies := copyTree(t, "../../policies")
	eng, store := openDeps(t, policies, copyTree(t, "../../data"))
	var h http.Handler
	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	counted := func(result string) int {
		m := regexp.MustCompile(fmt.Sprintf(`(?m)^keygate_reloads_total\{kind="policies",result=%q\} (\d+)$`, result)).FindStringSubmatch(get("/metrics"))
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	want := map[string]int{}
	checks := 0
	watcher := publishWatcher{Engine: eng, published: func() {
		checks++
		st := eng.Status()
		if got := counted(st.LastResult); got != want[st.LastResult]+1 {
			t.Errorf("/health shows a reload %s while keygate_reloads_total counts %d of them, want %d", st.LastResult, got, want[st.LastResult]+1)
		}
		if hist := get("/v1/policies/history"); !regexp.MustCompile(`"result":"` + st.LastResult + `"`).MatchString(hist) {
			t.Errorf("/health shows a reload %s not in the history yet: %s", st.LastResult, hist)
		}
	}}
	h = server.New(watcher, store, server.NewMetrics(store.KeyCounts), server.Options{Logger: slog.New(slog.DiscardHandler)}).Handler()

	extra := filepath.Join(policies, "content", "extra.rego")
	for _, step := range []struct {
		result string
		edit   func()
	}{
		{"error", func() { write(t, extra, "package content\n\nextra_rule if {\n\t1 +\n}\n") }},
		{"ok", func() { write(t, extra, "package content\n\nextra_rule := true\n") }},
	} {
		step.edit()
		watcher.ReloadPolicies(t, h)
		want[step.result]++
	}
	if checks != 2 {
		t.Fatalf("%d reloads observed, want 2", checks)
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ReloadPolicies asks the server to reload, as the watcher does, through
// POST /v1/policies/reload from loopback.
func (p publishWatcher) ReloadPolicies(t *testing.T, h http.Handler) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/policies/reload", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	h.ServeHTTP(rec, req)
}
