package e2e

import (
	"bufio"
	"encoding/json"

	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shadowRequests are the questions the shadow tests ask: with the seed
// read key (get only), no key, an unknown key, a draftKey, a write and the
// management API.
func shadowRequests() []map[string]any {
	return []map[string]any{
		contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey),
		contentReq("team-demo", "GET", "/api/v1/blogs/a1?draftKey=d", demoReadKey),
		contentReq("team-demo", "HEAD", "/api/v1/news", demoReadKey),
		contentReq("team-demo", "DELETE", "/api/v1/blogs/a1", demoReadKey),
		contentReq("team-demo", "GET", "/api/v1/blogs", "no-such-key"),
		{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs"},
		contentReq("hobby-demo", "GET", "/api/v1/blogs", demoReadKey),
		{"service": "team-demo", "api": "management", "method": "GET", "path": "/api/v1/contents/blogs", "apiKey": demoReadKey},
	}
}

// conflicting copies the work dir's policies to a candidate whose content
// decision fails at evaluation on every request (two complete definitions
// of decision that disagree: an eval_conflict_error).
func conflicting(t *testing.T, w workDir) string {
	t.Helper()
	cand := filepath.Join(w.dir, "conflicting")
	if err := os.CopyFS(cand, os.DirFS(w.policies)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cand, "content", "conflict.rego"),
		[]byte("package content\n\ndecision := {\"allow\": true, \"status\": 200} if input.request.method != \"\"\n"))
	return cand
}

// answers asks every shadow request rounds times and returns the answers
// without their decision ids, and the ids of the allowed GET/HEADs.
func (f *fixture) answers(t *testing.T, rounds int) (out []decision, allowedReads []string) {
	t.Helper()
	for range rounds {
		for _, body := range shadowRequests() {
			d := f.decide(t, body)
			if d.Allow {
				allowedReads = append(allowedReads, d.DecisionID)
			}
			d.DecisionID = ""
			out = append(out, d)
		}
	}
	return out, allowedReads
}

