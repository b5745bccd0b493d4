package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

type policiesStatus struct {
	Revision    string   `json:"revision"`
	Files       []string `json:"files"`
	LoadedAt    string   `json:"loadedAt"`
	LastAttempt string   `json:"lastAttempt"`
	LastResult  string   `json:"lastResult"`
	LastError   string   `json:"lastError"`
}

type health struct {
	Status          string `json:"status"`
	PolicyRevision  string `json:"policyRevision"`
	LastReload      string `json:"lastReload"`
	LastReloadError string `json:"lastReloadError"`
}

func (f *fixture) health(t *testing.T) health {
	t.Helper()
	r := f.do(t, http.MethodGet, "/health", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /health: %s", r)
	}
	var h health
	r.decode(t, &h)
	return h
}

func (f *fixture) policies(t *testing.T) policiesStatus {
	t.Helper()
	r := f.do(t, http.MethodGet, "/v1/policies", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/policies: %s", r)
	}
	var p policiesStatus
	r.decode(t, &p)
	return p
}

func TestOperations(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--metrics-per-service")

	h := f.health(t)
	if h.Status != "ok" || h.PolicyRevision == "" || h.LastReload != "ok" || h.LastReloadError != "" {
		t.Errorf("health %+v", h)
	}
	p := f.policies(t)
	if p.Revision != h.PolicyRevision || p.LastResult != "ok" || p.LoadedAt == "" || p.LastError != "" {
		t.Errorf("/v1/policies %+v (health revision %s)", p, h.PolicyRevision)
	}
	for _, want := range []string{"content/content.rego", "management/management.rego", "keys/keys.rego", "plans/data.json"} {
		if !slices.Contains(p.Files, want) {
			t.Errorf("/v1/policies files %v lack %s", p.Files, want)
		}
	}

	// Reload from loopback: nothing changed on disk, so the revision stays.
	r := f.do(t, http.MethodPost, "/v1/policies/reload", nil)
	if r.status != http.StatusOK {
		t.Fatalf("reload: %s", r)
	}
	var rel policiesStatus
	r.decode(t, &rel)
	if rel.Revision != p.Revision || rel.LastResult != "unchanged" {
		t.Errorf("reload answered %+v", rel)
	}

	// Some traffic of each kind, then the metrics must add up exactly.
	f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey))
	f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs/abc", demoReadKey))
	f.decide(t, contentReq("team-demo", "POST", "/api/v1/blogs", demoReadKey))
	f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", unknownSecret))
	f.decide(t, with(contentReq("team-demo", "GET", "/api/v1/media", demoReadKey), "api", "management"))
	fa := f.do(t, http.MethodGet, "/v1/forward-auth/api/v1/news", nil, "Host", "team-demo.microcms.io", "X-MICROCMS-API-KEY", demoReadKey)
	if fa.status != http.StatusOK {
		t.Fatalf("forward-auth: %s", fa)
	}
	f.addDecision(fa.header.Get("X-Keygate-Decision-Id"))
	c := f.createKey(t, "team-demo", keySpec("metrics", perms{"get": true}, nil, nil))
	f.rotateKey(t, "team-demo", c.Key.ID)
	f.do(t, http.MethodPost, keysPath("hobby-demo"), keySpec("x", perms{"getAllDrafts": true}, nil, nil), bearer(adminToken("hobby-demo"))...)
	f.do(t, http.MethodPut, keysPath("hobby-demo", "nope"), keySpec("x", perms{"get": true}, nil, nil), bearer(adminToken("hobby-demo"))...)
	gone := f.createKey(t, "business-demo", keySpec("gone", perms{"get": true}, nil, nil))
	f.do(t, http.MethodDelete, keysPath("business-demo", gone.Key.ID), nil, bearer(adminToken("business-demo"))...)

	mr := f.do(t, http.MethodGet, "/metrics", nil)
	if mr.status != http.StatusOK || !strings.HasPrefix(mr.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", mr.status, mr.header.Get("Content-Type"))
	}
	m := parseMetrics(t, mr.body)
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`keygate_decisions_total{api="content",result="allow",status="200"}`, 3},
		{`keygate_decisions_total{api="content",result="deny",status="400"}`, 1},
		{`keygate_decisions_total{api="content",result="deny",status="401"}`, 1},
		{`keygate_decisions_total{api="management",result="deny",status="403"}`, 1},
		{`keygate_decision_duration_seconds_count{api="content"}`, 5},
		{`keygate_decision_duration_seconds_count{api="management"}`, 1},
		{`keygate_decision_duration_seconds_bucket{api="content",le="+Inf"}`, 5},
		{`keygate_key_writes_total{action="create",status="201"}`, 2},
		{`keygate_key_writes_total{action="rotate",status="200"}`, 1},
		{`keygate_key_writes_total{action="create",status="422"}`, 1},
		{`keygate_key_writes_total{action="update",status="404"}`, 1},
		{`keygate_key_writes_total{action="delete",status="204"}`, 1},
		{`keygate_reloads_total{kind="policies",result="unchanged"}`, 1},
		{`keygate_reloads_total{kind="data",result="ok"}`, 1},
		{`keygate_keys{service="team-demo"}`, 2},
		{`keygate_keys{service="hobby-demo"}`, 0},
		{`keygate_keys{service="business-demo"}`, 0},
		{`keygate_policy_revision_info{revision="` + p.Revision + `"}`, 1},
		{`keygate_decision_errors_total`, 0},
	} {
		if got, ok := m[tc.series]; !ok || got != tc.want {
			t.Errorf("%s = %v (present %v), want %v", tc.series, got, ok, tc.want)
		}
	}
	if sum := m.value(`keygate_decision_duration_seconds_sum{api="content"}`); sum <= 0 || sum > 5 {
		t.Errorf("content decision latency sum %v s is not sensible", sum)
	}
	if n := m.family("keygate_policy_revision_info", ""); n != 1 {
		t.Errorf("%v policy revisions reported, want exactly one", n)
	}
}

