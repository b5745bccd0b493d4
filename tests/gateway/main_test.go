package main

// End-to-end tests of keygate behind a gateway. The nginx tests start the real keygate binary, the
// demo origin and real nginx, and talk HTTP to nginx; the forward-auth tests talk to keygate the
// way Traefik and Envoy do. Without an nginx binary the nginx tests are skipped, or fail when
// CI=true (CI installs nginx-light).
//
// keygate is built once per run by TestMain; set KEYGATE_BIN to test a binary built elsewhere.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/origin"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// build is the module root and the keygate binary TestMain built (or found in KEYGATE_BIN).
var build stack.TestBuild

const jsonUTF8 = "application/json; charset=utf-8"

// Messages microCMS answers, which the gateway must reproduce exactly.
const (
	msgInvalidKey  = "X-MICROCMS-API-KEY header is invalid."
	msgForbidden   = "Forbidden"
	msgStatusParam = "Status parameter is not available in the current plan. Please upgrade your plan."
)

// TestMain builds keygate once (unless KEYGATE_BIN names a binary) so that every test starts the
// same binary without relinking it.
func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "gateway tests", &build)) }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// tWriter sends log lines to t.Log, so they show up only for failing tests.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newStack starts keygate, the origin and nginx in a temp dir; everything is stopped by PID when
// the test ends. On failure the logs of keygate and nginx are shown.
func newStack(t *testing.T, keygateArgs ...string) *stack.Stack {
	t.Helper()
	nginx := stack.RequireNginx(t)
	dir := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Config{
		Root: build.Root, Dir: dir,
		KeygateBinary: build.Binary, NginxBinary: nginx,
		Log: testLogger(t), KeygateArgs: keygateArgs,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "keygate.log", st.Keygate.LogPath())
			logTail(t, "nginx error.log", st.Nginx.ErrorLog)
		}
		if err := st.Stop(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	return st
}

// newKeygate starts only keygate, on temp copies of policies/ and data/.
func newKeygate(t *testing.T) *stack.Keygate {
	t.Helper()
	dir := t.TempDir()
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	k, err := stack.StartKeygate(t.Context(), stack.KeygateConfig{
		Binary:   build.Binary,
		Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
		State: filepath.Join(dir, "state", "state.json"), LogPath: filepath.Join(dir, "keygate.log"),
	})
	if err != nil {
		t.Fatalf("start keygate: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "keygate.log", k.LogPath())
		}
		if err := k.Stop(); err != nil {
			t.Errorf("stop keygate: %v", err)
		}
	})
	return k
}

func logTail(t *testing.T, name, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("last lines of %s:\n%s", name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
}

// request is one HTTP request to the gateway (or to keygate).
type request struct {
	method string
	host   string
	path   string
	key    string
	body   string
	header map[string]string
	// from is the loopback address (127.0.0.x) to send from; "" lets the system pick.
	from string
}

// response is what came back.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

func do(t *testing.T, base string, req request) response {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(t.Context(), method, base+req.path, body)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	if req.host != "" {
		hr.Host = req.host
	}
	if req.key != "" {
		hr.Header.Set("X-MICROCMS-API-KEY", req.key)
	}
	if req.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		if strings.EqualFold(k, "Host") {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	c := http.DefaultClient
	if req.from != "" {
		c = fromClient(req.from)
	}
	resp, err := c.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, req.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantDenied checks a denial is exactly microCMS's answer: status, JSON body and content type, and
// that the origin was never reached.
func wantDenied(t *testing.T, got response, status int, message string) {
	t.Helper()
	if got.status != status {
		t.Errorf("status = %d, want %d (body %s)", got.status, status, got.body)
	}
	wantBody, _ := json.Marshal(map[string]string{"message": message})
	if !bytes.Equal(bytes.TrimSpace(got.body), wantBody) {
		t.Errorf("body = %s, want %s", got.body, wantBody)
	}
	if ct := got.header.Get("Content-Type"); ct != jsonUTF8 {
		t.Errorf("Content-Type = %q, want %q", ct, jsonUTF8)
	}
	if m := got.header.Get(origin.EchoMethod); m != "" {
		t.Errorf("a denied request reached the origin (it echoed method %s)", m)
	}
}

// wantAllowed checks the request went through to the origin with status want, and that the
// origin never saw the API key.
func wantAllowed(t *testing.T, got response, want int) {
	t.Helper()
	if got.status != want {
		t.Errorf("status = %d, want %d (body %s)", got.status, want, got.body)
	}
	if got.header.Get(origin.EchoMethod) == "" {
		t.Errorf("the origin did not answer (no %s header): %s", origin.EchoMethod, got)
	}
	if seen := got.header.Get(origin.EchoAPIKeySeen); seen != "false" {
		t.Errorf("%s = %q: the API key must not reach the origin", origin.EchoAPIKeySeen, seen)
	}
}

// listIDs decodes a list answer's content ids, and titles by id.
func listIDs(t *testing.T, got response) ([]string, map[string]string) {
	t.Helper()
	var b struct {
		Contents []struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"contents"`
	}
	if err := json.Unmarshal(got.body, &b); err != nil {
		t.Fatalf("decode list %s: %v", got, err)
	}
	ids, titles := []string{}, map[string]string{}
	for _, c := range b.Contents {
		ids = append(ids, c.ID)
		titles[c.ID] = c.Title
	}
	return ids, titles
}

// key is an API key created through keygate's admin API.
type key struct {
	id, secret string
}

// createKey creates a key in service as its admin; spec is the key's JSON configuration.
func createKey(t *testing.T, keygateURL, service, spec string) key {
	t.Helper()
	got := adminCall(t, keygateURL, http.MethodPost, "/v1/services/"+service+"/keys", service+"-admin-token", spec)
	if got.status != http.StatusCreated {
		t.Fatalf("create key in %s: %s", service, got)
	}
	var b struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(got.body, &b); err != nil || b.Key.ID == "" || b.Secret == "" {
		t.Fatalf("create key: decode %s: %v", got, err)
	}
	return key{id: b.Key.ID, secret: b.Secret}
}

// adminCall calls keygate's key admin API with a member's bearer token.
func adminCall(t *testing.T, keygateURL, method, path, token, body string) response {
	t.Helper()
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	return do(t, keygateURL, request{method: method, path: path, body: body, header: header})
}

// health reads keygate's /health.
type health struct {
	PolicyRevision  string `json:"policyRevision"`
	LastReloadError string `json:"lastReloadError"`
}

func readHealth(t *testing.T, keygateURL string) health {
	t.Helper()
	got := do(t, keygateURL, request{path: "/health"})
	var h health
	if err := json.Unmarshal(got.body, &h); err != nil {
		t.Fatalf("decode /health %s: %v", got, err)
	}
	if h.PolicyRevision == "" {
		t.Fatalf("/health has no policyRevision: %s", got)
	}
	return h
}

// waitHealth polls /health until ok holds, or fails the test after timeout.
func waitHealth(t *testing.T, keygateURL string, timeout time.Duration, what string, ok func(health) bool) health {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h := readHealth(t, keygateURL)
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s did not happen; /health: %+v", timeout, what, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeFileAtomic replaces path the way editors do: write a temp file, then rename it over.
func writeFileAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
