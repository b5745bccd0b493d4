package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/server"
)

// openDeps opens the engine on policies and a key store on data (with a
// temp state and the fake authorizer), closed at the end of the test.
func openDeps(tb testing.TB, policies, data string) (*engine.Engine, *keystore.Store) {
	tb.Helper()
	quiet := slog.New(slog.DiscardHandler)
	// The fixtures test answers, not the evaluation bound (the fault tests
	// have their own engines): a bound a loaded machine under -race cannot
	// exceed, so that a slow evaluation is never mistaken for a deny.
	eng, err := engine.New(tb.Context(), policies, engine.Options{Timeout: 10 * time.Second, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	store, err := keystore.New(tb.Context(), local.New(local.Options{StatePath: filepath.Join(tb.TempDir(), "state.json")}), keystore.Options{
		DataDir: data, Authorizer: &keystoretest.Authorizer{}, Logger: quiet,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	return eng, store
}

// newFixture is a server on the real policies and a temp copy of data/.
func newFixture(t *testing.T, opts server.Options) http.Handler {
	t.Helper()
	eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
	opts.Logger = slog.New(slog.DiscardHandler)
	return server.New(eng, store, server.NewMetrics(store.KeyCounts), opts).Handler()
}

// TestForwardAuthHeaderConventions: naming the proxy makes keygate read
// only that proxy's headers, so a client-sent header of another convention
// cannot change what is decided.
func TestForwardAuthHeaderConventions(t *testing.T) {
	const key = "team-demo-read-key" // default GET only
	for _, tc := range []struct {
		note    string
		mode    string
		method  string // of the forward-auth request itself
		target  string
		headers map[string]string
		want    int
		status  string // X-Keygate-Status
	}{
		{note: "auto: nginx headers", mode: server.ForwardAuto, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "DELETE", "X-Original-URI": "/api/v1/blogs/a"}, want: 403, status: "400"},
		{note: "auto: traefik headers", mode: server.ForwardAuto, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/blogs"}, want: 200, status: "200"},
		{note: "auto: envoy path suffix", mode: server.ForwardAuto, method: "POST", target: "/v1/forward-auth/api/v1/blogs",
			want: 403, status: "400"},
		{note: "auto: conflicting methods are denied", mode: server.ForwardAuto, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/blogs", "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/api/v1/blogs"}, want: 403, status: "400"},
		{note: "auto: conflicting URIs are denied", mode: server.ForwardAuto, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/blogs", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/contact"}, want: 403, status: "400"},
		{note: "auto: agreeing conventions are fine", mode: server.ForwardAuto, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/blogs", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/blogs"}, want: 200, status: "200"},
		{note: "nginx: a client's X-Forwarded-Method is ignored", mode: server.ForwardNginx, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "DELETE", "X-Original-URI": "/api/v1/blogs/a", "X-Forwarded-Method": "GET"}, want: 403, status: "400"},
		{note: "traefik: a client's X-Original-Method is ignored", mode: server.ForwardTraefik, method: "GET", target: "/v1/forward-auth",
			headers: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/blogs", "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/api/v1/blogs/a"}, want: 403, status: "400"},
		{note: "envoy: X-Original-Method cannot turn a POST into a GET", mode: server.ForwardEnvoy, method: "POST", target: "/v1/forward-auth/api/v1/blogs",
			headers: map[string]string{"X-Original-Method": "GET", "X-Forwarded-Method": "GET"}, want: 403, status: "400"},
		{note: "envoy: GET with query", mode: server.ForwardEnvoy, method: "GET", target: "/v1/forward-auth/api/v1/blogs/abc?draftKey=k",
			want: 200, status: "200"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			h := newFixture(t, server.Options{ForwardAuthHeaders: tc.mode})
			req := httptest.NewRequest(tc.method, tc.target, nil)
			req.Host = "team-demo.microcms.io"
			req.Header.Set("X-MICROCMS-API-KEY", key)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want || rec.Header().Get("X-Keygate-Status") != tc.status {
				t.Fatalf("got %d (X-Keygate-Status %q, %q), want %d (%s)", rec.Code,
					rec.Header().Get("X-Keygate-Status"), rec.Header().Get("X-Keygate-Message"), tc.want, tc.status)
			}
		})
	}
}
