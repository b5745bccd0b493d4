package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// UnavailableCode is the code of every decision an engine makes before its
// first policy set loaded (Options.StartUnavailable).
const UnavailableCode = "policy_unavailable"

// unavailableSet compiles the stand-in an engine serves until its first
// policy loads: every entrypoint decides a deny with status 503 and code
// UnavailableCode. Its revision is empty, which /health reports as no
// policy loaded. Callers need no special case: every decision is a deny in
// the decision contract's own shape.
func unavailableSet(ctx context.Context, entrypoints []string) (*PolicySet, error) {
	rules := map[string][]string{} // package path -> rule names
	for _, ep := range entrypoints {
		ref := strings.TrimPrefix(ep, "data.")
		i := strings.LastIndexByte(ref, '.')
		if ref == ep || i <= 0 {
			return nil, fmt.Errorf("entrypoint %q: want data.<package>.<rule>", ep)
		}
		rules[ref[:i]] = append(rules[ref[:i]], ref[i+1:])
	}
	modules := make(map[string]*ast.Module, len(rules))
	files := make([]string, 0, len(rules))
	for pkg, names := range rules {
		var src strings.Builder
		fmt.Fprintf(&src, "package %s\n\n", pkg)
		for _, name := range slices.Compact(slices.Sorted(slices.Values(names))) {
			fmt.Fprintf(&src, "%s := {\"allow\": false, \"status\": 503, \"code\": %q, \"message\": \"No policy is loaded yet.\"}\n", name, UnavailableCode)
		}
		file := "unavailable/" + pkg + ".rego"
		m, err := ast.ParseModuleWithOpts(file, src.String(), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("stand-in policy: %w", err)
		}
		modules[file] = m
		files = append(files, file)
	}
	set, err := compileSet(ctx, "stand-in", modules, map[string]any{}, "", nil, entrypoints)
	if err != nil {
		return nil, fmt.Errorf("stand-in policy: %w", err)
	}
	return set, nil
}
