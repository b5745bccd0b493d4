package engine

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestStartUnavailable: an engine whose first load fails starts, with
// StartUnavailable only; until a load succeeds every default entrypoint
// decides a 503 policy_unavailable deny and Status reports no revision;
// then the policy serves.
func TestStartUnavailable(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := NewFromSource(ctx, DirSource(dir), Options{Entrypoints: []string{Content}}); err == nil {
		t.Fatal("without StartUnavailable an empty directory started")
	}
	eng, err := NewFromSource(ctx, DirSource(dir), Options{StartUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := eng.Status(); eng.Revision() != "" || st.Revision != "" || st.LastResult != "error" || st.LastError == "" {
		t.Fatalf("revision %q, status %+v; want none and the error", eng.Revision(), st)
	}
	want := ast.MustParseTerm(`{"allow": false, "status": 503, "code": "policy_unavailable", "message": "No policy is loaded yet."}`).Value
	for _, ep := range DefaultEntrypoints() {
		d, err := eng.Decide(ctx, ep, ast.NewObject())
		if err != nil || d.Value.Compare(want) != 0 || d.Revision != "" {
			t.Errorf("%s before a policy loaded: %v, %v (revision %q)", ep, d.Value, err, d.Revision)
		}
	}
	writePolicy(t, dir, map[string]string{"content.rego": "package content\n\ndecision := {\"allow\": true}\n"})
	eng2, err := NewFromSource(ctx, DirSource(dir), Options{Entrypoints: []string{Content}, StartUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
	// The same engine recovers on its next reload.
	engU, err := NewFromSource(ctx, DirSource(t.TempDir()), Options{Entrypoints: []string{Content}, StartUnavailable: true})
	if err != nil {
		t.Fatal(err)
	}
	engU.source = DirSource(dir)
	res, err := engU.Reload(ctx)
	if err != nil || !res.Changed || engU.Revision() != eng2.Revision() || engU.Status().LastResult != "ok" {
		t.Fatalf("reload after the policy appeared: %+v, %v, status %+v", res, err, engU.Status())
	}
	if d, err := engU.Decide(ctx, Content, nil); err != nil || d.Value.String() != `{"allow": true}` {
		t.Fatalf("decision after the policy loaded: %v, %v", d.Value, err)
	}
}

// TestReloadObservedBeforeStatus: the observer runs before Status reports
// the outcome it observes, for every result.
func TestReloadObservedBeforeStatus(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	writePolicy(t, dir, map[string]string{"content.rego": "package content\n\ndecision := {\"allow\": true}\n"})
	eng, err := New(ctx, dir, Options{Entrypoints: []string{Content}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		rule, want string
	}{
		{`decision := {"allow": true}`, "unchanged"},
		{`decision := `, "error"},
		{`decision := {"allow": false}`, "ok"},
	} {
		writePolicy(t, dir, map[string]string{"content.rego": "package content\n\n" + step.rule + "\n"})
		before := eng.Status().LastAttempt
		called := false
		_, _ = eng.ReloadObserved(ctx, func(ReloadResult, error) {
			called = true
			if st := eng.Status(); !st.LastAttempt.Equal(before) {
				t.Errorf("%s: Status already reported the outcome to the observer: %+v", step.want, st)
			}
		})
		if st := eng.Status(); !called || st.LastResult != step.want {
			t.Errorf("observer called %v, status %+v, want %s", called, st, step.want)
		}
	}
}

// TestBundleCache: a bundle that loaded is cached; a source started while
// the server is down serves the cached revision, verified again; a cached
// file that no longer verifies is refused, never served; with the server
// back the source moves on.
func TestBundleCache(t *testing.T) {
	ctx := t.Context()
	eps := []string{Content}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pub := pemPublic(t, &key.PublicKey)

	var up atomic.Bool
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_, _ = w.Write(*body.Load())
	}))
	defer srv.Close()
	cacheDir := filepath.Join(t.TempDir(), "bundle")
	newSource := func() *BundleSource {
		src, err := NewBundleSource(BundleOptions{URL: srv.URL + "/b.tar.gz?token=x", VerificationKey: pub, CacheDir: cacheDir})
		if err != nil {
			t.Fatal(err)
		}
		return src
	}

	// Down, nothing cached: the download's error.
	if _, err := newSource().Load(ctx, eps); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("down without a cache: %v", err)
	}
	r1 := signedBundle(t, "r1", priv, "RS256")
	body.Store(&r1)
	up.Store(true)
	if set, err := newSource().Load(ctx, eps); err != nil || set.Revision != "r1" {
		t.Fatalf("up: %v, %v", set, err)
	}
	files, _ := filepath.Glob(filepath.Join(cacheDir, "*"))
	if len(files) != 1 || strings.Contains(files[0], "token") {
		t.Fatalf("cache directory holds %v, want one file named by digest", files)
	}

	up.Store(false)
	src := newSource()
	set, err := src.Load(ctx, eps)
	if err != nil || set.Revision != "r1" {
		t.Fatalf("down with r1 cached: %v, %v", set, err)
	}
	if again, err := src.Load(ctx, eps); err == nil || again != nil {
		t.Fatalf("the next poll while down: %v, %v; want the download's error", again, err)
	}
	up.Store(true)
	if again, err := src.Load(ctx, eps); err != nil || again != set {
		t.Fatalf("server back with the cached bytes: %v, %v; want the same set", again, err)
	}

	// Tampered: the signature no longer covers the file.
	cached, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	forged := signedBundle(t, "r1", []byte("some other secret"), "HS256")
	if err := os.WriteFile(files[0], forged, 0o600); err != nil {
		t.Fatal(err)
	}
	up.Store(false)
	if set, err := newSource().Load(ctx, eps); err == nil || set != nil || !strings.Contains(err.Error(), "cached bundle") {
		t.Fatalf("tampered cache: %v, %v; want refused", set, err)
	}
	eng, err := NewFromSource(ctx, newSource(), Options{Entrypoints: eps, StartUnavailable: true})
	if err != nil || eng.Revision() != "" {
		t.Fatalf("engine on a tampered cache: revision %q, %v; want not ready", eng.Revision(), err)
	}
	r2 := signedBundle(t, "r2", priv, "RS256")
	body.Store(&r2)
	up.Store(true)
	if res, err := eng.Reload(ctx); err != nil || res.Revision != "r2" {
		t.Fatalf("server back: %+v, %v", res, err)
	}
	if now, err := os.ReadFile(files[0]); err != nil || string(now) != string(r2) || string(now) == string(cached) {
		t.Fatalf("cache after r2 loaded: %d bytes, %v; want r2", len(now), errors.Join(err))
	}
}

func writePolicy(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
