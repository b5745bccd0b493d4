package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// Demo secrets of data/: the team-demo read key and every member token.
const demoReadKey = "team-demo-read-key"

var demoServices = []string{"hobby-demo", "team-demo", "business-demo", "advanced-demo", "enterprise-demo"}

func adminToken(service string) string  { return service + "-admin-token" }
func editorToken(service string) string { return service + "-editor-token" }

// workDir is a private copy of policies/ and data/ plus the paths keygate
// writes: state, decision log, stdout and stderr. A restart reuses it.
type workDir struct {
	dir, policies, data, state, decisionLog, stdout, stderr string
}

func newWorkDir(t *testing.T) workDir {
	t.Helper()
	dir := t.TempDir()
	w := workDir{
		dir:         dir,
		policies:    filepath.Join(dir, "policies"),
		data:        filepath.Join(dir, "data"),
		state:       filepath.Join(dir, "state", "state.json"),
		decisionLog: filepath.Join(dir, "decisions.jsonl"),
		stdout:      filepath.Join(dir, "stdout.log"),
		stderr:      filepath.Join(dir, "stderr.log"),
	}
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	return w
}

// config runs keygate in w with no serve flag of its own, its output
// appended to w's stdout and stderr logs.
func (w workDir) config() stack.KeygateConfig {
	return stack.KeygateConfig{
		Binary: build.Binary, Dir: w.dir,
		LogPath: w.stderr, StdoutPath: w.stdout,
		ReadyTimeout: 30 * time.Second,
	}
}

// serveConfig is config with serve's flags on w: policies, data, state and
// decision log, then extra.
func (w workDir) serveConfig(extra ...string) stack.KeygateConfig {
	cfg := w.config()
	cfg.Policies, cfg.Data, cfg.State = w.policies, w.data, w.state
	cfg.Args = append([]string{"--decision-log", w.decisionLog}, extra...)
	return cfg
}

// startKeygate runs `keygate serve` on w on a free port and waits for
// /health to answer 200. The caller stops it (fixture does, in Cleanup).
func startKeygate(t *testing.T, w workDir, extra ...string) *stack.Keygate {
	t.Helper()
	return startConfig(t, w.serveConfig(extra...))
}

// startConfig starts keygate as cfg says and waits until it is healthy.
func startConfig(t *testing.T, cfg stack.KeygateConfig) *stack.Keygate {
	t.Helper()
	k, err := stack.StartKeygate(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start keygate: %v\n%s", err, readFile(t, cfg.LogPath))
	}
	// Whatever happens to the test, the process does not outlive it; the
	// test reports every exchange with it that the OpenAPI document does
	// not describe.
	report := apiContract.watch(t, k.URL)
	t.Cleanup(func() {
		_ = k.Stop()
		report()
	})
	return k
}

// fixture is a keygate on a private work dir, plus everything the test sent
// it that must never be logged: every API key secret and member token.
type fixture struct {
	*stack.Keygate
	work workDir

	mu          sync.Mutex
	secrets     map[string]bool
	decisionIDs []string
}

// newFixture starts keygate on fresh copies of policies/ and data/. At the
// end of the test it checks that no secret the test used appears in
// /metrics, stops keygate by PID (asserting a graceful exit 0), and checks
// the decision log and the process output for secrets, and the decision log
// for every decision the test received.
func newFixture(t *testing.T, extra ...string) *fixture {
	t.Helper()
	f := &fixture{work: newWorkDir(t), secrets: map[string]bool{demoReadKey: true}}
	for _, s := range demoServices {
		f.secrets[adminToken(s)] = true
		f.secrets[editorToken(s)] = true
	}
	f.Keygate = startKeygate(t, f.work, extra...)
	t.Cleanup(func() { f.finish(t) })
	return f
}

// restart stops keygate gracefully and starts it again on the same work
// dir (same policies, data, state and logs).
func (f *fixture) restart(t *testing.T) {
	t.Helper()
	f.stopGracefully(t)
	f.Keygate = startKeygate(t, f.work)
}

func (f *fixture) stopGracefully(t *testing.T) {
	t.Helper()
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	if code := f.ExitCode(); code != 0 {
		t.Fatalf("keygate exited %d on SIGTERM, want 0:\n%s", code, readFile(t, f.work.stderr))
	}
}

