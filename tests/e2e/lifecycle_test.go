package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// TestRestart: SIGTERM stops keygate with exit 0, and a keygate started on
// the same state has every acknowledged write: created and updated keys,
// the rotated secret (not the old one), and no deleted key.
func TestRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const svc = "business-demo"
	admin := bearer(adminToken(svc))

	kept := f.createKey(t, svc, keySpec("kept", perms{"get": true}, nil, nil))
	rotated := f.createKey(t, svc, keySpec("rotated", perms{"get": true}, nil, nil))
	newSecret := f.rotateKey(t, svc, rotated.Key.ID).Secret
	deleted := f.createKey(t, svc, keySpec("deleted", perms{"get": true}, nil, nil))
	if r := f.do(t, http.MethodDelete, keysPath(svc, deleted.Key.ID), nil, admin...); r.status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	updated := f.createKey(t, svc, keySpec("before", perms{"get": true}, nil, nil))
	if r := f.do(t, http.MethodPut, keysPath(svc, updated.Key.ID), keySpec("after", perms{"get": true, "getAllClosed": true}, nil, nil), admin...); r.status != http.StatusOK {
		t.Fatalf("update: %s", r)
	}
	before, _ := f.listKeys(t, svc)
	teamBefore, _ := f.listKeys(t, "team-demo")
	firstRun := f.Keygate

	f.restart(t)
	if f.Keygate == firstRun || firstRun.PID() == f.PID() {
		t.Fatal("restart did not start a new process")
	}
	log := readFile(t, f.work.stderr)
	if !strings.Contains(log, `"msg":"shutting down"`) || !strings.Contains(log, `"msg":"stopped"`) {
		t.Errorf("no graceful shutdown in the log:\n%s", log)
	}

	after, _ := f.listKeys(t, svc)
	if !slices.EqualFunc(before, after, sameKey) {
		t.Errorf("keys changed across the restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if teamAfter, _ := f.listKeys(t, "team-demo"); !slices.EqualFunc(teamBefore, teamAfter, sameKey) {
		t.Errorf("the seed keys changed across the restart:\nbefore %+v\nafter  %+v", teamBefore, teamAfter)
	}
	cases := []struct {
		note   string
		secret string
		allow  bool
		closed bool
	}{
		{"created key", kept.Secret, true, false},
		{"rotated key, new secret", newSecret, true, false},
		{"rotated key, old secret", rotated.Secret, false, false},
		{"deleted key", deleted.Secret, false, false},
		{"updated key", updated.Secret, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			d := f.decide(t, contentReq(svc, "GET", "/api/v1/blogs", tc.secret))
			if d.Allow != tc.allow || d.Visibility.Closed != tc.closed || (!tc.allow && d.Status != http.StatusUnauthorized) {
				t.Errorf("after the restart: %+v, want allow=%v closed=%v", d, tc.allow, tc.closed)
			}
		})
	}
	f.do(t, http.MethodGet, keysPath(svc, deleted.Key.ID), nil, admin...).problem(t, http.StatusNotFound, "key_not_found")
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", demoReadKey)); !d.Allow {
		t.Errorf("the demo key after the restart: %+v", d)
	}
}

// TestSIGINT: Ctrl-C stops keygate as gracefully as SIGTERM.
func TestSIGINT(t *testing.T) {
	t.Parallel()
	w := newWorkDir(t)
	k := startKeygate(t, w)
	err := k.StopWith(syscall.SIGINT)
	if code := k.ExitCode(); err != nil || code != 0 {
		t.Fatalf("SIGINT: exit %d, %v\n%s", code, err, readFile(t, w.stderr))
	}
}

