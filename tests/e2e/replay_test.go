package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// withoutDelete copies the work dir's policies to a candidate whose
// content decision never grants the delete permission: the one change a
// replay must find.
func withoutDelete(t *testing.T, w workDir) string {
	t.Helper()
	return withoutPermission(t, w, "candidate", "delete")
}

// withoutPermission copies the work dir's policies to dir name whose
// content decision never grants perm.
func withoutPermission(t *testing.T, w workDir, name, perm string) string {
	t.Helper()
	cand := filepath.Join(w.dir, name)
	if err := os.CopyFS(cand, os.DirFS(w.policies)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cand, "content", "content.rego")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const grant = "\ngranted if effective_permissions[permission] == true\n"
	if !strings.Contains(string(b), grant) {
		t.Fatalf("%s no longer has the grant this test edits", p)
	}
	writeFile(t, p, []byte(strings.Replace(string(b), grant,
		"\ngranted if {\n\teffective_permissions[permission] == true\n\tpermission != \""+perm+"\"\n}\n", 1)))
	return cand
}

type replayJSON struct {
	CandidateRevision string `json:"candidateRevision"`
	Decisions         int    `json:"decisions"`
	Replayed          int    `json:"replayed"`
	Changed           int    `json:"changed"`
	Unchanged         int    `json:"unchanged"`
	DeletedKeys       struct {
		Decisions int      `json:"decisions"`
		Keys      []string `json:"keys"`
		Examples  []string `json:"examples"`
	} `json:"deletedKeys"`
	Groups []struct {
		From, To struct {
			Allow  bool   `json:"allow"`
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		Service    string   `json:"service"`
		Endpoint   string   `json:"endpoint"`
		Permission string   `json:"permission"`
		Count      int      `json:"count"`
		Examples   []string `json:"examples"`
	} `json:"groups"`
}

// TestReplay records a decision log on the real server, deletes one key,
// and replays the log against a candidate that removes the delete
// permission: exactly the allowed DELETEs of the remaining key change, the
// deleted key's decision is reported and not replayed, the log carries no
// secret and no draftKey, and the exit status is the CI gate.
func TestReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	writer := f.createKey(t, "team-demo", keySpec("writer", perms{"get": true, "delete": true}, nil, nil))
	reader := f.createKey(t, "team-demo", keySpec("reader", perms{"get": true}, nil, nil))
	doomed := f.createKey(t, "hobby-demo", keySpec("doomed", perms{"get": true, "delete": true}, nil, nil))

	const draftKey = "draft-key-value-never-logged"
	f.addSecret(draftKey)
	var deletes []string // allowed DELETEs by the writer: the decisions the candidate changes
	for _, path := range []string{"/api/v1/blogs/a", "/api/v1/news/b", "/api/v1/blogs/c?draftKey=x"} {
		d := f.decide(t, contentReq("team-demo", "DELETE", path, writer.Secret))
		if !d.Allow {
			t.Fatalf("DELETE %s by the writer: %+v", path, d)
		}
		deletes = append(deletes, d.DecisionID)
	}
	unchanged := []map[string]any{
		contentReq("team-demo", "GET", "/api/v1/blogs/a?draftKey="+draftKey, writer.Secret),
		contentReq("team-demo", "GET", "/api/v1/blogs", reader.Secret),
		contentReq("team-demo", "DELETE", "/api/v1/blogs/a", reader.Secret), // denied either way
		contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey),
		contentReq("team-demo", "GET", "/api/v1/blogs", "no-such-key"),
		{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs"},
	}
	for _, body := range unchanged {
		f.decide(t, body)
	}
	gone := f.decide(t, contentReq("hobby-demo", "DELETE", "/api/v1/blogs/a", doomed.Secret))
	if r := f.do(t, http.MethodDelete, keysPath("hobby-demo", doomed.Key.ID), nil, bearer(adminToken("hobby-demo"))...); r.status != http.StatusNoContent {
		t.Fatalf("delete key: %s", r)
	}
	f.stopGracefully(t) // flushes the decision log

	logText := readFile(t, f.work.decisionLog)
	if strings.Contains(logText, draftKey) {
		t.Fatal("the decision log holds a draftKey value")
	}
	sc := bufio.NewScanner(strings.NewReader(logText))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"query", "endpoint", "permission"} {
			if _, ok := e[field]; !ok {
				t.Errorf("decision log line lacks %q: %s", field, sc.Text())
			}
		}
		if e["keyId"] != "" && e["keyRevision"] == nil {
			t.Errorf("decision log line with a key lacks keyRevision: %s", sc.Text())
		}
	}

	cand := withoutDelete(t, f.work)
	args := func(policies string, extra ...string) []string {
		return append([]string{"replay", "--log", f.work.decisionLog, "--policies", policies,
			"--state", f.work.state, "--data", f.work.data}, extra...)
	}
	total := len(deletes) + len(unchanged) + 1

	t.Run("same policy changes nothing", func(t *testing.T) {
		code, stdout, stderr := keygateRun(t, f.work.dir, "", args(f.work.policies)...)
		if code != 0 || !strings.Contains(stdout, "No decision changes") {
			t.Fatalf("exit %d, want 0:\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("text", func(t *testing.T) {
		code, stdout, stderr := keygateRun(t, f.work.dir, "", args(cand)...)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s%s", code, stdout, stderr)
		}
		for _, want := range []string{"allow→deny", "200→400", "team-demo", "delete", doomed.Key.ID, gone.DecisionID, deletes[0]} {
			if !strings.Contains(stdout, want) {
				t.Errorf("text report lacks %q:\n%s", want, stdout)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := keygateRun(t, f.work.dir, "", args(cand, "--format", "json")...)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s%s", code, stdout, stderr)
		}
		var rep replayJSON
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		if rep.Decisions != total || rep.Replayed != total-1 || rep.Changed != len(deletes) || rep.Unchanged != total-1-len(deletes) {
			t.Errorf("counts %+v, want %d decisions, %d changed", rep, total, len(deletes))
		}
		if rep.DeletedKeys.Decisions != 1 || !slices.Equal(rep.DeletedKeys.Keys, []string{doomed.Key.ID}) ||
			!slices.Equal(rep.DeletedKeys.Examples, []string{gone.DecisionID}) {
			t.Errorf("deleted keys %+v, want %s in %s", rep.DeletedKeys, doomed.Key.ID, gone.DecisionID)
		}
		var changed []string
		for _, g := range rep.Groups {
			if g.Service != "team-demo" || g.Permission != "delete" || !g.From.Allow || g.To.Allow || g.To.Status != http.StatusBadRequest || g.To.Code != "method_forbidden" {
				t.Errorf("unexpected group %+v", g)
			}
			changed = append(changed, g.Examples...)
		}
		slices.Sort(changed)
		want := slices.Sorted(slices.Values(deletes))
		if !slices.Equal(changed, want) {
			t.Errorf("changed decisions %v, want exactly %v", changed, want)
		}
	})
	t.Run("help", func(t *testing.T) {
		code, stdout, stderr := keygateRun(t, f.work.dir, "", "replay", "--help")
		for _, want := range []string{"Usage: keygate replay", "-log", "-policies", "-state", "-format", "Exit status"} {
			if code != 0 || !strings.Contains(stdout+stderr, want) {
				t.Errorf("exit %d, help lacks %q:\n%s%s", code, want, stdout, stderr)
			}
		}
		if code, _, stderr := keygateRun(t, f.work.dir, "", "replay"); code != 2 || !strings.HasPrefix(stderr, "keygate replay: missing required flag --log") {
			t.Errorf("replay without --log: exit %d\n%s", code, stderr)
		}
	})
	t.Run("errors exit 2", func(t *testing.T) {
		broken := filepath.Join(f.work.dir, "broken")
		if err := os.MkdirAll(broken, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(broken, "x.rego"), []byte("package content\n\ndecision := \n"))
		malformed := filepath.Join(f.work.dir, "malformed.jsonl")
		writeFile(t, malformed, []byte("{\"decisionId\": \n"))
		for name, a := range map[string][]string{
			"no such log":      {"replay", "--log", filepath.Join(f.work.dir, "nowhere.jsonl"), "--policies", cand, "--state", f.work.state, "--data", f.work.data},
			"broken candidate": args(broken),
			"malformed line":   {"replay", "--log", malformed, "--policies", cand, "--state", f.work.state, "--data", f.work.data},
			"bad format":       args(cand, "--format", "yaml"),
		} {
			if code, stdout, stderr := keygateRun(t, f.work.dir, "", a...); code != 2 {
				t.Errorf("%s: exit %d, want 2:\n%s%s", name, code, stdout, stderr)
			}
		}
	})
}
