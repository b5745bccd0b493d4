package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
when absent, as the server parses them. For content and management, input
"service" must be the object the server builds ({"id": …, "plan": …}), and
a key without "service" is taken to be a key of that service (the server's
keys always carry theirs). Exits 1 when the decision denies or is undefined.

Example (a file, or stdin with --input -):
  {"service": {"id": "team-demo", "plan": "team"},
   "key": {"id": "k1", "contentApi": {"default": {"get": true}}},
   "request": {"method": "GET", "path": "/api/v1/blogs", "query": {}}}`, stderr)
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
		if err := addKeyService(doc); err != nil {
			return fmt.Errorf("input %s: %w", *inputPath, err)
		}
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

// addKeyService checks that input.service is the object the server builds
// and gives a key without a service that service: the server only ever
// passes keys with their service, and the policies deny a key whose service
// differs (401), so a hand-written key that leaves it out would be judged
// as another service's key without a word.
func addKeyService(doc any) error {
	in, ok := doc.(map[string]any)
	if !ok {
		return errors.New("the input must be a JSON object")
	}
	raw, present := in["service"]
	if !present {
		return nil // an unknown service: the policies deny, as the server's would
	}
	svc, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf(`input.service must be an object {"id": "team-demo", "plan": "team"} as the server builds it, not %s (a /v1/decide request names the service by id; the policy input carries the service itself)`, jsonKind(raw))
	}
	id, ok := svc["id"].(string)
	if !ok || id == "" {
		return errors.New(`input.service.id must be the service id, a non-empty string`)
	}
	if key, ok := in["key"].(map[string]any); ok {
		if _, has := key["service"]; !has {
			key["service"] = id
		}
	}
	return nil
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
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
