package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// maxBombRSS bounds keygate's peak resident memory (VmHWM) over a life in
// which it refused every bomb. Serving the shipped policies it peaks near
// 42 MiB; refusing the bombs here, near 150 MiB (the gzip bomb's first
// 48 MiB entry is read before the next header is refused). Before bundles
// were bounded, the header bomb killed it at once (fatal error: out of
// memory) and a gzip bomb took it to 1.6 GB. A keygate built with -race
// keeps shadow memory beside its heap (478 MiB measured here), so its
// bound is wider; both stay far below what an unbounded read costs.
func maxBombRSS() int64 {
	if raceBuild {
		return 800 << 20
	}
	return 400 << 20
}

// gzipMember compresses b as one gzip member; members concatenated are one
// valid gzip stream.
func gzipMember(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarHeader is the 512-byte block of one tar header, with none of the
// content it announces.
func tarHeader(t *testing.T, h *tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// headerBomb is a .tar.gz of about 150 bytes whose one entry claims 1 TiB.
func headerBomb(t *testing.T) []byte {
	t.Helper()
	return gzipMember(t, tarHeader(t, &tar.Header{Name: "policy.rego", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg}))
}

// gzipBomb is a .tar.gz of about 1.5 MB inflating to 1.5 GiB: 32 entries
// of 48 MiB of zeros, each with an honest header under the default bound.
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	const chunk, size = 16 << 20, 48 << 20
	zeros := gzipMember(t, make([]byte, chunk))
	var out bytes.Buffer
	for i := range 32 {
		out.Write(gzipMember(t, tarHeader(t, &tar.Header{Name: "f" + strconv.Itoa(i) + ".json", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})))
		for range size / chunk {
			out.Write(zeros)
		}
	}
	out.Write(gzipMember(t, make([]byte, 1024)))
	return out.Bytes()
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("peak RSS: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// launchBundle starts keygate on w serving from a bundle (no --policies)
// without waiting for it to be ready: it may start not ready. It waits
// until /health answers at all.
func launchBundle(t *testing.T, w workDir, args ...string) *fixture {
	t.Helper()
	f := &fixture{work: w, secrets: map[string]bool{demoReadKey: true}}
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.serveConfig(args...)
	cfg.Policies, cfg.Port = "", port
	k, err := stack.LaunchKeygate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Keygate = k
	// The not-ready answers are validated against the OpenAPI document
	// like every other exchange (startConfig's watch).
	report := apiContract.watch(t, k.URL)
	t.Cleanup(func() {
		_ = k.Stop()
		report()
	})
	t.Cleanup(func() { f.finish(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := k.Health(t.Context()); err == nil {
			return f
		}
		select {
		case <-k.Exited():
			t.Fatalf("keygate exited %d:\n%s", k.ExitCode(), readFile(t, w.stderr))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate does not answer /health:\n%s", readFile(t, w.stderr))
		}
	}
}

// healthAny is /health whatever its status.
func (f *fixture) healthAny(t *testing.T) (int, health) {
	t.Helper()
	r := f.do(t, http.MethodGet, "/health", nil)
	var h health
	r.decode(t, &h)
	return r.status, h
}

// waitHealthAny polls /health until ok says so, or fails after 15 seconds.
func (f *fixture) waitHealthAny(t *testing.T, what string, ok func(int, health) bool) health {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, h := f.healthAny(t)
		if ok(code, h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: health %d %+v", what, code, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertUnavailable checks that keygate is alive, not ready, and answers
// a decision that would be allowed with a 503 policy_unavailable deny, on
// /v1/decide and /v1/forward-auth.
func (f *fixture) assertUnavailable(t *testing.T, why string) {
	t.Helper()
	code, h := f.healthAny(t)
	if code != http.StatusServiceUnavailable || h.PolicyRevision != "" || h.Status != "no policy loaded" || !strings.Contains(h.LastReloadError, why) {
		t.Errorf("/health not ready: %d %+v, want 503, no revision and an error with %q", code, h, why)
	}
	r := f.do(t, http.MethodPost, "/v1/decide", contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey))
	var d decision
	r.decode(t, &d)
	if r.status != http.StatusOK || d.Allow || d.Status != http.StatusServiceUnavailable || d.Code != "policy_unavailable" || d.PolicyRevision != "" {
		t.Errorf("decision with no policy: %s, want a 503 policy_unavailable deny", r)
	}
	fr := f.do(t, http.MethodGet, "/v1/forward-auth", nil, "X-Original-Method", "GET", "X-Original-URI", "/api/v1/blogs",
		"X-Forwarded-Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey)
	// A proxy's auth_request understands 401 and 403 only: the deny is a
	// 403, the 503 and its code travel in headers.
	if fr.status != http.StatusForbidden || fr.header.Get("X-Keygate-Status") != "503" || fr.header.Get("X-Keygate-Code") != "policy_unavailable" {
		t.Errorf("forward-auth with no policy: %d %v, want a 403 carrying 503 policy_unavailable", fr.status, fr.header)
	}
	// The REST API refuses with the same 503 problem: no plan limit, no
	// key decision is known yet.
	for _, path := range []string{"/v1/me", keysPath("team-demo")} {
		if r := f.do(t, http.MethodGet, path, nil, bearer(adminToken("team-demo"))...); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"code":"policy_unavailable"`) {
			t.Errorf("GET %s with no policy: %s, want 503 policy_unavailable", path, r)
		}
	}
}

func (f *fixture) assertServing(t *testing.T, revision string) {
	t.Helper()
	if code, h := f.healthAny(t); code != http.StatusOK || h.PolicyRevision != revision {
		t.Errorf("/health %d %+v, want 200 serving %s", code, h, revision)
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != revision {
		t.Errorf("decision %+v, want allowed by %s", d, revision)
	}
}

// TestBundleBombs: a bundle whose tar header claims 1 TiB and a gzip bomb
// of 1.5 MB inflating to 1.5 GiB are refused at start (keygate starts not
// ready), on a poll and on POST /v1/policies/reload (the last good bundle
// keeps serving, /health shows why) and as a shadow candidate; keygate
// stays alive throughout and its peak memory stays bounded.
func TestBundleBombs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newSigningKey(t, dir, "release")
	r1 := opaBuild(t, filepath.Join(build.Root, "policies"), "r1", key.private)
	header, gz := headerBomb(t), gzipBomb(t)
	t.Logf("bombs: header %d bytes, gzip %d bytes", len(header), len(gz))

	bs := newBundleServer(t, header)
	f := launchBundle(t, newWorkDir(t), "--bundle", bs.URL+"/bundle.tar.gz", "--bundle-verification-key", key.public,
		"--bundle-poll", "100ms")
	f.assertUnavailable(t, "bundle too large")
	bs.set(gz)
	f.waitHealthAny(t, "the gzip bomb refused", func(_ int, h health) bool { return strings.Contains(h.LastReloadError, "50331648 bytes") })
	f.assertUnavailable(t, "bundle too large")

	bs.set(r1)
	f.waitHealthAny(t, "r1", func(code int, h health) bool { return code == http.StatusOK && h.PolicyRevision == "r1" })
	f.assertServing(t, "r1")

	for _, bomb := range []struct {
		name string
		body []byte
		says string
	}{{"header bomb", header, "1099511627776 bytes"}, {"gzip bomb", gz, "50331648 bytes"}} {
		bs.set(bomb.body)
		h := f.waitHealthAny(t, bomb.name+" on a poll", func(_ int, h health) bool { return strings.Contains(h.LastReloadError, bomb.says) })
		if h.PolicyRevision != "r1" || !strings.HasPrefix(h.Status, "degraded") {
			t.Errorf("%s on a poll: health %+v, want r1 serving, degraded", bomb.name, h)
		}
		f.assertServing(t, "r1")
		r := f.do(t, http.MethodPost, "/v1/policies/reload", nil)
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), bomb.says) {
			t.Errorf("%s on POST /v1/policies/reload: %s", bomb.name, r)
		}
		f.assertServing(t, "r1")
	}
	if peak := peakRSS(t, f.PID()); peak > maxBombRSS() {
		t.Errorf("peak RSS %d MiB after the bombs, want under %d MiB", peak>>20, maxBombRSS()>>20)
	} else {
		t.Logf("peak RSS %d MiB after the bombs", peak>>20)
	}

	t.Run("shadow bundle", func(t *testing.T) {
		ss := newBundleServer(t, r1)
		sf := newFixture(t, "--shadow-bundle", ss.URL+"/bundle.tar.gz", "--bundle-verification-key", key.public, "--bundle-poll", "100ms")
		for _, bomb := range [][]byte{header, gz} {
			ss.set(bomb)
			deadline := time.Now().Add(15 * time.Second)
			for {
				p := struct {
					Shadow struct {
						Revision, LastError string
					} `json:"shadow"`
				}{}
				sf.do(t, http.MethodGet, "/v1/policies", nil).decode(t, &p)
				if strings.Contains(p.Shadow.LastError, "bundle too large") {
					if p.Shadow.Revision != "r1" {
						t.Errorf("shadow after a bomb: %+v, want r1 kept", p.Shadow)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("shadow bomb not refused: %+v", p.Shadow)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		sf.health(t)
		if peak := peakRSS(t, sf.PID()); peak > maxBombRSS() {
			t.Errorf("peak RSS %d MiB after the shadow bombs, want under %d MiB", peak>>20, maxBombRSS()>>20)
		}

		// A shadow bundle refused at start does not stop keygate: whoever
		// serves its URL could otherwise keep every replica from
		// starting. keygate serves its own policy, the shadow evaluates
		// nothing and shows the error, and the poll loads the candidate
		// once it is served.
		ss.set(header)
		bf := newFixture(t, "--shadow-bundle", ss.URL+"/bundle.tar.gz", "--bundle-verification-key", key.public, "--bundle-poll", "100ms")
		bf.health(t)
		shadowState := func() (revision, lastError string) {
			p := struct {
				Shadow struct {
					Revision  string `json:"revision"`
					LastError string `json:"lastError"`
				} `json:"shadow"`
			}{}
			bf.do(t, http.MethodGet, "/v1/policies", nil).decode(t, &p)
			return p.Shadow.Revision, p.Shadow.LastError
		}
		if rev, lastErr := shadowState(); rev != "" || !strings.Contains(lastErr, "bundle too large") {
			t.Errorf("shadow bomb at start: shadow revision %q, error %q; want none loaded and the refusal shown", rev, lastErr)
		}
		if d := bf.decide(t, map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs", "apiKey": "team-demo-read-key"}); !d.Allow {
			t.Errorf("shadow bomb at start: the serving policy denies the demo key: %+v", d)
		}
		ss.set(r1)
		deadline := time.Now().Add(15 * time.Second)
		for {
			if rev, _ := shadowState(); rev == "r1" {
				break
			}
			if time.Now().After(deadline) {
				rev, lastErr := shadowState()
				t.Fatalf("shadow never loaded r1 once served: revision %q, error %q", rev, lastErr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if peak := peakRSS(t, bf.PID()); peak > maxBombRSS() {
			t.Errorf("peak RSS %d MiB with a shadow bomb at start, want under %d MiB", peak>>20, maxBombRSS()>>20)
		}
	})
}

// execIn runs name with args in dir and returns its combined output.
func execIn(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// openSSHPublicKey is pub as a line of an OpenSSH .pub file.
func openSSHPublicKey(pub ed25519.PublicKey) []byte {
	var wire []byte
	for _, f := range [][]byte{[]byte("ssh-ed25519"), pub} {
		wire = binary.BigEndian.AppendUint32(wire, uint32(len(f)))
		wire = append(wire, f...)
	}
	return []byte("ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire) + " release@example\n")
}

// TestBundleVerificationKeyKind: an OpenSSH public key is refused at start
// with an error naming the flag, with or without an HMAC algorithm; a
// bundle HS256-signed with a public key's text is never served.
func TestBundleVerificationKeyKind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshKey := filepath.Join(dir, "release.pub")
	writeFile(t, sshKey, openSSHPublicKey(pub))
	forged := filepath.Join(dir, "forged.tar.gz")
	buildForged := func(keyFile string) {
		cmd := []string{"build", "-b", ".", "--revision", "forged", "-o", forged, "--signing-alg", "HS256", "--signing-key", keyFile}
		out, err := execIn(filepath.Join(build.Root, "policies"), opaCLI(t), cmd...)
		if err != nil {
			t.Fatalf("opa %v: %v\n%s", cmd, err, out)
		}
	}
	buildForged(sshKey)

	for _, c := range []struct {
		name string
		args []string
		says string
	}{
		{"openssh public key", nil, "OpenSSH public key, not PEM"},
		{"openssh public key as an HS256 secret", []string{"--bundle-verification-key-alg", "HS256"}, "OpenSSH public key, which is public"},
		{"HS256 through the environment", nil, "OpenSSH public key, which is public"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorkDir(t)
			cfg := w.serveConfig(append([]string{"--bundle", "file://" + forged, "--bundle-verification-key", sshKey}, c.args...)...)
			cfg.Policies = ""
			if c.name == "HS256 through the environment" {
				cfg.Env = []string{"KEYGATE_BUNDLE_VERIFICATION_KEY_ALG=HS256"}
			}
			code, _ := runToExit(t, cfg, 30*time.Second)
			log := readFile(t, w.stderr)
			if code == 0 || !strings.Contains(log, "--bundle-verification-key "+sshKey) || !strings.Contains(log, c.says) {
				t.Errorf("exit %d, want non-zero naming the flag and %q:\n%s", code, c.says, log)
			}
		})
	}

	t.Run("HS256 signed with a PEM public key", func(t *testing.T) {
		key := newSigningKey(t, dir, "release")
		buildForged(key.public)
		f := launchBundle(t, newWorkDir(t), "--bundle", "file://"+forged, "--bundle-verification-key", key.public)
		f.assertUnavailable(t, "verif")
	})
}

// TestBundleServerDownAtStart: with the bundle server down and nothing
// cached keygate starts not ready and polls until the server comes up;
// restarted with the server down it serves the cached revision; a cached
// bundle tampered with is refused, never served.
func TestBundleServerDownAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newSigningKey(t, dir, "release")
	r1 := opaBuild(t, filepath.Join(build.Root, "policies"), "r1", key.private)

	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--bundle", "http://" + addr + "/bundle.tar.gz", "--bundle-verification-key", key.public, "--bundle-poll", "100ms"}
	w := newWorkDir(t)
	f := launchBundle(t, w, args...)
	f.assertUnavailable(t, "fetch bundle")

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(r1) }))
	srv.Listener = ln
	srv.Start()
	f.waitHealthAny(t, "the server up", func(code int, h health) bool { return code == http.StatusOK && h.PolicyRevision == "r1" })
	f.assertServing(t, "r1")
	f.stopGracefully(t)
	srv.Close()

	cached, err := filepath.Glob(filepath.Join(filepath.Dir(w.state), "bundle", "*.tar.gz"))
	if err != nil || len(cached) != 1 {
		t.Fatalf("cached bundles beside the state: %v, %v", cached, err)
	}
	if b, err := os.ReadFile(cached[0]); err != nil || !bytes.Equal(b, r1) {
		t.Fatalf("the cached bundle is not r1 (%d bytes, %v)", len(b), err)
	}

	t.Run("cached revision served", func(t *testing.T) {
		f := launchBundle(t, w, args...)
		f.assertServing(t, "r1")
		f.stopGracefully(t)
	})
	t.Run("tampered cache refused", func(t *testing.T) {
		writeFile(t, cached[0], tamper(t, r1, "content/content.rego"))
		f := launchBundle(t, w, args...)
		f.assertUnavailable(t, "cached bundle")
		f.stopGracefully(t)
	})
}
