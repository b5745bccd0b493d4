package reload

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// contentRego is the file most broken edits below break.
const contentRego = "content/content.rego"

// TestBrokenPolicyEdits edits the running server's policies into states
// that must be rejected, checks that the last good revision keeps deciding,
// that /health, /v1/policies and /metrics show the rejection (with file and
// line where the compiler knows them), and that restoring the file
// recovers.
func TestBrokenPolicyEdits(t *testing.T) {
	s := startServer(t, "--debounce=30ms")
	good := s.health(t)
	if good.LastReload != "ok" || good.PolicyRevision == "" {
		t.Fatalf("initial /health: %+v", good)
	}
	content := filepath.Join(s.policies, contentRego)
	original := readFile(t, content)

	cases := []struct {
		note string
		file string // relative to policies/
		edit func(orig []byte) []byte
		// wantLine is the line the error must name in file, given the
		// edited bytes; nil when the error has no location (a missing
		// entrypoint).
		wantLine func(edited []byte) int
		// wantMessage is a substring of the error message.
		wantMessage string
	}{
		{
			note: "syntax error",
			file: contentRego,
			edit: func(b []byte) []byte { return append(bytes.Clone(b), "\nis_broken if {\n"...) },
			// The parser stops at the end of the file, the line after.
			wantLine:    func(b []byte) int { return lineOf(b, "is_broken if {") + 1 },
			wantMessage: "unexpected eof",
		},
		{
			note: "unsafe variable",
			file: contentRego,
			edit: func(b []byte) []byte {
				return append(bytes.Clone(b), "\nis_broken if {\n\tinput.x == unbound\n}\n"...)
			},
			wantLine:    func(b []byte) int { return lineOf(b, "unbound") },
			wantMessage: "unsafe",
		},
		{
			note: "type error",
			file: contentRego,
			edit: func(b []byte) []byte {
				return append(bytes.Clone(b), "\nis_broken if {\n\tcount(42) > 1\n}\n"...)
			},
			wantLine:    func(b []byte) int { return lineOf(b, "count(42)") },
			wantMessage: "count",
		},
		{
			note: "decision rule removed (the decision would be undefined)",
			file: contentRego,
			edit: func(b []byte) []byte {
				return bytes.ReplaceAll(b, []byte("decision := "), []byte("old_decision := "))
			},
			wantMessage: "data.content.decision",
		},
		{
			note: "broken new file beside a good one",
			file: "content/extra.rego",
			edit: func([]byte) []byte {
				return []byte("package content\n\nimport rego.v1\n\nextra_rule if {\n\t1 +\n}\n")
			},
			wantLine:    func(b []byte) int { return lineOf(b, "}") },
			wantMessage: "unexpected }",
		},
		{
			note:        "malformed policy data",
			file:        "plans/data.json",
			edit:        func(b []byte) []byte { return bytes.Replace(b, []byte(`"team"`), []byte(`"team`), 1) },
			wantLine:    func(b []byte) int { return lineOf(b, `"team`) },
			wantMessage: "invalid character",
		},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			path := filepath.Join(s.policies, tc.file)
			before, existed := tryRead(path)
			errorsBefore := s.metric(t, `keygate_reloads_total{kind="policies",result="error"}`)
			editedAt := time.Now()
			edited := tc.edit(before)
			writeFile(t, path, edited)

			h := s.waitRejected(t, editedAt, tc.wantMessage)
			if h.PolicyRevision != good.PolicyRevision {
				t.Errorf("revision after a rejected edit = %s, want the last good %s", h.PolicyRevision, good.PolicyRevision)
			}
			if h.LastReloadError == "" || !strings.HasPrefix(h.Status, "degraded") {
				t.Errorf("/health does not show the rejection: %+v", h)
			}
			if d := s.mustDecide(t, readKeyGET); !d.Allow || d.Status != http.StatusOK || d.PolicyRevision != good.PolicyRevision {
				t.Errorf("decision while a broken edit is on disk = %+v, want allowed by %s", d, good.PolicyRevision)
			}
			if got := s.metric(t, `keygate_reloads_total{kind="policies",result="error"}`); got < errorsBefore+1 {
				t.Errorf("keygate_reloads_total{kind=policies,result=error} = %v, want at least %v", got, errorsBefore+1)
			}
			if got := s.metric(t, fmt.Sprintf(`keygate_policy_revision_info{revision=%q}`, good.PolicyRevision)); got != 1 {
				t.Errorf("keygate_policy_revision_info of the last good revision = %v, want 1", got)
			}

			st := s.policyStatus(t)
			if st.LastResult != "error" || st.Revision != good.PolicyRevision || len(st.LastErrors) == 0 {
				t.Fatalf("/v1/policies = %+v, want the error and the last good revision", st.Status)
			}
			t.Logf("reported: %+v", st.LastErrors)
			wantFile, wantLine := "", 0
			if tc.wantLine != nil {
				wantFile, wantLine = path, tc.wantLine(edited)
			}
			found := false
			for _, e := range st.LastErrors {
				if e.File == wantFile && e.Line == wantLine && strings.Contains(e.Message, tc.wantMessage) {
					found = true
				}
			}
			if !found {
				t.Errorf("/v1/policies lastErrors = %+v, want file %q line %d message with %q", st.LastErrors, wantFile, wantLine, tc.wantMessage)
			}
			if !strings.Contains(h.LastReloadError, tc.wantMessage) {
				t.Errorf("/health lastReloadError %q does not contain %q", h.LastReloadError, tc.wantMessage)
			}

			// Fix it: the same revision as before comes back.
			fixed := time.Now()
			if existed {
				writeFile(t, path, before)
			} else {
				remove(t, path)
			}
			h, _ = s.waitHealth(t, "recovery", func(h health) bool {
				return h.LastReloadAt.After(fixed) && h.LastReload != "error"
			})
			if h.PolicyRevision != good.PolicyRevision || h.LastReloadError != "" || h.Status != "ok" {
				t.Errorf("/health after the fix = %+v, want revision %s and no error", h, good.PolicyRevision)
			}
			if st := s.policyStatus(t); len(st.LastErrors) != 0 || st.LastError != "" {
				t.Errorf("/v1/policies after the fix still shows %q %+v", st.LastError, st.LastErrors)
			}
		})
	}
	if string(readFile(t, content)) != string(original) {
		t.Fatal("content.rego was not restored")
	}
}
