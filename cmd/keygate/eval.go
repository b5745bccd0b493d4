package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/route"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// evalCmd evaluates one decision from an input document, for debugging a
// policy edit without a running server.
func evalCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", `Usage: keygate eval --input FILE [--entrypoint content|management|keys|data.x.y] [--policies DIR]

Evaluates one entrypoint against the input document in FILE ("-" for stdin)
and prints the decision object. The input is the policy input as the server
builds it (see policies/README.md): keys are given in the input, no key store
is consulted. For content and management, request.route, request.contentId
and request.parameters are filled in from request.path and request.query
when absent, as the server parses them. Exits 1 when the decision denies or
is undefined.`, stderr)
	inputPath := fs.String("input", "", "input document (JSON); - for stdin")
	entrypoint := fs.String("entrypoint", "content", "content, management, keys, or a full data.… reference")
	policies := fs.String("policies", "policies", "directory of Rego policies")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	if err := checkArgs(fs, args, "input"); err != nil {
		return err
	}
	var raw []byte
	var err error
	if *inputPath == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(*inputPath)
	}
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	var doc any
	if err := util.UnmarshalJSON(raw, &doc); err != nil {
		return fmt.Errorf("input %s: %w", *inputPath, err)
	}
	ep := *entrypoint
	if ep == "content" || ep == "management" {
		addRoute(doc, ep)
	}
	in, err := ast.InterfaceToValue(doc)
	if err != nil {
		return fmt.Errorf("input %s: %w", *inputPath, err)
	}
	switch ep {
	case "content", "management", "keys":
		ep = "data." + ep + ".decision"
	}
	if !strings.HasPrefix(ep, "data.") {
		return usagef(fs, "invalid value %q for flag -entrypoint: want content, management, keys or a data.… reference", ep)
	}
	set, err := engine.Load(ctx, *policies, []string{ep})
	if err != nil {
		return err
	}
	d, err := set.Decide(ctx, ep, in, 0)
	if err != nil {
		fmt.Fprintf(stderr, "deny: %v\n", err)
		return exitError{1}
	}
	v, err := ast.JSON(d.Value)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"revision": d.Revision, "decision": v}); err != nil {
		return err
	}
	_, _ = stdout.Write(buf.Bytes())
	if allow, _ := v.(map[string]any)["allow"].(bool); !allow {
		return exitError{1}
	}
	return nil
}

// addRoute fills in what the server derives from the path and query of a
// content or management request (internal/route), when the input leaves it
// out: a hand-written input then needs only method, path and query.
func addRoute(doc any, api string) {
	in, ok := doc.(map[string]any)
	if !ok {
		return
	}
	req, ok := in["request"].(map[string]any)
	if !ok {
		return
	}
	path, ok := req["path"].(string)
	if !ok {
		return
	}
	var query [][2]string
	if q, ok := req["query"].(map[string]any); ok {
		for k, v := range q {
			if s, ok := v.(string); ok {
				query = append(query, [2]string{k, s})
			}
		}
		slices.SortFunc(query, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	}
	parse := route.Content
	if api == "management" {
		parse = route.Management
	}
	rt, routed := parse(path)
	if _, ok := req["route"]; !ok && routed {
		r := map[string]any{"endpoint": rt.Endpoint}
		if rt.Kind != "" {
			r["kind"] = rt.Kind
		}
		if rt.Pattern != "" {
			r["pattern"] = rt.Pattern
		}
		req["route"] = r
	}
	if _, ok := req["contentId"]; !ok {
		req["contentId"] = rt.ContentID
	}
	if _, ok := req["parameters"]; !ok {
		names := []any{}
		for _, n := range route.Parameters(query) {
			names = append(names, n)
		}
		req["parameters"] = names
	}
}
