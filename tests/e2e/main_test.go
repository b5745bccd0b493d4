// Package e2e tests keygate end to end: each test builds nothing itself but
// starts the real binary (built once by TestMain, or named by KEYGATE_BIN) on
// a free port, with temp copies of policies/ and data/ and a temp state file,
// and talks HTTP to it.
//
// The binary is started by tests/gateway/stack, the launcher the gateway
// tests and runner use too; the helpers in keygate_test.go give it these
// tests' layout: the decision log in a file of its own, stderr apart from
// stdout, extra flags and environment, and the exit status.
package e2e

import (
	"os"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

var (
	// root is the module root (policies/, data/).
	root string
	// binary is the keygate built for this run.
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(stack.MainWithKeygate("e2e", func(b stack.TestBuild) int {
		root, binary = b.Root, b.Binary
		return m.Run()
	}))
}
