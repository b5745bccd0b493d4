package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keygate/keygate/engine"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// evalCmd evaluates one decision from an input document, for debugging a
// policy edit without a running server.
func evalCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", `Usage: keygate eval --input FILE [--entrypoint content|management|keys|data.x.y] [--policies DIR]

Evaluates one entrypoint against the input document in FILE ("-" for stdin)
and prints the decision object. The input is the policy input exactly as the
server builds it (see policies/README.md): keys are given in the input, no
key store is consulted. Exits 1 when the decision denies or is undefined.`, stderr)
	inputPath := fs.String("input", "", "input document (JSON); - for stdin")
	entrypoint := fs.String("entrypoint", "content", "content, management, keys, or a full data.… reference")
	policies := fs.String("policies", "policies", "directory of Rego policies")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	if *inputPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitError{2}
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
	in, err := ast.InterfaceToValue(doc)
	if err != nil {
		return fmt.Errorf("input %s: %w", *inputPath, err)
	}
	ep := *entrypoint
	switch ep {
	case "content", "management", "keys":
		ep = "data." + ep + ".decision"
	}
	if !strings.HasPrefix(ep, "data.") {
		return fmt.Errorf("entrypoint %q: want content, management, keys or data.…", ep)
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
