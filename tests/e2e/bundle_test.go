package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// opaVersion is the OPA module keygate embeds; the stock CLI of the same
// version builds and signs the bundles.
const opaVersion = "v1.22.3"

var (
	opaOnce sync.Once
	opaBin  string
	opaErr  error
)

// opaCLI returns the stock opa binary: $OPA_BIN, or the one `go install`ed
// (from the module cache: no network when the module is there) into the
// user cache directory, once for every run of these tests.
func opaCLI(t *testing.T) string {
	t.Helper()
	opaOnce.Do(func() {
		if bin := os.Getenv("OPA_BIN"); bin != "" {
			opaBin = bin
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "keygate-tests", "opa-"+opaVersion)
		opaBin = filepath.Join(dir, "opa")
		if _, err := os.Stat(opaBin); err == nil {
			return
		}
		cmd := exec.Command("go", "install", "github.com/open-policy-agent/opa@"+opaVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
		cmd.Dir = os.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			opaErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if opaErr != nil {
		t.Fatalf("install opa %s: %v", opaVersion, opaErr)
	}
	return opaBin
}

// signingKey is an RSA key pair written as PEM files, as `opa build
// --signing-key` and `keygate serve --bundle-verification-key` read them.
type signingKey struct{ private, public string }

func newSigningKey(t *testing.T, dir, name string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s := signingKey{private: filepath.Join(dir, name+".key.pem"), public: filepath.Join(dir, name+".pub.pem")}
	writeFile(t, s.private, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	writeFile(t, s.public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	return s
}

// opaBuild builds a bundle of policyDir with the stock CLI, signed with
// key unless key is empty, and returns its bytes.
func opaBuild(t *testing.T, policyDir, revision, key string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	args := []string{"build", "-b", ".", "--revision", revision, "-o", out}
	if key != "" {
		args = append(args, "--signing-key", key)
	}
	cmd := exec.Command(opaCLI(t), args...)
	cmd.Dir = policyDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper rewrites one file of a bundle (a .rego file gains a rule) and
// keeps everything else, its .signatures.json included.
func tamper(t *testing.T, bundle []byte, suffix string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	done := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !done && strings.HasSuffix(h.Name, suffix) {
			body = append(body, []byte("\nallow_everything := true\n")...)
			h.Size = int64(len(body))
			done = true
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if !done {
		t.Fatalf("bundle has no file ending in %s", suffix)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// bundleServer serves one bundle at /bundle.tar.gz with a strong ETag and
// answers If-None-Match with 304, as an OPA bundle server (or nginx, S3)
// does.
type bundleServer struct {
	*httptest.Server
	mu           sync.Mutex
	body         []byte
	gets, not304 atomic.Int64
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	t.Helper()
	s := &bundleServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		sum := sha256.Sum256(b)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		s.gets.Add(1)
		if r.Header.Get("If-None-Match") == etag {
			s.not304.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) set(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

// newBundleFixture starts keygate on a private work dir serving policies
// from a bundle (no --policies).
func newBundleFixture(t *testing.T, args ...string) *fixture {
	t.Helper()
	f := &fixture{work: newWorkDir(t), secrets: map[string]bool{demoReadKey: true}}
	for _, s := range demoServices {
		f.secrets[adminToken(s)] = true
		f.secrets[editorToken(s)] = true
	}
	cfg := f.work.serveConfig(args...)
	cfg.Policies = ""
	f.Keygate = startConfig(t, cfg)
	t.Cleanup(func() { f.finish(t) })
	return f
}

// waitHealth polls /health until ok says so, or fails after 15 seconds.
func (f *fixture) waitHealth(t *testing.T, what string, ok func(health) bool) health {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h := f.health(t)
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: health %+v", what, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBundle serves policies from signed bundles built by the stock `opa
// build`: a new revision is picked up; a tampered bundle, one signed with
// another key, an unsigned one and one missing an entrypoint are refused
// with the last good revision serving and the refusal in /health,
// /v1/policies and metrics; a bundle server that goes down changes nothing.
func TestBundle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newSigningKey(t, dir, "release")
	other := newSigningKey(t, dir, "other")

	src := filepath.Join(dir, "policies")
	if err := os.CopyFS(src, os.DirFS(filepath.Join(build.Root, "policies"))); err != nil {
		t.Fatal(err)
	}
	r1 := opaBuild(t, src, "r1", key.private)
	// r2 lowers the team plan's key limit: a change the data reload sees.
	plans := filepath.Join(src, "plans", "data.json")
	orig, err := os.ReadFile(plans)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, plans, bytes.Replace(orig, []byte(`"team": {"maxKeys": 3`), []byte(`"team": {"maxKeys": 4`), 1))
	r2 := opaBuild(t, src, "r2", key.private)
	unsigned := opaBuild(t, src, "r3-unsigned", "")
	wrongKey := opaBuild(t, src, "r3-wrong-key", other.private)
	tampered := tamper(t, opaBuild(t, src, "r3-tampered", key.private), "content/content.rego")
	if err := os.RemoveAll(filepath.Join(src, "management")); err != nil {
		t.Fatal(err)
	}
	noEntrypoint := opaBuild(t, src, "r3-no-management", key.private)

	bs := newBundleServer(t, r1)
	f := newBundleFixture(t, "--bundle", bs.URL+"/bundle.tar.gz", "--bundle-verification-key", key.public,
		"--bundle-poll", "100ms")
	if h := f.health(t); h.PolicyRevision != "r1" || h.Status != "ok" {
		t.Fatalf("health at start: %+v", h)
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != "r1" {
		t.Fatalf("decision under r1: %+v", d)
	}

	bs.set(r2)
	f.waitHealth(t, "revision r2", func(h health) bool { return h.PolicyRevision == "r2" && h.LastReloadError == "" })
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != "r2" {
		t.Fatalf("decision under r2: %+v", d)
	}
	if p := f.policies(t); p.Revision != "r2" || p.LastResult == "error" {
		t.Fatalf("/v1/policies under r2: %+v", p)
	}
	// Unchanged polls are conditional GETs answered 304.
	time.Sleep(400 * time.Millisecond)
	if bs.not304.Load() == 0 {
		t.Errorf("no poll was answered 304 (%d GETs): If-None-Match is not sent", bs.gets.Load())
	}

	refusals := []struct {
		name   string
		bundle []byte
		reason string
	}{
		{"tampered", tampered, "content/content.rego"},
		{"wrong key", wrongKey, "verification error"},
		{"unsigned", unsigned, "missing .signatures.json"},
		{"missing entrypoint", noEntrypoint, "data.management.decision"},
	}
	errorsBefore := scrape(t, f).value(`keygate_reloads_total{kind="policies",result="error"}`)
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			bs.set(c.bundle)
			h := f.waitHealth(t, c.name+" refused", func(h health) bool { return strings.Contains(h.LastReloadError, c.reason) })
			if h.PolicyRevision != "r2" || !strings.HasPrefix(h.Status, "degraded") {
				t.Errorf("health after the %s bundle: %+v", c.name, h)
			}
			if p := f.policies(t); p.Revision != "r2" || p.LastResult != "error" || !strings.Contains(p.LastError, c.reason) {
				t.Errorf("/v1/policies after the %s bundle: %+v", c.name, p)
			}
			if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != "r2" {
				t.Errorf("decision after the %s bundle: %+v", c.name, d)
			}
		})
	}
	m := scrape(t, f)
	if got := m.value(`keygate_reloads_total{kind="policies",result="error"}`); got < errorsBefore+float64(len(refusals)) {
		t.Errorf("keygate_reloads_total{result=error} %v, want at least %v", got, errorsBefore+float64(len(refusals)))
	}
	if m.value(`keygate_policy_revision_info{revision="r2"}`) != 1 {
		t.Errorf("keygate_policy_revision_info does not show r2")
	}

	// Back to a good bundle, then the server goes away: r2 keeps serving.
	bs.set(r2)
	f.waitHealth(t, "r2 again", func(h health) bool { return h.PolicyRevision == "r2" && h.LastReloadError == "" })
	bs.Close()
	h := f.waitHealth(t, "bundle server down", func(h health) bool { return h.LastReloadError != "" })
	if h.PolicyRevision != "r2" || !strings.Contains(h.LastReloadError, "fetch bundle") {
		t.Errorf("health with the bundle server down: %+v", h)
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != "r2" {
		t.Errorf("decision with the bundle server down: %+v", d)
	}
}

// TestBundleFile serves a bundle from a file:// URL (air-gapped setups)
// and serves nothing from an unsigned bundle when a key is required.
func TestBundleFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newSigningKey(t, dir, "release")
	signed := filepath.Join(dir, "signed.tar.gz")
	writeFile(t, signed, opaBuild(t, filepath.Join(build.Root, "policies"), "file-r1", key.private))
	f := newBundleFixture(t, "--bundle", "file://"+signed, "--bundle-verification-key", key.public)
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != "file-r1" {
		t.Fatalf("decision from a file bundle: %+v", d)
	}

	// The same bundle as a shadow candidate beside a policy directory.
	shadowed := newFixture(t, "--shadow-bundle", "file://"+signed, "--bundle-verification-key", key.public)
	var p struct {
		Revision string `json:"revision"`
		Shadow   *struct {
			Revision string `json:"revision"`
			Source   string `json:"source"`
		} `json:"shadow"`
	}
	shadowed.do(t, http.MethodGet, "/v1/policies", nil).decode(t, &p)
	if p.Shadow == nil || p.Shadow.Revision != "file-r1" || p.Shadow.Source != "bundle file://"+signed || p.Revision == "file-r1" {
		t.Errorf("/v1/policies with a shadow bundle: %+v", p)
	}

	// One policy source: --bundle and --policies together are refused.
	both := newWorkDir(t)
	code, _ := runToExit(t, both.serveConfig("--bundle", "file://"+signed), 30*time.Second)
	if log := readFile(t, both.stderr); code == 0 || !strings.Contains(log, "exclusive") {
		t.Errorf("--bundle with --policies: exit %d\n%s", code, log)
	}

	// An unsigned bundle with a key required: keygate starts not ready,
	// says why, and serves nothing from it.
	unsigned := filepath.Join(dir, "unsigned.tar.gz")
	writeFile(t, unsigned, opaBuild(t, filepath.Join(build.Root, "policies"), "file-r2", ""))
	nr := launchBundle(t, newWorkDir(t), "--bundle", "file://"+unsigned, "--bundle-verification-key", key.public)
	nr.assertUnavailable(t, "missing .signatures.json")
}
