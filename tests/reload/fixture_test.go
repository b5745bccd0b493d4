package reload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// build is the module root (the shipped policies/ and data/) and the keygate
// binary TestMain built once (or found in KEYGATE_BIN).
var build stack.TestBuild

func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "reload", &build)) }

// server is a running keygate over a private, editable copy of the shipped
// policies/ and data/.
type server struct {
	*stack.Keygate
	dir      string // private directory holding everything below
	policies string
	data     string
	client   *http.Client
}

// startServer copies policies/ and data/ into a temp dir and starts keygate
// on them, with the decision log off and flags after serve's own.
func startServer(t *testing.T, flags ...string) *server {
	t.Helper()
	s := &server{dir: t.TempDir()}
	s.policies = filepath.Join(s.dir, "policies")
	s.data = filepath.Join(s.dir, "data")
	if err := stack.CopyDirs(build.Root, s.dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(s.dir, "keygate.log")
	kg, err := stack.StartKeygate(t.Context(), stack.KeygateConfig{
		Binary: build.Binary, Policies: s.policies, Data: s.data,
		State: filepath.Join(s.dir, "state", "state.json"), LogPath: logPath,
		Args:         append([]string{"--decision-log=off"}, flags...),
		ReadyTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("start keygate: %v", err)
	}
	s.Keygate = kg
	s.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64},
	}
	t.Cleanup(func() {
		if err := kg.Stop(); err != nil {
			t.Errorf("stop keygate: %v", err)
		}
		if t.Failed() {
			t.Logf("keygate log (last lines):\n%s", tailFile(logPath, 30))
		}
	})
	return s
}

// health is the body of GET /health.
type health struct {
	Status          string    `json:"status"`
	PolicyRevision  string    `json:"policyRevision"`
	LastReload      string    `json:"lastReload"`
	LastReloadAt    time.Time `json:"lastReloadAt"`
	LastReloadError string    `json:"lastReloadError"`
	Data            dataState `json:"data"`
}

// dataState is the data reload part of /health and /v1/policies.
type dataState struct {
	LastAttempt time.Time `json:"lastAttempt"`
	LastResult  string    `json:"lastResult"`
	LastError   string    `json:"lastError"`
}

// policiesState is the body of GET /v1/policies and POST /v1/policies/reload.
type policiesState struct {
	engine.Status
	Data dataState `json:"data"`
}

// decision is the part of a /v1/decide answer the tests check.
type decision struct {
	Allow          bool   `json:"allow"`
	Status         int    `json:"status"`
	Code           string `json:"code"`
	PolicyRevision string `json:"policyRevision"`
}

// readKeyGET is a content GET with the seeded read-only key of team-demo:
// allowed by the shipped policy.
const readKeyGET = `{"service":"team-demo","api":"content","method":"GET","path":"/api/v1/blogs","apiKey":"team-demo-read-key"}`

