package engine

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// openSSHPublicKey is pub in the authorized_keys form `ssh-keygen` writes.
func openSSHPublicKey(pub ed25519.PublicKey) []byte {
	var wire []byte
	for _, f := range [][]byte{[]byte("ssh-ed25519"), pub} {
		wire = binary.BigEndian.AppendUint32(wire, uint32(len(f)))
		wire = append(wire, f...)
	}
	return []byte("ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire) + " ops@example\n")
}

func TestVerificationAlgorithm(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemPublic(t, &rsaKey.PublicKey)
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})
	ssh := openSSHPublicKey(edPub)
	cases := []struct {
		name, alg, want, err string
		key                  []byte
	}{
		{name: "rsa public key", key: rsaPEM, want: "RS256"},
		{name: "rsa public key, pkcs1", key: pkcs1PEM, want: "RS256"},
		{name: "rsa public key, PS384 said", key: rsaPEM, alg: "ps384", want: "PS384"},
		{name: "ecdsa p-256", key: pemPublic(t, &ec256.PublicKey), want: "ES256"},
		{name: "ecdsa p-384", key: pemPublic(t, &ec384.PublicKey), want: "ES384"},
		{name: "ed25519", key: pemPublic(t, edPub), want: "EdDSA"},
		{name: "ed25519, EdDSA said", key: pemPublic(t, edPub), alg: "EdDSA", want: "EdDSA"},
		{name: "pem with surrounding blank lines", key: append(append([]byte("\n\n"), rsaPEM...), "\n"...), want: "RS256"},
		{name: "hmac secret with HS256", key: []byte("a shared secret"), alg: "HS256", want: "HS256"},
		{name: "hmac secret with hs512", key: []byte("a shared secret"), alg: "hs512", want: "HS512"},

		{name: "hmac secret without an algorithm", key: []byte("a shared secret"), err: "an HMAC secret needs its algorithm set explicitly"},
		{name: "openssh public key", key: ssh, err: "is an OpenSSH public key, not PEM"},
		{name: "openssh public key as HS256 secret", key: ssh, alg: "HS256", err: "OpenSSH public key, which is public"},
		{name: "pem public key as HS256 secret", key: rsaPEM, alg: "HS256", err: "needs a shared secret, and the key is PEM"},
		{name: "empty HS256 secret", key: []byte(" \n"), alg: "HS256", err: "secret is empty"},
		{name: "rsa private key", key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), err: "is a private key"},
		{name: "pkcs8 private key", key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), err: "is a private key"},
		{name: "pem of an unknown type", key: pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PUBLIC KEY", Bytes: []byte("x")}), err: "not a public key or certificate"},
		{name: "garbage in a pem block", key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}), err: "bundle verification key"},
		{name: "two pem blocks", key: append(bytes.Clone(rsaPEM), pemPublic(t, edPub)...), err: "more than one PEM block"},
		{name: "text before the pem block", key: append([]byte("note: "), rsaPEM...), err: "is not PEM"},
		{name: "ES384 for an rsa key", key: rsaPEM, alg: "ES384", err: "does not fit an RSA key"},
		{name: "ES256 for a p-384 key", key: pemPublic(t, &ec384.PublicKey), alg: "ES256", err: "does not fit an ECDSA P-384 key"},
		{name: "RS256 for an ed25519 key", key: pemPublic(t, edPub), alg: "RS256", err: "does not fit an Ed25519 key"},
		{name: "unknown algorithm", key: rsaPEM, alg: "none", err: "unknown algorithm"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := VerificationAlgorithm(c.key, c.alg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%q, err %v; want an error with %q", got, err, c.err)
				}
				if _, err := NewBundleSource(BundleOptions{URL: "file:///b.tar.gz", VerificationKey: c.key, KeyAlgorithm: c.alg}); err == nil {
					t.Fatal("NewBundleSource accepted the key")
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// signedBundle is writeBundle's bundle (allowing) signed with key under
// alg, as `opa build --signing-key --signing-alg` signs it.
func signedBundle(t testing.TB, revision string, key []byte, alg string) []byte {
	t.Helper()
	rule := "package content\n\ndecision := {\"allow\": true}\n"
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Modules:  []bundle.ModuleFile{{URL: "/content/content.rego", Path: "/content/content.rego", Raw: []byte(rule)}},
		Data:     map[string]any{},
	}
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(key), alg, ""), DefaultBundleKeyID, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSignedBundles: a bundle signed with each kind of key loads with the
// matching verification key; one HS256-signed with the public key's own
// text (the key confusion) never does.
func TestSignedBundles(t *testing.T) {
	ctx := t.Context()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	load := func(body, key []byte, alg string) error {
		path := filepath.Join(t.TempDir(), "bundle.tar.gz")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := NewBundleSource(BundleOptions{URL: "file://" + path, VerificationKey: key, KeyAlgorithm: alg})
		if err != nil {
			return err
		}
		_, err = src.Load(ctx, []string{Content})
		return err
	}
	for _, c := range []struct {
		name, signAlg string
		signKey, pub  []byte
		verifyAlg     string
	}{
		{"rsa", "RS256", privPEM(rsaKey), pemPublic(t, &rsaKey.PublicKey), ""},
		{"ecdsa", "ES256", privPEM(ecKey), pemPublic(t, &ecKey.PublicKey), ""},
		{"ed25519", "EdDSA", privPEM(edPriv), pemPublic(t, edPub), ""},
		{"hmac", "HS256", []byte("a shared secret"), []byte("a shared secret"), "HS256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := load(signedBundle(t, "r1", c.signKey, c.signAlg), c.pub, c.verifyAlg); err != nil {
				t.Fatalf("bundle signed with the matching key: %v", err)
			}
		})
	}
	t.Run("HS256 signed with the public key", func(t *testing.T) {
		for _, pub := range [][]byte{pemPublic(t, &rsaKey.PublicKey), openSSHPublicKey(edPub)} {
			forged := signedBundle(t, "forged", pub, "HS256")
			for _, alg := range []string{"", "HS256"} {
				if err := load(forged, pub, alg); err == nil {
					t.Errorf("a bundle HS256-signed with the public key %.20q loaded (alg %q)", pub, alg)
				}
			}
		}
	})
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
	verified, err := NewBundleSource(BundleOptions{URL: "file://" + path, VerificationKey: []byte("secret"), KeyAlgorithm: "HS256"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := verified.Load(ctx, eps); err == nil || !strings.Contains(err.Error(), ".signatures.json") {
			t.Fatalf("unsigned bundle with a key: err %v", err)
		}
	}
}