// TestBusyPort: a keygate told to listen on a taken port fails at once,
// saying which address. The configuration comes from KEYGATE_* here.
func TestBusyPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	w := newWorkDir(t)
	cfg := w.config()
	cfg.Env = []string{"KEYGATE_ADDR=" + addr, "KEYGATE_POLICIES=" + w.policies, "KEYGATE_DATA=" + w.data,
		"KEYGATE_STATE=" + w.state, "KEYGATE_DECISION_LOG=" + w.decisionLog}
	code, elapsed := runToExit(t, cfg, 20*time.Second)
	log := readFile(t, w.stderr)
	if code == 0 {
		t.Fatalf("keygate on a busy port exited 0:\n%s", log)
	}
	if !strings.Contains(log, "listen on "+addr) || !strings.Contains(log, "address already in use") {
		t.Errorf("the message does not say which address is busy:\n%s", log)
	}
	if elapsed > 10*time.Second {
		t.Errorf("took %s to fail", elapsed)
	}
}

// TestEnvironment: every serve flag can come from KEYGATE_<FLAG>, and a
// flag on the command line wins over the environment.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkDir(t)
	state := filepath.Join(w.dir, "env-state", "keys.json")
	cfg := w.config()
	cfg.Env = []string{"KEYGATE_ADDR=" + busy.Addr().String(), "KEYGATE_POLICIES=" + w.policies, "KEYGATE_DATA=" + w.data,
		"KEYGATE_STATE=" + state, "KEYGATE_DECISION_LOG=" + w.decisionLog, "KEYGATE_LOG_LEVEL=warn"}
	cfg.Port = port // `serve --addr 127.0.0.1:port`, the only flag
	f := &fixture{work: w, secrets: map[string]bool{demoReadKey: true}}
	f.Keygate = startConfig(t, cfg)
	t.Cleanup(func() { f.finish(t) })

	c := f.createKey(t, "team-demo", keySpec("env", perms{"get": true}, nil, nil))
	if d := f.decide(t, contentReq("team-demo", "GET", "/api/v1/blogs", c.Secret)); !d.Allow {
		t.Errorf("decision: %+v", d)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("KEYGATE_STATE was not used: %v", err)
	}
	if log := readFile(t, w.stderr); strings.Contains(log, `"level":"INFO"`) {
		t.Errorf("KEYGATE_LOG_LEVEL=warn was not used:\n%s", log)
	}
}

// runToExit launches keygate as cfg says, runs it to its end (killing it
// by PID after timeout) and returns its exit code and how long it ran.
func runToExit(t *testing.T, cfg stack.KeygateConfig, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	k, err := stack.LaunchKeygate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	code, err := k.Wait(ctx)
	if err != nil {
		t.Fatalf("keygate serve still running after %s: %v", timeout, err)
	}
	return code, time.Since(start)
}

// TestInvalidSeedKey: a seed key in data/keys.json with getAllDrafts but
// no get is refused by the keys policy at start-up, and keygate exits
// naming the file, the key and the flag instead of serving.
func TestInvalidSeedKey(t *testing.T) {
	t.Parallel()
	w := newWorkDir(t)
	keys := `[{"id":"bad-seed","service":"team-demo","name":"bad","secret":"bad-seed-secret",` +
		`"contentApi":{"default":{"get":true},"individual":{"blogs":{"getAllDrafts":true}}}}]`
	if err := os.WriteFile(filepath.Join(w.data, "keys.json"), []byte(keys), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := w.config()
	cfg.Args = []string{"--addr", "127.0.0.1:0", "--policies", w.policies, "--data", w.data, "--state", w.state}
	code, _ := runToExit(t, cfg, 20*time.Second)
	log := readFile(t, w.stderr)
	if code == 0 {
		t.Fatalf("keygate started with an invalid seed key:\n%s", log)
	}
	for _, want := range []string{"keys.json", "[0].contentApi.individual.blogs.getAllDrafts", "getAllDrafts requires get"} {
		if !strings.Contains(log, want) {
			t.Errorf("start-up error does not name %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "bad-seed-secret") {
		t.Errorf("the seed secret appears in the log:\n%s", log)
	}
}
