package reload

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDataEdits edits data/services.json under a running server: a
// malformed edit leaves the previous services serving and is reported, a
// valid edit takes effect, and restoring the file recovers.
func TestDataEdits(t *testing.T) {
	s := startServer(t, "--debounce=30ms")
	services := filepath.Join(s.data, "services.json")
	members := filepath.Join(s.data, "members.json")
	original, originalMembers := readFile(t, services), readFile(t, members)
	const errors = `keygate_reloads_total{kind="data",result="error"}`

	waitData := func(t *testing.T, since time.Time, result string) health {
		t.Helper()
		h, _ := s.waitHealth(t, "data reload "+result, func(h health) bool {
			return h.Data.LastAttempt.After(since) && h.Data.LastResult == result
		})
		return h
	}

	t.Run("malformed services.json keeps the previous data", func(t *testing.T) {
		before := s.metric(t, errors)
		at := time.Now()
		// Drop the closing bracket: truncated JSON.
		writeFile(t, services, bytes.TrimRight(bytes.TrimSpace(original), "]"))
		h := waitData(t, at, "error")
		if !strings.Contains(h.Data.LastError, "services.json") || !strings.HasPrefix(h.Status, "degraded") {
			t.Errorf("/health = %+v, want the services.json error and a degraded status", h)
		}
		if p := s.policyStatus(t); p.Data.LastResult != "error" || p.Data.LastError == "" {
			t.Errorf("/v1/policies data = %+v, want the error", p.Data)
		}
		if d := s.mustDecide(t, readKeyGET); !d.Allow {
			t.Errorf("decision with a malformed services.json on disk = %+v, want allowed by the previous data", d)
		}
		if got := s.metric(t, errors); got < before+1 {
			t.Errorf("%s = %v, want at least %v", errors, got, before+1)
		}
	})

	t.Run("a wrong field type names the line", func(t *testing.T) {
		at := time.Now()
		writeFile(t, services, bytes.Replace(original, []byte(`"plan": "team"`), []byte(`"plan": 3`), 1))
		h := waitData(t, at, "error")
		line := lineOf(original, `"plan": "team"`)
		if !strings.Contains(h.Data.LastError, "line "+itoa(line)) {
			t.Errorf("data error %q does not name line %d", h.Data.LastError, line)
		}
		if d := s.mustDecide(t, readKeyGET); !d.Allow {
			t.Errorf("decision = %+v, want allowed by the previous data", d)
		}
	})

	t.Run("valid edit removing the service takes effect", func(t *testing.T) {
		// Members first: members of an unknown service are an error. A
		// reload that starts after both writes reads both.
		writeFile(t, members, withoutLines(originalMembers, `"team-demo"`))
		writeFile(t, services, withoutLines(original, `"team-demo"`))
		waitData(t, time.Now(), "ok")
		if d := s.mustDecide(t, readKeyGET); d.Allow {
			t.Errorf("decision for a removed service = %+v, want a deny", d)
		}
	})

	t.Run("restoring the file recovers", func(t *testing.T) {
		writeFile(t, services, original)
		writeFile(t, members, originalMembers)
		h := waitData(t, time.Now(), "ok")
		if h.Status != "ok" || h.Data.LastError != "" {
			t.Errorf("/health after the fix = %+v", h)
		}
		if d := s.mustDecide(t, readKeyGET); !d.Allow {
			t.Errorf("decision after the fix = %+v, want allowed", d)
		}
	})
}

// withoutLines drops the lines of b that contain needle (one JSON array
// element per line in the shipped data files).
func withoutLines(b []byte, needle string) []byte {
	var kept []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, needle) {
			kept = append(kept, l)
		}
	}
	return []byte(strings.Join(kept, "\n"))
}