func (f *fixture) addSecret(s string) {
	if s == "" {
		return
	}
	f.mu.Lock()
	f.secrets[s] = true
	f.mu.Unlock()
}

func (f *fixture) addDecision(id string) {
	f.mu.Lock()
	f.decisionIDs = append(f.decisionIDs, id)
	f.mu.Unlock()
}

func (f *fixture) finish(t *testing.T) {
	t.Helper()
	select {
	case <-f.Exited():
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		metrics := f.doCtx(ctx, t, http.MethodGet, "/metrics", nil)
		f.assertNoSecrets(t, "/metrics", metrics.body)
		f.stopGracefully(t)
	}
	f.assertNoSecrets(t, "stderr", []byte(readFile(t, f.work.stderr)))
	f.assertNoSecrets(t, "stdout", []byte(readFile(t, f.work.stdout)))
	declog := readFile(t, f.work.decisionLog)
	f.assertNoSecrets(t, "decision log", []byte(declog))

	logged := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(declog))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("decision log line is not JSON: %v: %s", err, sc.Text())
			continue
		}
		for _, field := range []string{"decisionId", "time", "service", "keyId", "api", "method", "path", "allow", "status", "policyRevision", "latencyMicros"} {
			if _, ok := e[field]; !ok {
				t.Errorf("decision log line lacks %q: %s", field, sc.Text())
			}
		}
		id, _ := e["decisionId"].(string)
		logged[id] = true
	}
	for _, id := range f.decisionIDs {
		if !logged[id] {
			t.Errorf("decision %s is not in the decision log", id)
		}
	}
}

func (f *fixture) assertNoSecrets(t *testing.T, where string, b []byte) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("secret %q appears in %s", s, where)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// reply is an HTTP answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// decode decodes the JSON body into v, failing the test on anything else.
func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem is an RFC 9457 problem details body as keygate writes it.
type problem struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Status     int         `json:"status"`
	Detail     string      `json:"detail"`
	Instance   string      `json:"instance"`
	Code       string      `json:"code"`
	Violations []violation `json:"violations"`
	Limit      int         `json:"limit"`
}

type violation struct {
	Endpoint string `json:"endpoint"`
	Flag     string `json:"flag"`
	Entry    string `json:"entry"` // of an IP restriction setting
	Message  string `json:"message"`
}

// problem asserts that r is a problem+json answer with status and code.
func (r reply) problem(t *testing.T, status int, code string) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.body)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", r.body, err)
	}
	if p.Status != status || p.Code != code || p.Title == "" || p.Type == "" || p.Detail == "" {
		t.Fatalf("problem %+v, want status %d code %q with type, title and detail", p, status, code)
	}
	return p
}

// client validates every exchange with a keygate the tests started against
// the OpenAPI document (contract_test.go).
var client = &http.Client{Timeout: 15 * time.Second, Transport: apiContract.transport(http.DefaultTransport)}

// do sends a request and reads the answer. body is sent as is when it is a
// string or []byte, as JSON otherwise; a body gets Content-Type
// application/json unless header (name, value pairs) says otherwise. The
// bearer token and API key headers are remembered as secrets.
func (f *fixture) do(t *testing.T, method, path string, body any, header ...string) reply {
	t.Helper()
	return f.doCtx(t.Context(), t, method, path, body, header...)
}

