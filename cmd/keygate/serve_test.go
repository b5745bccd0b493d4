package main

import (
	"io"
	"strings"
	"testing"
)

// TestParseServeStaleness: the staleness bounds must be consistent, so that a
// replica is drained (not ready) before it fails decisions closed.
func TestParseServeStaleness(t *testing.T) {
	for _, tc := range []struct {
		note string
		args []string
		want string // "" for accepted
	}{
		{"defaults", nil, ""},
		{"ready before stale", []string{"--ready-max-staleness", "5s", "--max-staleness", "10s"}, ""},
		{"equal", []string{"--ready-max-staleness", "10s", "--max-staleness", "10s"}, ""},
		{"never fail closed", []string{"--ready-max-staleness", "2m", "--max-staleness", "0"}, ""},
		{"ready longer than stale", []string{"--ready-max-staleness", "20s", "--max-staleness", "10s"}, "longer than --max-staleness"},
		{"negative max", []string{"--max-staleness", "-1s"}, "must not be negative"},
		{"zero ready", []string{"--ready-max-staleness", "0"}, "must be positive"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			_, err := parseServe(tc.args, func(string) string { return "" }, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
