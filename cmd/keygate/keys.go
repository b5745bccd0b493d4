package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// keysCmd dispatches `keygate keys <subcommand>`.
func keysCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 0:
		return usageError{cmd: "keys", msg: "missing command: keygate keys import-legacy"}
	case args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
		fmt.Fprint(stdout, "Usage: keygate keys <command> [flags]\n\nCommands:\n")
		for _, c := range commands {
			if sub, ok := strings.CutPrefix(c.name, "keys "); ok {
				fmt.Fprintf(stdout, "  %-15s %s\n", sub, c.summary)
			}
		}
		fmt.Fprint(stdout, "\nRun 'keygate keys <command> -h' for a command's examples and flags.\n")
		return flag.ErrHelp
	case args[0] != "import-legacy":
		return unknownCommand("keys", args[0])
	}
	return importLegacy(ctx, args[1:], getenv, stdout, stderr)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// legacyFile is the --file format, and the body of POST
// /v1/services/{service}/legacy-keys.
type legacyFile struct {
	Keys []struct {
		Header string `json:"header"`
		Value  string `json:"value"`
		Name   string `json:"name,omitempty"`
	} `json:"keys"`
	WriteMethods map[string][]string `json:"writeMethods,omitempty"`
}

func importLegacy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys import-legacy", `Usage: keygate keys import-legacy --service ID --token TOKEN [flags]

Imports a microCMS service's old API keys (services created up to 2021-10-22) into a
running keygate as X-MICROCMS-API-KEY keys with the same values, through the admin API
(POST /v1/services/{service}/legacy-keys): X-API-KEY → GET only; X-GLOBAL-DRAFT-KEY → GET
and getAllDrafts; X-WRITE-API-KEY → every default off, its per-API write methods as
individual permissions. Each create is authorized and plan-limited like any other; a value
that is already a key of the service is reported as "exists" and left alone, so a re-run is
safe. Prefer --file to flags for the values: a command line is visible to other users.

Every flag can also be set as KEYGATE_<FLAG> (KEYGATE_TOKEN, KEYGATE_URL, …).`, stderr)
	var (
		service, token, base, file string
		apiKeys, writeKeys         multiFlag
		draftKeys, methods         multiFlag
	)
	fs.StringVar(&service, "service", "", "the service the keys belong to (required)")
	fs.StringVar(&token, "token", "", "an admin member's bearer token of that service (required)")
	fs.StringVar(&base, "url", "http://localhost:8181", "keygate's base URL")
	fs.StringVar(&file, "file", "", `JSON file {"keys": [{"header": "X-API-KEY", "value": "…", "name": "…"}], "writeMethods": {"blogs": ["POST", "PUT"]}}`)
	fs.Var(&apiKeys, "api-key", "an old X-API-KEY value (repeatable)")
	fs.Var(&writeKeys, "write-key", "an old X-WRITE-API-KEY value (repeatable)")
	fs.Var(&draftKeys, "draft-key", "an old X-GLOBAL-DRAFT-KEY value (repeatable)")
	fs.Var(&methods, "write-methods", "an API's old write methods for the write keys, ENDPOINT=METHOD[,METHOD…] (repeatable), e.g. blogs=POST,PUT")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	if err := checkArgs(fs, args, "service", "token"); err != nil {
		return err
	}
	var body legacyFile
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	add := func(header string, values []string) {
		for _, v := range values {
			body.Keys = append(body.Keys, struct {
				Header string `json:"header"`
				Value  string `json:"value"`
				Name   string `json:"name,omitempty"`
			}{Header: header, Value: v})
		}
	}
	add("X-API-KEY", apiKeys)
	add("X-WRITE-API-KEY", writeKeys)
	add("X-GLOBAL-DRAFT-KEY", draftKeys)
	for _, m := range methods {
		api, list, ok := strings.Cut(m, "=")
		if !ok || api == "" {
			return fmt.Errorf("--write-methods %q: want ENDPOINT=METHOD[,METHOD…]", m)
		}
		if body.WriteMethods == nil {
			body.WriteMethods = map[string][]string{}
		}
		for _, v := range strings.Split(list, ",") {
			if v = strings.ToUpper(strings.TrimSpace(v)); v != "" {
				body.WriteMethods[api] = append(body.WriteMethods[api], v)
			}
		}
	}
	if len(body.Keys) == 0 {
		return errors.New("no old key given: use --api-key, --write-key, --draft-key or --file")
	}
	payload, err := json.Marshal(&body)
	if err != nil {
		return err
	}
	u := strings.TrimRight(base, "/") + "/v1/services/" + url.PathEscape(service) + "/legacy-keys"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("import: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(rb, &p)
		return fmt.Errorf("import refused: %d %s: %s", resp.StatusCode, p.Code, p.Detail)
	}
	var out struct {
		Results []struct {
			Index  int    `json:"index"`
			Header string `json:"header"`
			Result string `json:"result"`
			Key    *struct {
				ID string `json:"id"`
			} `json:"key"`
			Problem *struct {
				Status int    `json:"status"`
				Code   string `json:"code"`
				Detail string `json:"detail"`
				Limit  int    `json:"limit"`
			} `json:"problem"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return fmt.Errorf("import: decode answer: %w", err)
	}
	refused := 0
	for _, r := range out.Results {
		switch {
		case r.Key != nil:
			fmt.Fprintf(stdout, "%-8s #%d %-18s %s\n", r.Result, r.Index, r.Header, r.Key.ID)
		case r.Problem != nil:
			refused++
			fmt.Fprintf(stdout, "%-8s #%d %-18s %d %s: %s\n", r.Result, r.Index, r.Header, r.Problem.Status, r.Problem.Code, r.Problem.Detail)
		}
	}
	if refused > 0 {
		return exitError{1}
	}
	return nil
}
