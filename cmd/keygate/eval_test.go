package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalKeyShape: a key written as data/keys.json writes it, or without
// its service, is judged as the server judges that key (the server's keys
// always carry their service); an input whose service is not the object the
// server builds is refused with a message naming the field, never decided.
func TestEvalKeyShape(t *testing.T) {
	policies, err := filepath.Abs(filepath.Join("..", "..", "policies"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		svc     = `"service":{"id":"team-demo","plan":"team"}`
		request = `"request":{"method":"GET","path":"/api/v1/blogs","query":{}}`
	)
	for _, tc := range []struct {
		note   string
		input  string
		code   int
		status float64 // of the decision printed; 0 when none is printed
		stderr string
	}{
		{"key without service takes the input's", `{` + svc + `,"key":{"id":"k","contentApi":{"default":{"get":true}}},` + request + `}`, 0, 200, ""},
		{"key as in data/keys.json", `{` + svc + `,"key":{"id":"team-demo-read","service":"team-demo","name":"Demo read-only key","contentApi":{"default":{"get":true},"individual":{}},"managementApi":{}},` + request + `}`, 0, 200, ""},
		{"key of another service stays another service's", `{` + svc + `,"key":{"id":"k","service":"hobby-demo","contentApi":{"default":{"get":true}}},` + request + `}`, 1, 401, ""},
		{"no key is an unknown key", `{` + svc + `,` + request + `}`, 1, 401, ""},
		{"service as a string is refused", `{"service":"team-demo","key":{"contentApi":{"default":{"get":true}}},` + request + `}`, 1, 0, `input.service must be an object`},
		{"service without id is refused", `{"service":{"plan":"team"},"key":{"contentApi":{"default":{"get":true}}},` + request + `}`, 1, 0, `input.service.id`},
	} {
		t.Run(tc.note, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "input.json")
			if err := os.WriteFile(in, []byte(tc.input), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"eval", "--input", in, "--policies", policies}, func(string) string { return "" }, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			if tc.status == 0 {
				if stdout.Len() != 0 {
					t.Errorf("a refused input printed a decision: %s", stdout.String())
				}
				return
			}
			var out struct {
				Decision struct {
					Status float64 `json:"status"`
				} `json:"decision"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("stdout is not a decision: %v\n%s", err, stdout.String())
			}
			if out.Decision.Status != tc.status {
				t.Errorf("status %v, want %v\n%s", out.Decision.Status, tc.status, stdout.String())
			}
		})
	}
}