// TestReload edits the policy copy with the watcher off and reloads it
// through POST /v1/policies/reload: a good edit changes the revision, a
// broken one answers 422 and the last good policy keeps serving.
func TestReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--watch=false")
	before := f.policies(t).Revision

	plans := filepath.Join(f.work.policies, "plans", "data.json")
	orig, err := os.ReadFile(plans)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, plans, bytes.Replace(orig, []byte(`"team": {"maxKeys": 3`), []byte(`"team": {"maxKeys": 4`), 1))
	r := f.do(t, http.MethodPost, "/v1/policies/reload", nil)
	var ok policiesStatus
	r.decode(t, &ok)
	if r.status != http.StatusOK || ok.Revision == before || ok.LastResult != "ok" {
		t.Fatalf("reload after a good edit: %s", r)
	}
	for i := range 3 { // team-demo has the demo key: 3 more fit now
		f.createKey(t, "team-demo", keySpec("k"+strconv.Itoa(i), perms{"get": true}, nil, nil))
	}

	writeFile(t, filepath.Join(f.work.policies, "content", "broken.rego"), []byte("package content\n\nbroken if {\n"))
	r = f.do(t, http.MethodPost, "/v1/policies/reload", nil)
	var bad policiesStatus
	r.decode(t, &bad)
	if r.status != http.StatusUnprocessableEntity || bad.Revision != ok.Revision || bad.LastError == "" {
		t.Fatalf("reload after a broken edit: %s", r)
	}
	h := f.health(t)
	if h.PolicyRevision != ok.Revision || !strings.Contains(h.LastReloadError, "broken.rego") {
		t.Errorf("health after a rejected reload: %+v", h)
	}
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow || d.PolicyRevision != ok.Revision {
		t.Errorf("decision after a rejected reload: %+v", d)
	}
	m := scrape(t, f)
	if m.value(`keygate_reloads_total{kind="policies",result="error"}`) != 1 || m.value(`keygate_reloads_total{kind="policies",result="ok"}`) != 1 {
		t.Errorf("reload metrics: %v", m)
	}
	if m.value(`keygate_policy_revision_info{revision="`+ok.Revision+`"}`) != 1 || m.family("keygate_policy_revision_info", "") != 1 {
		t.Errorf("keygate_policy_revision_info does not show only %s", ok.Revision)
	}
}

// TestRoutes: unknown routes and methods are JSON problems too.
func TestRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		method, path string
		status       int
		allow        string // the Allow header of a 405
	}{
		{"GET", "/", 404, ""},
		{"GET", "/v1", 404, ""},
		{"GET", "/v2/decide", 404, ""},
		{"GET", "/v1/services/team-demo", 404, ""},
		{"GET", "/v1/services/team-demo/keys/a/b", 404, ""},
		{"GET", "/v1/decide", 405, "POST"},
		{"PUT", "/v1/decide", 405, "POST"},
		{"DELETE", "/health", 405, "GET"},
		{"POST", "/metrics", 405, "GET"},
		{"POST", "/v1/policies", 405, "GET"},
		{"GET", "/v1/policies/reload", 405, "POST"},
		{"PATCH", "/v1/services/team-demo/keys/team-demo-read", 405, ""},
		{"DELETE", "/v1/services/team-demo/keys", 405, ""},
		{"GET", "/v1/services/team-demo/keys/team-demo-read/rotate", 405, "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			r := f.do(t, tc.method, tc.path, nil)
			code := "not_found"
			if tc.status == 405 {
				code = "method_not_allowed"
			}
			p := r.problem(t, tc.status, code)
			if p.Instance != tc.path {
				t.Errorf("instance %q", p.Instance)
			}
			if tc.allow != "" && !strings.Contains(r.header.Get("Allow"), tc.allow) {
				t.Errorf("Allow %q lacks %s", r.header.Get("Allow"), tc.allow)
			}
		})
	}
}

// metrics are scraped series by their text-format name and labels, e.g.
// `keygate_keys{service="team-demo"}`.
type metrics map[string]float64

func scrape(t *testing.T, f *fixture) metrics {
	t.Helper()
	r := f.do(t, http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	return parseMetrics(t, r.body)
}

func parseMetrics(t *testing.T, b []byte) metrics {
	t.Helper()
	m := metrics{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

func (m metrics) value(series string) float64 { return m[series] }

// family sums the series of one metric whose labels contain label ("" for all).
func (m metrics) family(name, label string) float64 {
	var sum float64
	for s, v := range m {
		if (s == name || strings.HasPrefix(s, name+"{")) && strings.Contains(s, label) {
			sum += v
		}
	}
	return sum
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// TestDebugAddr: --debug-addr serves the Go profiles on its own listener,
// and the API's router never serves them.
func TestDebugAddr(t *testing.T) {
	t.Parallel()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	debug := "127.0.0.1:" + strconv.Itoa(port)
	f := newFixture(t, "--debug-addr", debug)
	resp, err := http.Get("http://" + debug + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "serve") {
		t.Fatalf("debug listener: %d %q", resp.StatusCode, body)
	}
	f.do(t, http.MethodGet, "/debug/pprof/", nil).problem(t, http.StatusNotFound, "not_found")
}
