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
	"fmt"
	"os"
	"testing"

	"github.com/keygate/keygate/tests/gateway/stack"
)

// build is the module root (policies/, data/) and the keygate binary of this
// run.
var build stack.TestBuild

func TestMain(m *testing.M) { os.Exit(stack.MainWithKeygate(coverageRun{m}, "e2e", &build)) }

// coverageRun runs the tests, then writes the OpenAPI coverage report when
// one is asked for (contract_test.go).
type coverageRun struct{ m *testing.M }

func (r coverageRun) Run() int {
	code := r.m.Run()
	if err := apiContract.writeCoverage(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: OpenAPI coverage: %v\n", err)
		return 1
	}
	return code
}
