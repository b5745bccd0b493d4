package decision

import (
	"errors"
	"strings"
	"testing"
)

// TestReplayRefusesTextTheEdgeRefuses: a logged line holding text that
// /v1/decide refuses at its edge (a NUL, a lone surrogate) is not
// replayed, whichever field holds it; the same line without it is.
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
		{note: "NUL in a query value", edit: func(e *LoggedDecision) { e.Query["limit"] = "1\x000" }},
		{note: "NUL in a query name", edit: func(e *LoggedDecision) { e.Query["li\x00mit"] = "1" }},
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
