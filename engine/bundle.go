package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// DefaultBundleKeyID is the key id `opa build --signing-key` signs with
// unless told otherwise (--verification-key-id).
const DefaultBundleKeyID = "default"

// DefaultMaxBundleBytes bounds a downloaded bundle when
// BundleOptions.MaxBytes is zero.
const DefaultMaxBundleBytes = 64 << 20

// BundleOptions configure a [BundleSource].
type BundleOptions struct {
	// URL of the bundle: http://, https:// or file:// (a .tar.gz as
	// `opa build` writes it).
	URL string
	// VerificationKey is the PEM public key (RSA or ECDSA) or the HMAC
	// secret that must have signed the bundle (.signatures.json). Empty
	// means bundles are not verified, and signatures are ignored.
	VerificationKey []byte
	// KeyID names the key; DefaultBundleKeyID when empty.
	KeyID string
	// Client fetches http(s) bundles; a client with a 30s timeout when nil.
	Client *http.Client
	// MaxBytes bounds the bundle's compressed size; DefaultMaxBundleBytes
	// when zero.
	MaxBytes int64
}

// BundleSource loads policies and policy data from an OPA bundle, verifying
// its signature when a key is configured. It remembers the ETag (http) or
// the digest of the bytes (file) of the last bundle it read: an unchanged
// bundle is neither downloaded again (If-None-Match) nor recompiled, and
// the outcome of its last read — the set, or the refusal — is returned
// again.
//
// The policy revision is the manifest's revision when it has one, else a
// digest of the bundle. A bundle whose manifest revision equals the last
// good one but whose content differs is refused: a revision names one
// policy, and decisions (and the decision cache) rely on that.
type BundleSource struct {
	url     *url.URL
	raw     string
	verify  *bundle.VerificationConfig
	client  *http.Client
	maxSize int64

	mu       sync.Mutex
	etag     string // ETag of the last bundle downloaded over http
	digest   string // sha256 of the last bundle read
	last     *PolicySet
	lastErr  error
	good     *PolicySet // the last bundle that loaded
	goodHash string
}

// NewBundleSource checks opts and returns a source; it reads nothing yet.
func NewBundleSource(opts BundleOptions) (*BundleSource, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("bundle URL %q: %w", opts.URL, err)
	}
	switch u.Scheme {
	case "http", "https":
	case "file":
		if u.Path == "" {
			return nil, fmt.Errorf("bundle URL %q: a file URL needs a path (file:///abs/bundle.tar.gz)", opts.URL)
		}
	default:
		return nil, fmt.Errorf("bundle URL %q: want http://, https:// or file://", opts.URL)
	}
	b := &BundleSource{url: u, raw: opts.URL, client: opts.Client, maxSize: opts.MaxBytes}
	if b.client == nil {
		b.client = &http.Client{Timeout: 30 * time.Second}
	}
	if b.maxSize <= 0 {
		b.maxSize = DefaultMaxBundleBytes
	}
	if len(opts.VerificationKey) > 0 {
		id := opts.KeyID
		if id == "" {
			id = DefaultBundleKeyID
		}
		alg, err := keyAlgorithm(opts.VerificationKey)
		if err != nil {
			return nil, err
		}
		kc := &bundle.KeyConfig{Key: string(opts.VerificationKey), Algorithm: alg}
		b.verify = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: kc}, id, "", nil)
	}
	return b, nil
}

// keyAlgorithm picks the signature algorithm from the key: RS256 for an
// RSA public key, ES256/384/512 for an ECDSA one by curve, HS256 for
// anything that is not PEM (an HMAC secret) — the algorithms `opa build
// --signing-alg` defaults to for each kind of key.
func keyAlgorithm(key []byte) (string, error) {
	block, _ := pem.Decode(key)
	if block == nil {
		return "HS256", nil
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return "", fmt.Errorf("bundle verification key: PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return "", fmt.Errorf("bundle verification key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "ES256", nil
		case 384:
			return "ES384", nil
		case 521:
			return "ES512", nil
		}
	}
	return "", fmt.Errorf("bundle verification key: unsupported key type %T", pub)
}

