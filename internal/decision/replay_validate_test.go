package decision

import (
	"errors"
	"strings"
	"testing"
)

// TestReplayRefusesTextTheEdgeRefuses: a logged line is validated as
// /v1/decide validates a request: a NUL where /v1/decide never takes one
// (method, service, client address) is not replayed; a NUL the log
// writes for a path's %00 (path, query) is.
func TestReplayRefusesTextTheEdgeRefuses(t *testing.T) {
	line := func(edit func(*LoggedDecision)) *LoggedDecision {
		e := &LoggedDecision{Service: "team-demo", API: APIContent, Method: "GET", Path: "/api/v1/blogs",
			Query: map[string]string{"limit": "10"}}
		if edit != nil {
			edit(e)
		}
		return e
	}
	cases := []struct {
		note string
		edit func(*LoggedDecision)
		ok   bool
	}{
		{note: "clean line", ok: true},
		{note: "NUL in the method", edit: func(e *LoggedDecision) { e.Method = "G\x00ET" }},
		{note: "NUL in the service", edit: func(e *LoggedDecision) { e.Service = "team\x00demo" }},
		// A path's %00 decodes to a NUL, which the log writes exactly:
		// such a line is replayed as it was asked.
		{note: "NUL in a query value (a path's %00)", edit: func(e *LoggedDecision) { e.Query["limit"] = "1\x000" }, ok: true},
		{note: "NUL in a query name (a path's %00)", edit: func(e *LoggedDecision) { e.Query["li\x00mit"] = "1" }, ok: true},
		{note: "NUL in the path (a path's %00)", edit: func(e *LoggedDecision) { e.Path = "/api/v1/blogs/a\x00b" }, ok: true},
		{note: "NUL in the client address", edit: func(e *LoggedDecision) { e.ClientIP = "10.0.0.1\x00" }},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			_, err := replayRequest(line(tc.edit))
			if tc.ok {
				if err != nil {
					t.Fatalf("replayRequest: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotReplayable) {
				t.Fatalf("replayRequest: %v, want ErrNotReplayable", err)
			}
			if strings.ContainsRune(err.Error(), 0) {
				t.Errorf("error %q carries the NUL it refused", err)
			}
		})
	}
}