func (s *server) getJSON(t *testing.T, path string, v any) int {
	t.Helper()
	resp, err := s.client.Get(s.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
	return resp.StatusCode
}

func (s *server) health(t *testing.T) health {
	t.Helper()
	var h health
	if code := s.getJSON(t, "/health", &h); code != http.StatusOK {
		t.Fatalf("GET /health: status %d (%+v)", code, h)
	}
	return h
}

func (s *server) policyStatus(t *testing.T) policiesState {
	t.Helper()
	var p policiesState
	if code := s.getJSON(t, "/v1/policies", &p); code != http.StatusOK {
		t.Fatalf("GET /v1/policies: status %d", code)
	}
	return p
}

// decide asks POST /v1/decide; it returns an error for a transport failure
// or a non-200 answer, so that load workers can count them.
func (s *server) decide(ctx context.Context, body string) (decision, error) {
	var d decision
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/decide", strings.NewReader(body))
	if err != nil {
		return d, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return d, err
	}
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("POST /v1/decide: status %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("POST /v1/decide: %w: %s", err, b)
	}
	return d, nil
}

func (s *server) mustDecide(t *testing.T, body string) decision {
	t.Helper()
	d, err := s.decide(t.Context(), body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// reload calls POST /v1/policies/reload and returns its status and body.
func (s *server) reload(t *testing.T) (int, policiesState) {
	t.Helper()
	resp, err := s.client.Post(s.URL+"/v1/policies/reload", "application/json", nil)
	if err != nil {
		t.Fatalf("POST /v1/policies/reload: %v", err)
	}
	defer resp.Body.Close()
	var p policiesState
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("POST /v1/policies/reload: decode: %v", err)
	}
	return resp.StatusCode, p
}

// metric returns the value of one sample of GET /metrics, such as
// `keygate_reloads_total{kind="policies",result="error"}`; 0 when absent.
func (s *server) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := s.client.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return 0
}

// waitHealth polls /health until ok accepts it, and returns that body and
// when it was seen.
func (s *server) waitHealth(t *testing.T, what string, ok func(health) bool) (health, time.Time) {
	t.Helper()
	stop := time.Now().Add(15 * time.Second)
	var h health
	for {
		h = s.health(t)
		if ok(h) {
			return h, time.Now()
		}
		if time.Now().After(stop) {
			t.Fatalf("waiting for %s: last /health %+v", what, h)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRevision waits until rev serves after a successful reload.
func (s *server) waitRevision(t *testing.T, rev string) (health, time.Time) {
	t.Helper()
	return s.waitHealth(t, "revision "+rev, func(h health) bool {
		return h.PolicyRevision == rev && h.LastReload == "ok"
	})
}

// waitRejected waits for a rejected policy reload attempted after since.
// waitRejected waits for a rejected reload after since whose error
// contains want. Matching the message matters: an in-place write is a
// truncate then a write, and on a loaded machine a reload may fall between
// the two and reject the momentarily empty file first.
func (s *server) waitRejected(t *testing.T, since time.Time, want string) health {
	t.Helper()
	h, _ := s.waitHealth(t, "a rejected reload with "+strconv.Quote(want), func(h health) bool {
		return h.LastReload == "error" && h.LastReloadAt.After(since) && strings.Contains(h.LastReloadError, want)
	})
	return h
}

// revisionOf compiles a policies directory in process, as the server does,
// and returns its revision.
func revisionOf(t *testing.T, dir string) string {
	t.Helper()
	set, err := engine.Load(t.Context(), dir, engine.DefaultEntrypoints())
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return set.Revision
}

// writeFile replaces a file in place (truncate and write), as most editors
// without atomic save do.
func writeFile(t *testing.T, path string, body []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lineOf returns the 1-based line of the first line of body that contains
// needle, or 0.
func lineOf(body []byte, needle string) int {
	for i, l := range bytes.Split(body, []byte("\n")) {
		if bytes.Contains(l, []byte(needle)) {
			return i + 1
		}
	}
	return 0
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tryRead returns a file's bytes and whether it exists.
func tryRead(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	return b, err == nil
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// versionB is the shipped content policy with GET removed from the method
// table: the read key's GET, allowed by the shipped version (A), becomes a
// 405 method_not_allowed. It is the well-defined answer that tells which
// version decided.
func versionB(t *testing.T, a []byte) []byte {
	t.Helper()
	// Every method table of the policy loses its GET entry (the allow
	// path and the deny reasons may each spell the table out).
	getEntry := regexp.MustCompile(`"GET":\s*"get",\s*`)
	b := getEntry.ReplaceAll(a, nil)
	if bytes.Equal(a, b) {
		t.Fatalf("content.rego has no %q entry to remove", getEntry)
	}
	return b
}

// checkAnswer checks that the answer to readKeyGET is the one of the
// revision that made it: an allow under A, a 405 under B.
func checkAnswer(t *testing.T, d decision, revA, revB string) {
	t.Helper()
	if err := answerError(d, revA, revB); err != nil {
		t.Error(err)
	}
}

// answerError is checkAnswer for goroutines that must not call t.Fatal.
func answerError(d decision, revA, revB string) error {
	switch d.PolicyRevision {
	case revA:
		if !d.Allow || d.Status != http.StatusOK {
			return fmt.Errorf("revision A (%s) answered %+v, want an allow", revA, d)
		}
	case revB:
		if d.Allow || d.Status != http.StatusMethodNotAllowed || d.Code != "method_not_allowed" {
			return fmt.Errorf("revision B (%s) answered %+v, want 405 method_not_allowed", revB, d)
		}
	default:
		return fmt.Errorf("decision by revision %q, neither A (%s) nor B (%s): %+v", d.PolicyRevision, revA, revB, d)
	}
	return nil
}
