package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogDurationsInMilliseconds: on the real binary, the logs give how
// long a request or a reload took as took_ms, a number of milliseconds,
// never a Go duration in nanoseconds.
func TestLogDurationsInMilliseconds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.do(t, http.MethodGet, "/v1/policies", nil) // access-logged
	writeFile(t, filepath.Join(f.work.policies, "extra.rego"), []byte("package extra\n\nx := 1\n"))
	services := filepath.Join(f.work.data, "services.json")
	tmp := filepath.Join(f.work.dir, "services.json.new")
	writeFile(t, tmp, []byte(strings.Replace(readFile(t, services), `"plan": "hobby"`, `"plan": "team"`, 1)))
	if err := os.Rename(tmp, services); err != nil {
		t.Fatal(err)
	}
	if r := f.do(t, http.MethodPost, "/v1/policies/reload", nil); r.status != http.StatusOK {
		t.Fatalf("reload: %s", r)
	}
	f.stopGracefully(t)

	timed := map[string]int{}
	for _, line := range strings.Split(readFile(t, f.work.stderr), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if _, ok := entry["took"]; ok {
			t.Errorf("a duration logged as took: %s", line)
		}
		if v, ok := entry["took_ms"]; ok {
			if ms, isNumber := v.(float64); !isNumber || ms < 0 || ms > 60_000 {
				t.Errorf("took_ms is not a plausible number of milliseconds: %s", line)
			}
			timed[entry["msg"].(string)]++
		}
	}
	for _, msg := range []string{"request", "policy loaded", "data reloaded"} {
		if timed[msg] == 0 {
			t.Errorf("no %q line with took_ms (timed lines: %v)", msg, timed)
		}
	}
}
