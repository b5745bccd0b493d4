// Package e2e tests keygate end to end: each test builds nothing itself but
// starts the real binary (built once by TestMain) on a free port, with temp
// copies of policies/ and data/ and a temp state file, and talks HTTP to it.
//
// The binary is started by the helpers in keygate_test.go, which reuse
// tests/gateway/stack for finding the module root, building and picking a
// port; they start the process themselves because these tests also need the
// decision log in a file of its own, stderr apart from stdout, extra flags and
// environment, and the exit status.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/stack"
)

var (
	// root is the module root (policies/, data/).
	root string
	// binary is the keygate built for this run.
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	if root, err = stack.FindRoot("."); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if binary, err = stack.BuildKeygate(ctx, root, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}
