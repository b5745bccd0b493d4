package replicas

import (
	"bytes"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// TestMigrateFromState moves a single-node state file into PostgreSQL:
// keygate migrate --from-state imports every key (with its secret hash and
// the services' key counts), a replica on the database serves them, and a
// second import into a database that holds keys is refused. The state's IP
// restriction settings come along.
func TestMigrateFromState(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state", "state.json")
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	single := startReplica(t, "single", stack.KeygateConfig{
		Binary: build.Binary, Dir: dir, Port: port, State: state,
		Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
		Args: []string{"--decision-log", "off", "--watch=false"}, LogPath: filepath.Join(dir, "single.log"),
	})
	k1 := single.createKey(t, "team-demo")
	k2 := single.createKey(t, "team-demo")
	k2 = single.rotateKey(t, "team-demo", k2.ID)
	want := single.keySet(t, "team-demo")
	ipSetting := map[string]any{"default": []string{"203.0.113.0/24"}, "apis": map[string]any{"blogs": []string{"2001:db8::1"}}}
	if rep := single.putIP(t, "business-demo", ipSetting); rep.status != http.StatusOK {
		t.Fatalf("PUT ip restrictions on the single node: %s", rep)
	}
	migrate := func(args ...string) (int, string) {
		cmd := exec.Command(build.Binary, append([]string{"migrate", "--store", c.url,
			"--data", filepath.Join(dir, "data"), "--policies", filepath.Join(dir, "policies")}, args...)...)
		cmd.Env = stack.Environ()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	// The single node still runs: its directory lock refuses the import
	// (nothing may write the state while it is read), and nothing is
	// imported.
	if code, out := migrate("--from-state", state); code != 1 || !strings.Contains(out, "in use") {
		t.Fatalf("import while the single node runs: exit %d, output:\n%s\nwant exit 1 and \"in use\"", code, out)
	}
	if err := single.Stop(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"import", []string{"--from-state", state}, 0, "imported 3 keys from " + state + " (1 IP restriction settings, 3 audit trail entries)"},
		{"again refused", []string{"--from-state", state}, 1, "already holds 3 keys"},
		{"schema only, idempotent", nil, 0, "database already seeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := migrate(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.out)
			}
		})
	}

	r := c.start(t, 1)[0]
	if got := r.keySet(t, "team-demo"); !slices.Equal(got, want) {
		t.Fatalf("keys on PostgreSQL %v, single node had %v", got, want)
	}
	// The single node's audit trail came along.
	wantTrail := strings.Join([]string{
		"rotate allowed OK team-demo-admin " + k2.ID,
		"create allowed Created team-demo-admin " + k2.ID,
		"create allowed Created team-demo-admin " + k1.ID,
	}, "\n")
	if got := r.trail(t, "team-demo"); got != wantTrail {
		t.Fatalf("audit trail on PostgreSQL:\n%s\nwant\n%s", got, wantTrail)
	}
	for _, secret := range []string{"team-demo-read-key", k1.Secret, k2.Secret} {
		if d := r.mustDecide(t, "team-demo", secret); !d.Allow {
			t.Fatalf("imported key refused: %+v", d)
		}
	}
	// The IP restriction setting came along from the state's side file.
	if rep := mustCall(t, http.MethodGet, r.URL+"/v1/services/business-demo/ip-restrictions", adminToken("business-demo"), nil); rep.status != http.StatusOK ||
		!bytes.Contains(rep.body, []byte(`"default":["203.0.113.0/24"]`)) || !bytes.Contains(rep.body, []byte(`"blogs":["2001:db8::1"]`)) {
		t.Fatalf("IP restrictions on PostgreSQL after the import: %s", rep)
	}
	rep := mustCall(t, http.MethodPost, r.URL+"/v1/services/team-demo/keys", adminToken("team-demo"), readSpec)
	if rep.status != http.StatusConflict {
		t.Fatalf("create over the team limit after the import: %s, want 409", rep)
	}
}
