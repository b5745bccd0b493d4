package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/runnertest"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// TestRunner starts the demo runner as `go run ./tests/gateway` would, runs the commands it
// prints as printed (once, with bash), and ends it each way a terminal, a service manager or a
// killed `go run` ends it: nginx, keygate and the runner itself must all be gone afterwards.
func TestRunner(t *testing.T) {
	stack.RequireNginx(t)
	bin := runnertest.Build(t, build.Root, "./tests/gateway")
	for _, how := range runnertest.All {
		t.Run(string(how), func(t *testing.T) {
			r := runnertest.Start(t, how, build.Root, bin, "-keygate", build.Binary)
			if how == runnertest.SIGTERM {
				checkPrintedCommands(t, r)
			}
			r.Stop(t, 30*time.Second)
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
	for _, want := range []string{
		"HTTP/1.1 200", `{"message":"X-MICROCMS-API-KEY header is invalid."}`, `{"message":"POST is forbidden."}`,
		`{"message":"Forbidden"}`, "draft-1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output of the printed commands lacks %q:\n%s", want, text)
		}
	}
}
