package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
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
