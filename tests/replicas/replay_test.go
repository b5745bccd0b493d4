package replicas

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// keygateCmd runs the keygate binary with args and returns its exit status
// and output.
func keygateCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), build.Binary, args...)
	cmd.Env = stack.Environ()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// withoutDelete copies policies to a candidate whose content decision never
// grants the delete permission.
func withoutDelete(t *testing.T, policies string) string {
	t.Helper()
	cand := filepath.Join(t.TempDir(), "candidate")
	if err := os.CopyFS(cand, os.DirFS(policies)); err != nil {
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
	edited := strings.Replace(string(b), grant, "\ngranted if {\n\teffective_permissions[permission] == true\n\tpermission != \"delete\"\n}\n", 1)
	if err := os.WriteFile(p, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	return cand
}

// TestReplayFromPostgres: keygate replay --store reads the keys the
// replicas share: a log recorded on a replica, replayed against a candidate
// without the delete permission, reports exactly the allowed DELETEs and the
// key deleted since; the database is not written (same head, change rows
// and migrations); a database without keygate's schema is refused (exit 2)
// and left without one.
func TestReplayFromPostgres(t *testing.T) {
	c := newCluster(t)
	logDir := t.TempDir()
	decisionLog := filepath.Join(logDir, "decisions.jsonl")
	a := c.start(t, 1, "--decision-log", decisionLog)[0]

	writerSpec := map[string]any{"name": "writer", "contentApi": map[string]any{"default": map[string]any{"get": true, "delete": true}}}
	newKey := func(service string) created {
		rep := mustCall(t, http.MethodPost, a.URL+"/v1/services/"+service+"/keys", adminToken(service), writerSpec)
		if rep.status != http.StatusCreated {
			t.Fatalf("create: %s", rep)
		}
		return decodeCreated(t, rep.body)
	}
	writer, doomed := newKey("team-demo"), newKey("hobby-demo")
	decide := func(service, method, path, secret string) string {
		t.Helper()
		rep := mustCall(t, http.MethodPost, a.URL+"/v1/decide", "", map[string]any{"service": service, "method": method, "path": path, "apiKey": secret})
		var d struct {
			DecisionID string `json:"decisionId"`
		}
		if err := json.Unmarshal(rep.body, &d); rep.status != http.StatusOK || err != nil || d.DecisionID == "" {
			t.Fatalf("decide: %s %v", rep, err)
		}
		return d.DecisionID
	}
	deletes := []string{decide("team-demo", "DELETE", "/api/v1/blogs/a", writer.Secret), decide("team-demo", "DELETE", "/api/v1/news/b", writer.Secret)}
	decide("team-demo", "GET", "/api/v1/blogs", writer.Secret)
	decide("team-demo", "GET", "/api/v1/blogs", "team-demo-read-key")
	gone := decide("hobby-demo", "DELETE", "/api/v1/blogs/a", doomed.Secret)
	a.deleteKey(t, "hobby-demo", doomed.ID)
	if err := a.Stop(); err != nil { // flushes the decision log
		t.Fatal(err)
	}

	var head, changes, versions int64
	snapshot := func() [3]int64 {
		c.query(t, `SELECT revision, (SELECT count(*) FROM changes), (SELECT count(*) FROM schema_migrations) FROM head`, nil, &head, &changes, &versions)
		return [3]int64{head, changes, versions}
	}
	before := snapshot()
	cand := withoutDelete(t, a.cfg.Policies)
	replay := func(store, policies string, extra ...string) (int, string, string) {
		return keygateCmd(t, append([]string{"replay", "--store", store, "--log", decisionLog, "--policies", policies, "--data", a.cfg.Data}, extra...)...)
	}

	t.Run("same policy changes nothing", func(t *testing.T) {
		if code, stdout, stderr := replay(c.url, a.cfg.Policies); code != 0 || !strings.Contains(stdout, "No decision changes") {
			t.Fatalf("exit %d, want 0:\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("candidate without delete", func(t *testing.T) {
		code, stdout, stderr := replay(c.url, cand, "--format", "json")
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s%s", code, stdout, stderr)
		}
		var rep struct {
			Decisions, Replayed, Changed int
			DeletedKeys                  struct {
				Keys     []string `json:"keys"`
				Examples []string `json:"examples"`
			} `json:"deletedKeys"`
			Groups []struct {
				Examples []string `json:"examples"`
			} `json:"groups"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		var changed []string
		for _, g := range rep.Groups {
			changed = append(changed, g.Examples...)
		}
		slices.Sort(changed)
		slices.Sort(deletes)
		if rep.Decisions != 5 || rep.Replayed != 4 || rep.Changed != 2 || !slices.Equal(changed, deletes) {
			t.Errorf("report %+v (changed %v), want 5 decisions, 4 replayed, exactly %v changed", rep, changed, deletes)
		}
		if !slices.Equal(rep.DeletedKeys.Keys, []string{doomed.ID}) || !slices.Equal(rep.DeletedKeys.Examples, []string{gone}) {
			t.Errorf("deleted keys %+v, want %s in %s", rep.DeletedKeys, doomed.ID, gone)
		}
	})
	if after := snapshot(); after != before {
		t.Fatalf("replay wrote to the database: head, changes, migrations %v before, %v after", before, after)
	}

	t.Run("--state and --store together refused", func(t *testing.T) {
		code, stdout, stderr := replay(c.url, a.cfg.Policies, "--state", filepath.Join(logDir, "state.json"))
		if code != 2 || !strings.Contains(stderr, "give one") {
			t.Fatalf("exit %d, want 2:\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("database without schema refused, not migrated", func(t *testing.T) {
		name, url, err := c.pg.NewNamedDatabase(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := replay(url, a.cfg.Policies)
		if code != 2 || !strings.Contains(stderr, "no keygate schema") {
			t.Fatalf("exit %d, want 2 and \"no keygate schema\":\n%s%s", code, stdout, stderr)
		}
		empty := &cluster{pg: c.pg, dbName: name, url: url}
		var tables int
		empty.query(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`, nil, &tables)
		if tables != 0 {
			t.Fatalf("replay left %d tables in an empty database", tables)
		}
	})
}
