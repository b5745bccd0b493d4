package engine

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestBundleKeyAlgorithm(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, want, err string
		key             []byte
	}{
		{name: "rsa public key", key: pemPublic(t, &rsaKey.PublicKey), want: "RS256"},
		{name: "ecdsa p-384 public key", key: pemPublic(t, &ecKey.PublicKey), want: "ES384"},
		{name: "hmac secret", key: []byte("a shared secret"), want: "HS256"},
		{name: "private key refused", key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), err: "not a public key"},
		{name: "garbage in a pem block", key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}), err: "bundle verification key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := keyAlgorithm(c.key)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestNewBundleSourceURL(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"https://bundles.example.com/keygate.tar.gz", true},
		{"http://127.0.0.1:8080/b.tar.gz", true},
		{"file:///srv/bundle.tar.gz", true},
		{"file://", false},
		{"ftp://example.com/b.tar.gz", false},
		{"bundle.tar.gz", false},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			_, err := NewBundleSource(BundleOptions{URL: c.url})
			if (err == nil) != c.ok {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// writeBundle builds a bundle with OPA's writer: one content module whose
// decision allows when allow is true.
func writeBundle(t *testing.T, revision string, allow bool) []byte {
	t.Helper()
	rule := "package content\n\ndecision := {\"allow\": " + map[bool]string{true: "true", false: "false"}[allow] + "}\n"
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Modules:  []bundle.ModuleFile{{URL: "/content/content.rego", Path: "/content/content.rego", Raw: []byte(rule)}},
		Data:     map[string]any{"plans": map[string]any{"team": map[string]any{"maxKeys": 3}}},
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBundleSourceReload: an unchanged bundle (304, or the same bytes) is
// not recompiled; a new revision is; the serving revision with other
// content is refused; an unsigned bundle is refused when a key is set.
func TestBundleSourceReload(t *testing.T) {
	ctx := t.Context()
	eps := []string{Content}
	var body atomic.Pointer[[]byte]
	var gets, notModified atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := *body.Load()
		sum := sha256.Sum256(b)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		gets.Add(1)
		if r.Header.Get("If-None-Match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	r1 := writeBundle(t, "r1", true)
	body.Store(&r1)
	src, err := NewBundleSource(BundleOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Load(ctx, eps)
	if err != nil || first.Revision != "r1" {
		t.Fatalf("first load: %v, %v", first, err)
	}
	again, err := src.Load(ctx, eps)
	if err != nil || again != first || notModified.Load() != 1 {
		t.Fatalf("unchanged bundle: same set %v, err %v, 304s %d", again == first, err, notModified.Load())
	}

	clash := writeBundle(t, "r1", false)
	body.Store(&clash)
	if _, err := src.Load(ctx, eps); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("same revision, other content: err %v", err)
	}

	r2 := writeBundle(t, "r2", false)
	body.Store(&r2)
	set, err := src.Load(ctx, eps)
	if err != nil || set.Revision != "r2" {
		t.Fatalf("new revision: %v, %v", set, err)
	}
	d, err := set.Decide(ctx, Content, nil, 0)
	if err != nil || d.Value.String() != `{"allow": false}` {
		t.Fatalf("decision under r2: %v, %v", d.Value, err)
	}

	// A file source, verified: the unsigned bundle is refused, and so is
	// every later read of the same bytes (the refusal is remembered).
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(path, r2, 0o600); err != nil {
		t.Fatal(err)
	}
	verified, err := NewBundleSource(BundleOptions{URL: "file://" + path, VerificationKey: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := verified.Load(ctx, eps); err == nil || !strings.Contains(err.Error(), ".signatures.json") {
			t.Fatalf("unsigned bundle with a key: err %v", err)
		}
	}
}
