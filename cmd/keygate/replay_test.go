package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// loggedLine is a decision-log line keygate writes for the demo read key
// asking POST /api/v1/blogs (which it may not): the shipped policy denies
// it with 400 method_forbidden "POST is forbidden.".
func loggedLine() map[string]any {
	return map[string]any{
		"time": "2026-12-01T10:32:56.389056806Z", "decisionId": "d-1", "service": "team-demo",
		"keyId": "team-demo-read", "keyRevision": 1, "api": "content", "method": "POST", "path": "/api/v1/blogs",
		"query": map[string]string{}, "allow": false, "status": 400, "code": "method_forbidden",
		"message": "POST is forbidden.", "policyRevision": "r", "endpoint": "blogs", "permission": "post",
	}
}

// with returns a copy of line with fields set (a nil value deletes one).
func with(line map[string]any, fields map[string]any) map[string]any {
	out := maps.Clone(line)
	for k, v := range fields {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// runReplayCmd writes lines as a decision log and runs keygate replay on
// it against policies, with the seeded demo keys; it returns the exit
// status, stdout and stderr.
func runReplayCmd(t *testing.T, policies string, lines []map[string]any, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	var log bytes.Buffer
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		log.Write(append(b, '\n'))
	}
	logPath := filepath.Join(dir, "decisions.jsonl")
	if err := os.WriteFile(logPath, log.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args = append([]string{"--log", logPath, "--policies", policies, "--state", filepath.Join(dir, "state.json"),
		"--data", filepath.Join("..", "..", "data")}, args...)
	err := replayCmd(t.Context(), args, func(string) string { return "" }, &stdout, &stderr)
	code := 0
	if ee := (exitError{}); errors.As(err, &ee) {
		code = ee.code
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// terminalControls reports the first character of s that a terminal
// would act on: a C0 control other than newline, DEL, or a C1 control
// (CSI, OSC, … as UTF-8).
func terminalControls(s string) (rune, bool) {
	for _, r := range s {
		if r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f {
			return r, true
		}
	}
	return 0, false
}

// TestReplayRefusesWhatDecideRefuses: a line whose question /v1/decide
// would refuse (the same validation, the same bounds) or that holds a
// field longer than the decision log writes is not replayed: it is
// counted unreplayable (exit 2) with the field named, and none of its
// text reaches the output raw.
func TestReplayRefusesWhatDecideRefuses(t *testing.T) {
	policies := filepath.Join("..", "..", "policies")
	manyParams := map[string]string{}
	for i := range 101 {
		manyParams["p"+strconv.Itoa(i)] = "v"
	}
	for _, tc := range []struct {
		note   string
		fields map[string]any
		reason string
	}{
		{"a 100,000-character method", map[string]any{"method": strings.Repeat("G", 100_000)}, "field method"},
		{"a method that is not a token", map[string]any{"method": "GET\x1b[2J"}, "field method"},
		{"a service that is not a service id", map[string]any{"service": "Team\x1b]0;x\x07"}, "field service"},
		{"a relative path", map[string]any{"path": "api/v1/blogs"}, "field path"},
		{"a path over 8 KiB", map[string]any{"path": "/api/v1/" + strings.Repeat("b", 9000)}, "field path"},
		{"a client address that is none", map[string]any{"clientIp": "203.0.113.9\x1b[31m"}, "field clientIp"},
		{"an unknown api", map[string]any{"api": "graphql"}, `api "graphql"`},
		{"101 query parameters", map[string]any{"query": manyParams}, "field query"},
		{"a query over 8 KiB", map[string]any{"query": map[string]string{"q": strings.Repeat("x", 9000)}}, "field query"},
		{"no query (an old log)", map[string]any{"query": nil}, "without its query"},
		{"a decision id longer than the log writes", map[string]any{"decisionId": strings.Repeat("d", 2000)}, "field decisionId"},
		{"a message longer than the log writes", map[string]any{"message": strings.Repeat("m", 2000)}, "field message"},
		{"an unknown old header", map[string]any{"legacy": map[string]any{"headers": []map[string]any{{"header": "X-EVIL"}}}}, "field legacy"},
		{"an old header twice", map[string]any{"legacy": map[string]any{"headers": []map[string]any{
			{"header": "X-API-KEY"}, {"header": "X-API-KEY"}}}}, "field legacy"},
		{"a chosen header not listed", map[string]any{"legacy": map[string]any{"headers": []map[string]any{
			{"header": "X-API-KEY"}}, "keyHeader": "X-WRITE-API-KEY"}}, "field legacy"},
		{"a lone surrogate in the path", map[string]any{"path": json.RawMessage(`"/api/v1/bl\udcffogs"`)}, "path must be UTF-8 text"},
		{"a lone surrogate in a query value", map[string]any{"query": json.RawMessage(`{"a":"\udcff"}`)}, "must be UTF-8 text"},
		{"old headers on a management decision", map[string]any{"api": "management", "path": "/api/v1/media",
			"legacy": map[string]any{"headers": []map[string]any{{"header": "X-API-KEY"}}}}, "old key headers"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			code, stdout, stderr := runReplayCmd(t, policies, []map[string]any{with(loggedLine(), tc.fields)}, "--format", "text")
			if code != 2 {
				t.Errorf("exit %d, want 2 (unreplayable)\n%s", code, stdout)
			}
			if !strings.Contains(stdout, "1 decisions cannot be replayed") || !strings.Contains(stdout, tc.reason) {
				t.Errorf("the report does not name the line as unreplayable for %q:\n%s", tc.reason, stdout)
			}
			if r, ok := terminalControls(stdout + stderr); ok {
				t.Errorf("the output carries %U raw:\n%q", r, stdout)
			}
			if len(stdout) > 4096 {
				t.Errorf("the report is %d bytes: a refused line's field was printed", len(stdout))
			}
		})
	}
	// The line unchanged is replayable and unchanged: the refusals above
	// are the field's.
	if code, stdout, _ := runReplayCmd(t, policies, []map[string]any{loggedLine()}); code != 0 {
		t.Fatalf("the valid line: exit %d\n%s", code, stdout)
	}
}

// TestReplayTextReportEscapes: fields of a log line that reach the text
// report (decision ids, codes, messages, endpoints, deleted keys' ids) are
// printed escaped where they are not printable: an ESC, BEL or C1 control
// from the log never reaches the terminal.
func TestReplayTextReportEscapes(t *testing.T) {
	const esc, osc = "\x1b]0;owned\x07", "\u009d0;owned\u009c"
	lines := []map[string]any{
		// A change (the log claims an allow): its id, code, message,
		// endpoint and permission are printed.
		with(loggedLine(), map[string]any{"decisionId": "d" + esc, "allow": true, "status": 200, "code": "allowed" + esc,
			"message": "ok" + osc, "endpoint": "blogs" + esc, "permission": "post" + osc}),
		// A key deleted since: its id is printed.
		with(loggedLine(), map[string]any{"decisionId": "d2" + osc, "keyId": "gone" + esc}),
	}
	code, stdout, _ := runReplayCmd(t, filepath.Join("..", "..", "policies"), lines)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a change)\n%s", code, stdout)
	}
	if r, ok := terminalControls(stdout); ok {
		t.Errorf("the report carries %U raw:\n%q", r, stdout)
	}
	// JSON escapes C0 controls itself; C1 controls are escaped too, and
	// the document still reads back as the log's text.
	code, out, _ := runReplayCmd(t, filepath.Join("..", "..", "policies"), lines, "--format", "json")
	if r, ok := terminalControls(out); code != 1 || ok {
		t.Errorf("json report: exit %d, carries %U raw:\n%q", code, r, out)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Groups) != 1 || rep.Groups[0].From.Message != "ok"+osc {
		t.Errorf("json report does not read back (%v): %+v", err, rep)
	}
	for _, want := range []string{`"d\x1b]0;owned\a"`, `"gone\x1b]0;owned\a"`, `"d2\u009d0;owned\u009c"`, `"ok\u009d0;owned\u009c"`,
		`"allowed\x1b]0;owned\a"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the report does not show %s escaped:\n%s", want, stdout)
		}
	}
}

// TestReplayComparesTheMessage: the deny message is what microCMS clients
// see, so a candidate that changes only the message changes the decision
// (exit 1, both messages reported); a line from before keygate logged the
// message is not compared on it.
func TestReplayComparesTheMessage(t *testing.T) {
	shipped := filepath.Join("..", "..", "policies")
	edited := t.TempDir()
	if err := os.CopyFS(edited, os.DirFS(shipped)); err != nil {
		t.Fatal(err)
	}
	rego := filepath.Join(edited, "content", "content.rego")
	src, err := os.ReadFile(rego)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(src, []byte(`"is forbidden."`), []byte(`"is not permitted."`), 1)
	if bytes.Equal(changed, src) {
		t.Fatal("the message edit no longer applies: update the test")
	}
	if err := os.WriteFile(rego, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	withoutMessage := with(loggedLine(), map[string]any{"message": nil})
	for _, tc := range []struct {
		note     string
		policies string
		line     map[string]any
		exit     int
	}{
		{"the serving policy", shipped, loggedLine(), 0},
		{"a candidate that changes only the message", edited, loggedLine(), 1},
		{"a line without a message, the edited candidate", edited, withoutMessage, 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			code, stdout, _ := runReplayCmd(t, tc.policies, []map[string]any{tc.line}, "--format", "json")
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s", code, tc.exit, stdout)
			}
			var rep replayReport
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if tc.exit == 0 {
				if rep.Changed != 0 || rep.Unchanged != 1 {
					t.Errorf("changed %d, unchanged %d; want 0, 1", rep.Changed, rep.Unchanged)
				}
				return
			}
			want := changeGroup{From: outcome{Status: 400, Code: "method_forbidden", Message: "POST is forbidden."},
				To: outcome{Status: 400, Code: "method_forbidden", Message: "POST is not permitted."}}
			if rep.Changed != 1 || len(rep.Groups) != 1 || rep.Groups[0].From != want.From || rep.Groups[0].To != want.To {
				t.Errorf("report %+v, want one change %+v → %+v", rep, want.From, want.To)
			}
			_, text, _ := runReplayCmd(t, tc.policies, []map[string]any{tc.line})
			if !strings.Contains(text, `"POST is forbidden."→"POST is not permitted."`) {
				t.Errorf("the text report does not show the message change:\n%s", text)
			}
		})
	}
}