func (b *BundleSource) String() string { return "bundle " + b.redacted() }

// redacted is the URL without user information or query (which may carry
// a token).
func (b *BundleSource) redacted() string {
	u := *b.url
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// errNotModified is fetch's answer to a 304.
var errNotModified = errors.New("bundle not modified")

// Load implements Source: it fetches the bundle (conditionally), verifies
// and compiles it.
func (b *BundleSource) Load(ctx context.Context, entrypoints []string) (*PolicySet, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	body, etag, err := b.fetch(ctx)
	if errors.Is(err, errNotModified) && (b.last != nil || b.lastErr != nil) {
		return b.last, b.lastErr
	}
	if err != nil {
		return nil, fmt.Errorf("fetch bundle %s: %w", b.redacted(), err)
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	if digest == b.digest && (b.last != nil || b.lastErr != nil) {
		b.etag = etag
		return b.last, b.lastErr
	}
	set, err := b.compile(ctx, body, digest, entrypoints)
	b.etag, b.digest, b.last, b.lastErr = etag, digest, set, err
	if err == nil {
		b.good, b.goodHash = set, digest
	}
	return set, err
}

func (b *BundleSource) fetch(ctx context.Context) ([]byte, string, error) {
	if b.url.Scheme == "file" {
		f, err := os.Open(b.url.Path)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		body, err := readBounded(f, b.maxSize)
		return body, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.raw, nil)
	if err != nil {
		return nil, "", err
	}
	if b.etag != "" {
		req.Header.Set("If-None-Match", b.etag)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		// The client's error names the URL, query included: keep only
		// the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, b.etag, errNotModified
	default:
		return nil, "", fmt.Errorf("server answered %s", resp.Status)
	}
	body, err := readBounded(resp.Body, b.maxSize)
	return body, resp.Header.Get("ETag"), err
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("bundle is larger than %d bytes", limit)
	}
	return body, nil
}

// compile reads the bundle with OPA's reader (which verifies the signature
// and every file's hash when a key is configured) and compiles it.
func (b *BundleSource) compile(ctx context.Context, body []byte, digest string, entrypoints []string) (*PolicySet, error) {
	r := bundle.NewCustomReader(bundle.NewTarballLoader(bytes.NewReader(body))).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithSizeLimitBytes(b.maxSize)
	if b.verify != nil {
		r = r.WithBundleVerificationConfig(b.verify)
	} else {
		r = r.WithSkipBundleVerification(true)
	}
	bdl, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", b.redacted(), err)
	}
	if bdl.Type() == bundle.DeltaBundleType {
		return nil, fmt.Errorf("read bundle %s: delta bundles are not supported", b.redacted())
	}
	if len(bdl.Modules) == 0 {
		return nil, fmt.Errorf("read bundle %s: no .rego files", b.redacted())
	}
	revision := bdl.Manifest.Revision
	if revision == "" {
		revision = digest[:16]
	}
	if b.good != nil && b.good.Revision == revision && b.goodHash != digest {
		return nil, fmt.Errorf("read bundle %s: revision %q is already serving with other content; a new bundle needs a new revision (opa build --revision)",
			b.redacted(), revision)
	}
	modules := make(map[string]*ast.Module, len(bdl.Modules))
	files := make([]string, 0, len(bdl.Modules))
	for _, m := range bdl.Modules {
		name := strings.TrimPrefix(m.Path, "/")
		modules[name] = m.Parsed
		files = append(files, name)
	}
	slices.Sort(files)
	data := bdl.Data
	if data == nil {
		data = map[string]any{}
	}
	return compileSet(ctx, b.redacted(), modules, data, revision, files, entrypoints)
}
