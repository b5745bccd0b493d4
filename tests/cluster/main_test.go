package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/tests/gateway/runnertest"
	"github.com/keygate/keygate/tests/gateway/stack"
)

var build stack.TestBuild

func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(m, "cluster", &build)) }

// TestDemo runs the demo once with -check: three replicas and nginx come up,
// a key created on replica 0 is allowed by every replica and through nginx,
// and after a delete on the last replica every replica and nginx refuse it.
func TestDemo(t *testing.T) {
	stack.RequireNginx(t)
	pgtest.Require(t)
	var out, errs bytes.Buffer
	if err := run(t.Context(), []string{"-check", "-exit", "-keygate", build.Binary}, &out, &errs); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errs.String())
	}
	text := out.String()
	for _, want := range []string{
		"replica 0: allow=true status 200", "replica 1: allow=true status 200", "replica 2: allow=true status 200",
		"through nginx, request 0: 200", "through nginx, request 1: 200", "through nginx, request 2: 200",
		"replica 0: allow=false status 401", "replica 1: allow=false status 401", "replica 2: allow=false status 401",
		"through nginx after the delete: 401",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
}

// TestRunner starts the cluster runner as `go run ./tests/cluster` would, runs the commands it
// prints as printed (once, with bash: the key is allowed on every replica and through nginx, and
// refused through nginx after the delete), and ends it each way a terminal, a service manager or
// a killed `go run` ends it: nginx, every replica, PostgreSQL and the runner must all be gone.
func TestRunner(t *testing.T) {
	stack.RequireNginx(t)
	pgtest.Require(t)
	bin := runnertest.Build(t, build.Root, "./tests/cluster")
	for _, how := range runnertest.All {
		t.Run(string(how), func(t *testing.T) {
			r := runnertest.Start(t, how, build.Root, bin, "-keygate", build.Binary)
			if how == runnertest.SIGTERM {
				checkPrintedCommands(t, r)
			}
			r.Stop(t, time.Minute)
		})
	}
}

// checkPrintedCommands runs the commands the runner printed, as printed, with bash.
func checkPrintedCommands(t *testing.T, r *runnertest.Runner) {
	t.Helper()
	script := r.Script()
	out, err := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("printed commands failed: %v\n--- script\n%s\n--- output\n%s", err, script, out)
	}
	text := string(out)
	if n := strings.Count(text, `"allow":true`); n != 3 {
		t.Errorf("%d replicas allowed the new key, want 3:\n%s", n, text)
	}
	for _, want := range []string{"created key_", "\n200\n204\n", "\n401\n", `"store"`} {
		if !strings.Contains(text, want) {
			t.Errorf("output of the printed commands lacks %q:\n%s", want, text)
		}
	}
}