// waitShadowed polls /metrics until the shadow has evaluated (or dropped)
// n decisions: every decision asked, so the counts below are final.
func (f *fixture) waitShadowed(t *testing.T, n int) metrics {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := scrape(t, f)
		done := m.family("keygate_shadow_evaluations_total", "") + m.value("keygate_shadow_dropped_total")
		if done >= float64(n) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shadow handled %v decisions, want %d", done, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShadow: a candidate evaluated in the shadow never changes an answer,
// whether it disagrees (a policy without get) or fails on every decision;
// disagreements are counted by entrypoint and code and logged as lines
// flagged with the shadow's answer.
func TestShadow(t *testing.T) {
	t.Parallel()
	const rounds = 5
	plain := newFixture(t)
	want, _ := plain.answers(t, rounds)
	n := len(want)

	t.Run("contrary", func(t *testing.T) {
		t.Parallel()
		w := newWorkDir(t)
		cand := withoutPermission(t, w, "no-get", "get")
		f := newFixtureOn(t, w, "--shadow-policies", cand)
		got, reads := f.answers(t, rounds)
		if !slices.Equal(got, want) {
			t.Fatalf("answers with a contrary shadow differ:\n got  %+v\n want %+v", got, want)
		}
		if len(reads) == 0 {
			t.Fatal("no allowed read: the test asks nothing the shadow disagrees with")
		}
		m := f.waitShadowed(t, n)
		if got := m.value(`keygate_shadow_evaluations_total{entrypoint="data.content.decision",result="disagree"}`); got != float64(len(reads)) {
			t.Errorf("content disagreements %v, want %d", got, len(reads))
		}
		if got := m.value(`keygate_shadow_disagreements_total{entrypoint="data.content.decision",serving_code="allowed",shadow_code="method_forbidden"}`); got != float64(len(reads)) {
			t.Errorf("disagreements allowed→method_forbidden %v, want %d", got, len(reads))
		}
		if got := m.family("keygate_shadow_evaluations_total", ""); got != float64(n) {
			t.Errorf("shadow evaluations %v, want %d (every decision)", got, n)
		}
		if got := m.family("keygate_shadow_evaluations_total", `result="error"`); got != 0 {
			t.Errorf("shadow errors %v, want 0", got)
		}
		if got := m.value("keygate_shadow_dropped_total"); got != 0 {
			t.Errorf("dropped %v, want 0", got)
		}
		f.stopGracefully(t)
		flagged := shadowLines(t, f.work.decisionLog)
		slices.Sort(flagged)
		slices.Sort(reads)
		if !slices.Equal(flagged, reads) {
			t.Errorf("flagged decision-log lines %v, want the allowed reads %v", flagged, reads)
		}
	})

	t.Run("broken", func(t *testing.T) {
		t.Parallel()
		w := newWorkDir(t)
		f := newFixtureOn(t, w, "--shadow-policies", conflicting(t, w))
		got, _ := f.answers(t, rounds)
		if !slices.Equal(got, want) {
			t.Fatalf("answers with a failing shadow differ:\n got  %+v\n want %+v", got, want)
		}
		m := f.waitShadowed(t, n)
		if got := m.value(`keygate_shadow_evaluations_total{entrypoint="data.content.decision",result="error"}`); got != float64(n-rounds) {
			t.Errorf("content errors %v, want %d", got, n-rounds)
		}
		if got := m.value(`keygate_shadow_evaluations_total{entrypoint="data.management.decision",result="agree"}`); got != rounds {
			t.Errorf("management decisions agreeing %v, want %d", got, rounds)
		}
		var p struct {
			Shadow *policiesStatus `json:"shadow"`
		}
		f.do(t, "GET", "/v1/policies", nil).decode(t, &p)
		if p.Shadow == nil || p.Shadow.Revision == "" {
			t.Errorf("/v1/policies lacks the shadow's status: %+v", p)
		}
	})

	t.Run("sample 0 evaluates nothing", func(t *testing.T) {
		t.Parallel()
		w := newWorkDir(t)
		f := newFixtureOn(t, w, "--shadow-policies", conflicting(t, w), "--shadow-sample", "0")
		f.answers(t, 1)
		if got := scrape(t, f).family("keygate_shadow_evaluations_total", ""); got != 0 {
			t.Errorf("shadow evaluations %v with --shadow-sample 0", got)
		}
	})

	t.Run("a shadow that does not compile stops the start", func(t *testing.T) {
		t.Parallel()
		w := newWorkDir(t)
		broken := filepath.Join(w.dir, "broken")
		if err := os.MkdirAll(broken, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(broken, "x.rego"), []byte("package content\n\ndecision := \n"))
		code, _ := runToExit(t, w.serveConfig("--shadow-policies", broken), 30*time.Second)
		if code == 0 || !strings.Contains(readFile(t, w.stderr), "shadow policy") {
			t.Errorf("exit %d, stderr:\n%s", code, readFile(t, w.stderr))
		}
	})
}

// newFixtureOn is newFixture on a work dir the caller prepared.
func newFixtureOn(t *testing.T, w workDir, args ...string) *fixture {
	t.Helper()
	f := &fixture{work: w, secrets: map[string]bool{demoReadKey: true}}
	for _, s := range demoServices {
		f.secrets[adminToken(s)] = true
		f.secrets[editorToken(s)] = true
	}
	f.Keygate = startKeygate(t, w, args...)
	t.Cleanup(func() { f.finish(t) })
	return f
}

// shadowLines returns the decision ids of the decision-log lines flagged
// with a shadow answer, checking each flag's shape.
func shadowLines(t *testing.T, path string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		var e struct {
			DecisionID string `json:"decisionId"`
			Allow      bool   `json:"allow"`
			Shadow     *struct {
				Revision string `json:"revision"`
				Allow    bool   `json:"allow"`
				Status   int    `json:"status"`
				Code     string `json:"code"`
			} `json:"shadow"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Shadow == nil {
			continue
		}
		if !e.Allow || e.Shadow.Allow || e.Shadow.Code != "method_forbidden" || e.Shadow.Revision == "" {
			t.Errorf("flagged line %s", sc.Text())
		}
		ids = append(ids, e.DecisionID)
	}
	return ids
}
