package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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

// DefaultMaxBundleBytes bounds a bundle when BundleOptions.MaxBytes is
// zero: its download, and its content once inflated.
const DefaultMaxBundleBytes = 64 << 20

// BundleOptions configure a [BundleSource].
type BundleOptions struct {
	// URL of the bundle: http://, https:// or file:// (a .tar.gz as
	// `opa build` writes it).
	URL string
	// VerificationKey is what must have signed the bundle
	// (.signatures.json): a PEM public key (RSA, ECDSA or Ed25519, or a
	// certificate holding one), or, with KeyAlgorithm HS256/384/512 only,
	// an HMAC secret. Empty means bundles are not verified, and signatures
	// are ignored.
	VerificationKey []byte
	// KeyAlgorithm is the signature algorithm; empty derives it from the
	// public key (see VerificationAlgorithm). An HMAC secret needs it said
	// explicitly.
	KeyAlgorithm string
	// KeyID names the key; DefaultBundleKeyID when empty.
	KeyID string
	// Client fetches http(s) bundles; a client with a 30s timeout when nil.
	Client *http.Client
	// MaxBytes bounds the bundle's download and, separately, its inflated
	// content: the inflated stream as a whole, and the sizes its tar
	// entries declare, checked before any is read. DefaultMaxBundleBytes
	// when zero.
	MaxBytes int64
	// CacheDir, when set, keeps the last bundle that loaded there, and a
	// source whose first read fails (server down, bundle refused) starts
	// from it, verified again like a download.
	CacheDir string
	// Logger receives what the source does on its own (serving the
	// cached bundle, failing to write it); slog.Default() when nil.
	Logger *slog.Logger
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
//
// A bundle is bounded before OPA reads it (see boundedTarball): its
// download, its inflated size and every size its tar headers declare are
// at most MaxBytes, so a bundle from a hostile server costs at most that
// much memory before its signature is checked.
type BundleSource struct {
	url     *url.URL
	raw     string
	verify  *bundle.VerificationConfig
	client  *http.Client
	maxSize int64
	cache   string // path of the cached bundle; empty without a cache
	log     *slog.Logger

	mu         sync.Mutex
	etag       string // ETag of the last bundle downloaded over http
	digest     string // sha256 of the last bundle read
	last       *PolicySet
	lastErr    error
	good       *PolicySet // the last bundle that loaded
	goodHash   string
	goodBody   []byte // the last good bundle's bytes, until cached
	cacheTried bool   // a first read that failed has tried the cache
	cacheHash  string // sha256 of the cached bundle, when known
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
	b := &BundleSource{url: u, raw: opts.URL, client: opts.Client, maxSize: opts.MaxBytes, log: opts.Logger}
	if b.client == nil {
		b.client = &http.Client{Timeout: 30 * time.Second}
	}
	if b.maxSize <= 0 {
		b.maxSize = DefaultMaxBundleBytes
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("component", "bundle", "url", b.redacted())
	if opts.CacheDir != "" {
		// One file per URL, named by a digest: the URL may carry a token.
		sum := sha256.Sum256([]byte(opts.URL))
		b.cache = filepath.Join(opts.CacheDir, hex.EncodeToString(sum[:8])+".tar.gz")
	}
	switch {
	case len(opts.VerificationKey) > 0:
		id := opts.KeyID
		if id == "" {
			id = DefaultBundleKeyID
		}
		alg, err := VerificationAlgorithm(opts.VerificationKey, opts.KeyAlgorithm)
		if err != nil {
			return nil, err
		}
		kc := &bundle.KeyConfig{Key: string(opts.VerificationKey), Algorithm: alg}
		b.verify = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: kc}, id, "", nil)
	case opts.KeyAlgorithm != "":
		return nil, errors.New("bundle verification key algorithm given without a verification key")
	}
	return b, nil
}

// The algorithms OPA verifies bundle signatures with, per kind of key.
var (
	hmacAlgorithms = []string{"HS256", "HS384", "HS512"}
	rsaAlgorithms  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecdsaByCurve   = map[int]string{256: "ES256", 384: "ES384", 521: "ES512"}
)

