package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// refusingOldHeaders copies the work dir's policies to a candidate whose
// legacy selection refuses every old-header request (invalid_api_key).
func refusingOldHeaders(t *testing.T, w workDir) string {
	t.Helper()
	cand := filepath.Join(w.dir, "no-old-headers")
	if err := os.CopyFS(cand, os.DirFS(w.policies)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cand, "legacy", "legacy.rego")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const allow = "} if {\n\tnot refusal\n}"
	if !strings.Contains(string(b), allow) {
		t.Fatalf("%s no longer has the selection this test edits", p)
	}
	writeFile(t, p, []byte(strings.Replace(string(b), allow, "} if {\n\tnot refusal\n\tfalse\n}", 1)))
	return cand
}

// TestLegacyHeadersReplayAndShadow: with --legacy-headers, old-header
// decisions are logged with the question the legacy selection was asked.
// A shadow that is the serving policy agrees on every decision; replaying
// the log against the serving policy changes nothing (exit 0); a
// candidate that refuses every old-header request changes exactly the
// allowed old-header decisions (exit 1), reported with the header whose
// key was chosen.
func TestLegacyHeadersReplayAndShadow(t *testing.T) {
	t.Parallel()
	w := newWorkDir(t)
	f := newFixtureOn(t, w, "--legacy-headers", "--shadow-policies", w.policies)
	if code, res, out := f.importLegacy(t, "business-demo", "--api-key", oldReadKey, "--write-key", oldWriteKey,
		"--write-methods", "blogs=POST"); code != 0 || len(res) != 2 {
		t.Fatalf("import: exit %d, results %q:\n%s", code, res, out)
	}
	old := func(method, path string, headers map[string]string) map[string]any {
		return map[string]any{"service": "business-demo", "method": method, "path": path, "headers": headers}
	}
	cases := []struct {
		body  map[string]any
		allow bool
		code  string
	}{
		{old("GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey}), true, "allowed"},
		{old("POST", "/api/v1/blogs", map[string]string{"X-WRITE-API-KEY": oldWriteKey}), true, "allowed"},
		{old("GET", "/api/v1/blogs", map[string]string{"x-api-key": oldReadKey, "X-MICROCMS-API-KEY": oldReadKey}), false, "conflicting_api_keys"},
		{old("POST", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey}), false, "invalid_api_key"},
		{old("GET", "/api/v1/blogs", map[string]string{"X-API-KEY": "no-such-old-key"}), false, "invalid_api_key"},
		{old("GET", "/api/v1/blogs", map[string]string{"X-API-KEY": demoReadKey}), false, "invalid_api_key"}, // another service's key
		{contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey), true, "allowed"},
	}
	var allowedOld []string
	for _, c := range cases {
		d := f.decide(t, c.body)
		if d.Allow != c.allow || d.Code != c.code {
			t.Fatalf("%v: %+v, want allow %v, %s", c.body, d, c.allow, c.code)
		}
		if _, isOld := c.body["headers"]; isOld && d.Allow {
			allowedOld = append(allowedOld, d.DecisionID)
		}
	}
	m := f.waitShadowed(t, len(cases))
	if got := m.family("keygate_shadow_evaluations_total", `result="agree"`); got != float64(len(cases)) {
		t.Errorf("a shadow identical to the serving policy agreed on %v of %d decisions", got, len(cases))
	}
	f.stopGracefully(t)
	if lines := shadowLines(t, w.decisionLog); len(lines) != 0 {
		t.Errorf("disagreements logged for %v", lines)
	}

	args := func(policies string) []string {
		return []string{"replay", "--log", w.decisionLog, "--policies", policies, "--state", w.state, "--data", w.data, "--format", "json"}
	}
	code, stdout, stderr := keygateRun(t, w.dir, "", args(w.policies)...)
	var rep struct {
		replayJSON
		Groups []struct {
			From, To struct {
				Allow     bool   `json:"allow"`
				Code      string `json:"code"`
				KeyHeader string `json:"keyHeader"`
			}
			Examples []string `json:"examples"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.Replayed != len(cases) || rep.Changed != 0 {
		t.Fatalf("replay against the serving policy: exit %d, want 0 and no change (%v):\n%s%s", code, err, stdout, stderr)
	}

	code, stdout, stderr = keygateRun(t, w.dir, "", args(refusingOldHeaders(t, w))...)
	if err := json.Unmarshal([]byte(stdout), &rep); code != 1 || err != nil || rep.Changed != len(allowedOld) {
		t.Fatalf("replay against a candidate refusing old headers: exit %d, want 1 and %d changes (%v):\n%s%s",
			code, len(allowedOld), err, stdout, stderr)
	}
	var changed []string
	for _, g := range rep.Groups {
		if !g.From.Allow || g.To.Allow || g.To.Code != "invalid_api_key" || g.From.KeyHeader == "" || g.To.KeyHeader != "" {
			t.Errorf("unexpected change %+v", g)
		}
		changed = append(changed, g.Examples...)
	}
	slices.Sort(changed)
	slices.Sort(allowedOld)
	if !slices.Equal(changed, allowedOld) {
		t.Errorf("changed %v, want the allowed old-header decisions %v", changed, allowedOld)
	}
}