func (f *fixture) doCtx(ctx context.Context, t *testing.T, method, path string, body any, header ...string) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		switch name := header[i]; {
		case strings.EqualFold(name, "Host"):
			req.Host = header[i+1]
		default:
			req.Header.Set(name, header[i+1])
		}
	}
	if a := req.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		f.addSecret(strings.TrimPrefix(a, "Bearer "))
	}
	f.addSecret(req.Header.Get("X-MICROCMS-API-KEY"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// visibility and decision are the answer of POST /v1/decide.
type visibility struct {
	Published bool   `json:"published"`
	Drafts    bool   `json:"drafts"`
	Closed    bool   `json:"closed"`
	DraftKey  bool   `json:"draftKey"`
	FilterOn  string `json:"filterOn"`
}

type decision struct {
	DecisionID     string     `json:"decisionId"`
	Allow          bool       `json:"allow"`
	Status         int        `json:"status"`
	Code           string     `json:"code"`
	Message        string     `json:"message"`
	Permission     string     `json:"permission"`
	Endpoint       string     `json:"endpoint"`
	ContentID      string     `json:"contentId"`
	KeyID          string     `json:"keyId"`
	Visibility     visibility `json:"visibility"`
	PolicyRevision string     `json:"policyRevision"`
}

// decide posts body to /v1/decide and returns the 200 decision.
func (f *fixture) decide(t *testing.T, body map[string]any) decision {
	t.Helper()
	if s, ok := body["apiKey"].(string); ok {
		f.addSecret(s)
	}
	if h, ok := body["headers"].(map[string]string); ok {
		for _, v := range h {
			f.addSecret(v)
		}
	}
	r := f.do(t, http.MethodPost, "/v1/decide", body)
	if r.status != http.StatusOK {
		t.Fatalf("POST /v1/decide %v: %s", body, r)
	}
	var d decision
	r.decode(t, &d)
	if d.DecisionID == "" || d.PolicyRevision == "" {
		t.Fatalf("decision without id or policy revision: %s", r.body)
	}
	f.addDecision(d.DecisionID)
	return d
}

// apiKey is a key's metadata as the key-management API answers it.
type apiKey struct {
	ID         string `json:"id"`
	Service    string `json:"service"`
	Name       string `json:"name"`
	ContentAPI struct {
		Default    map[string]bool            `json:"default"`
		Individual map[string]map[string]bool `json:"individual"`
	} `json:"contentApi"`
	ManagementAPI map[string]bool `json:"managementApi"`
	Revision      int             `json:"revision"`
}

type warning struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Endpoint string `json:"endpoint"`
	Flag     string `json:"flag"`
}

// created is the answer of a create or a rotation.
type created struct {
	Key      apiKey    `json:"key"`
	Secret   string    `json:"secret"`
	Warnings []warning `json:"warnings"`
}

func keysPath(service string, rest ...string) string {
	return "/v1/services/" + service + "/keys" + strings.Join(append([]string{""}, rest...), "/")
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// createKey creates a key as the service's admin and returns the 201 answer.
func (f *fixture) createKey(t *testing.T, service string, spec any) created {
	t.Helper()
	r := f.do(t, http.MethodPost, keysPath(service), spec, bearer(adminToken(service))...)
	if r.status != http.StatusCreated {
		t.Fatalf("create key on %s: %s", service, r)
	}
	var c created
	r.decode(t, &c)
	f.addSecret(c.Secret)
	if c.Secret == "" || c.Key.ID == "" || c.Warnings == nil {
		t.Fatalf("create answered without secret, id or warnings: %s", r.body)
	}
	return c
}

// rotateKey rotates a key as the service's admin and returns the new secret.
func (f *fixture) rotateKey(t *testing.T, service, id string) created {
	t.Helper()
	r := f.do(t, http.MethodPost, keysPath(service, id, "rotate"), nil, bearer(adminToken(service))...)
	if r.status != http.StatusOK {
		t.Fatalf("rotate %s: %s", id, r)
	}
	var c created
	r.decode(t, &c)
	f.addSecret(c.Secret)
	if c.Secret == "" || c.Key.ID != id {
		t.Fatalf("rotate answered %s", r.body)
	}
	return c
}

// listKeys lists a service's keys as its admin; the raw body is returned too.
func (f *fixture) listKeys(t *testing.T, service string) ([]apiKey, []byte) {
	t.Helper()
	r := f.do(t, http.MethodGet, keysPath(service), nil, bearer(adminToken(service))...)
	if r.status != http.StatusOK {
		t.Fatalf("list keys of %s: %s", service, r)
	}
	var l struct {
		Keys []apiKey `json:"keys"`
	}
	r.decode(t, &l)
	return l.Keys, r.body
}

// contentReq is the body of a content-API decision request.
func contentReq(service, method, path, secret string) map[string]any {
	return map[string]any{"service": service, "method": method, "path": path, "apiKey": secret}
}