// VerificationAlgorithm checks a bundle verification key against alg and
// returns the algorithm to verify with. Without alg the key must be a PEM
// public key (or a certificate), and the algorithm is the one `opa build
// --signing-alg` uses for its kind: RS256 for RSA, ES256/384/512 by ECDSA
// curve, EdDSA for Ed25519; alg, when given, must be one of its kind. An
// HMAC secret is accepted only with alg HS256/384/512 said explicitly, and
// then it must be neither PEM nor an OpenSSH public key: a public key is no
// secret. Anything else — a private key, a PEM block of another type, text
// that is neither — is refused, never guessed at.
func VerificationAlgorithm(key []byte, alg string) (string, error) {
	alg = strings.ToUpper(strings.TrimSpace(alg))
	if alg == "EDDSA" {
		alg = "EdDSA"
	}
	trimmed := bytes.TrimSpace(key)
	isPEM := bytes.HasPrefix(trimmed, []byte("-----BEGIN "))
	if slices.Contains(hmacAlgorithms, alg) {
		switch {
		case isPEM:
			return "", fmt.Errorf("bundle verification key: algorithm %s needs a shared secret, and the key is PEM (a public key's algorithm follows from the key: leave it unset)", alg)
		case isOpenSSHPublicKey(trimmed):
			return "", fmt.Errorf("bundle verification key: algorithm %s needs a shared secret, and the key is an OpenSSH public key, which is public", alg)
		case len(trimmed) == 0:
			return "", fmt.Errorf("bundle verification key: the %s secret is empty", alg)
		}
		return alg, nil
	}
	known := alg == "" || alg == "EdDSA" || slices.Contains(rsaAlgorithms, alg)
	for _, a := range ecdsaByCurve {
		known = known || a == alg
	}
	if !known {
		return "", fmt.Errorf("bundle verification key: unknown algorithm %q (want RS256/384/512, PS256/384/512, ES256/384/512, EdDSA or, for a shared secret, HS256/384/512)", alg)
	}
	if !isPEM {
		what := "is not PEM"
		if isOpenSSHPublicKey(trimmed) {
			what = "is an OpenSSH public key, not PEM (convert it: ssh-keygen -e -m PKCS8 -f key.pub)"
		}
		return "", fmt.Errorf("bundle verification key %s; a public key must be PEM (-----BEGIN PUBLIC KEY-----), and an HMAC secret needs its algorithm set explicitly (HS256)", what)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return "", errors.New("bundle verification key: malformed PEM")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return "", errors.New("bundle verification key: more than one PEM block; give one public key")
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
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return "", fmt.Errorf("bundle verification key: PEM block %q is a private key; give the public key", block.Type)
		}
		return "", fmt.Errorf("bundle verification key: PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return "", fmt.Errorf("bundle verification key: %w", err)
	}
	var allowed []string
	kind := fmt.Sprintf("%T", pub)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		allowed, kind = rsaAlgorithms, "RSA"
	case *ecdsa.PublicKey:
		kind = "ECDSA " + k.Curve.Params().Name
		if a, ok := ecdsaByCurve[k.Curve.Params().BitSize]; ok {
			allowed = []string{a}
		}
	case ed25519.PublicKey:
		allowed, kind = []string{"EdDSA"}, "Ed25519"
	}
	switch {
	case len(allowed) == 0:
		return "", fmt.Errorf("bundle verification key: unsupported key type %s", kind)
	case alg == "":
		return allowed[0], nil
	case slices.Contains(allowed, alg):
		return alg, nil
	}
	return "", fmt.Errorf("bundle verification key: algorithm %s does not fit an %s key (want %s)", alg, kind, strings.Join(allowed, ", "))
}

// isOpenSSHPublicKey reports whether key looks like a line of an OpenSSH
// .pub or authorized_keys file.
func isOpenSSHPublicKey(key []byte) bool {
	for _, p := range []string{"ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"} {
		if bytes.HasPrefix(key, []byte(p)) {
			return true
		}
	}
	return false
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
// and compiles it. While nothing has loaded yet, a read that fails falls
// back, once, to the cached bundle.
func (b *BundleSource) Load(ctx context.Context, entrypoints []string) (*PolicySet, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	set, err := b.load(ctx, entrypoints)
	if err != nil && b.good == nil && b.cache != "" && !b.cacheTried {
		b.cacheTried = true
		cached, cerr := b.loadCache(ctx, entrypoints)
		if cerr != nil {
			if errors.Is(cerr, os.ErrNotExist) {
				return nil, err
			}
			return nil, fmt.Errorf("%w; and the cached bundle: %w", err, cerr)
		}
		b.log.WarnContext(ctx, "bundle unavailable, serving the cached one", "revision", cached.Revision, "error", err.Error())
		return cached, nil
	}
	if err == nil && b.cache != "" && set == b.good && b.goodBody != nil && b.goodHash != b.cacheHash {
		b.writeCache(ctx)
	}
	return set, err
}

func (b *BundleSource) load(ctx context.Context, entrypoints []string) (*PolicySet, error) {
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
		if b.cache != "" {
			b.goodBody = body
		}
	}
	return set, err
}

// loadCache loads the cached bundle, verified and bounded like a download;
// it becomes the last good bundle and the last read, so that the same bytes
// downloaded later are "unchanged".
func (b *BundleSource) loadCache(ctx context.Context, entrypoints []string) (*PolicySet, error) {
	f, err := os.Open(b.cache)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := readBounded(f, b.maxSize)
	if err != nil {
		return nil, fmt.Errorf("cached bundle %s: %w", b.cache, err)
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	set, err := b.compile(ctx, body, digest, entrypoints)
	if err != nil {
		return nil, fmt.Errorf("cached bundle %s: %w", b.cache, err)
	}
	b.digest, b.last, b.lastErr = digest, set, nil
	b.good, b.goodHash, b.cacheHash = set, digest, digest
	return set, nil
}

// writeCache replaces the cached bundle with the last good one: written to
// a temporary file in the same directory, synced, renamed over the old one
// and the directory synced, so that a crash leaves the old bundle or the
// new one, never a torn file. A failure is logged; serving goes on.
func (b *BundleSource) writeCache(ctx context.Context) {
	if err := writeFileAtomic(b.cache, b.goodBody); err != nil {
		b.log.WarnContext(ctx, "cannot cache the bundle", "error", err.Error())
		return
	}
	b.cacheHash = b.goodHash
	b.goodBody = nil
}

func writeFileAtomic(path string, body []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".bundle-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
	if resp.ContentLength > b.maxSize {
		return nil, "", fmt.Errorf("%w: the server announces %d bytes, more than %d", errBundleTooLarge, resp.ContentLength, b.maxSize)
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
		return nil, fmt.Errorf("%w: more than %d bytes", errBundleTooLarge, limit)
	}
	return body, nil
}

// compile reads the bundle with OPA's reader (which verifies the signature
// and every file's hash when a key is configured) and compiles it. The
// archive reaches OPA through boundedTarball, never OPA's own tarball
// loader, which allocates what each tar header claims.
func (b *BundleSource) compile(ctx context.Context, body []byte, digest string, entrypoints []string) (*PolicySet, error) {
	loader := newBoundedTarball(bytes.NewReader(body), b.maxSize)
	r := bundle.NewCustomReader(loader).
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
