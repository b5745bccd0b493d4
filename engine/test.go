package engine

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestSummary counts the outcomes of a Rego test run.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// OK reports whether the run had at least one test and no failure or error.
func (s TestSummary) OK() bool { return s.Passed > 0 && s.Failed == 0 && s.Errored == 0 }

// RunTests runs the Rego tests (rules named test_*) under dir in-process,
// with the same strict compiler the server uses, and writes an `opa test`
// style report to w. filter, when non-empty, is a regular expression on test
// names. It returns an error only when the tests could not be run at all.
func RunTests(ctx context.Context, dir, filter string, verbose bool, w io.Writer) (TestSummary, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return TestSummary{}, fmt.Errorf("run tests %s: %w", dir, err)
	}
	skip := func(_ string, info fs.FileInfo, depth int) bool {
		if info.IsDir() {
			return depth > 0 && strings.HasPrefix(info.Name(), ".")
		}
		return !IsPolicyFile(info.Name())
	}
	modules, store, err := tester.LoadWithRegoVersion([]string{root}, skip, ast.RegoV1)
	if err != nil {
		return TestSummary{}, fmt.Errorf("load %s: %w", dir, err)
	}
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithStrict(true).WithEnablePrintStatements(true)).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		SetDefaultRegoVersion(ast.RegoV1).
		Filter(filter)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return TestSummary{}, fmt.Errorf("run tests %s: %w", dir, err)
	}
	var sum TestSummary
	results := make(chan *tester.Result, 64)
	done := make(chan error, 1)
	go func() {
		done <- tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true, LocalVars: true}.Report(results)
	}()
	for r := range ch {
		switch {
		case r.Error != nil:
			sum.Errored++
		case r.Fail:
			sum.Failed++
		case r.Skip:
			sum.Skipped++
		default:
			sum.Passed++
		}
		results <- r
	}
	close(results)
	if err := <-done; err != nil {
		return sum, fmt.Errorf("report: %w", err)
	}
	return sum, nil
}
