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

// TestParseServeBundle: the bundle flags' combinations, and where the
// serving bundle is cached.
func TestParseServeBundle(t *testing.T) {
	for _, tc := range []struct {
		note  string
		args  []string
		env   map[string]string
		want  string // "" for accepted
		cache string // the cache directory of an accepted configuration
	}{
		{note: "defaults", args: []string{"--bundle", "file:///b.tar.gz"}, cache: ".keygate/bundle"},
		{note: "cache beside the state", args: []string{"--bundle", "file:///b.tar.gz", "--state", "/var/lib/keygate/state.json"}, cache: "/var/lib/keygate/bundle"},
		{note: "cache directory", args: []string{"--bundle", "file:///b.tar.gz", "--bundle-cache-dir", "/cache"}, cache: "/cache"},
		{note: "cache off", args: []string{"--bundle", "file:///b.tar.gz", "--bundle-cache-dir", "off"}, cache: ""},
		{note: "max bytes from the environment", args: []string{"--bundle", "file:///b.tar.gz"}, env: map[string]string{"KEYGATE_BUNDLE_MAX_BYTES": "0"}, want: "--bundle-max-bytes 0"},
		{note: "negative max bytes", args: []string{"--bundle-max-bytes", "-1"}, want: "want a positive number"},
		{note: "algorithm without a key", args: []string{"--bundle-verification-key-alg", "HS256"}, want: "without --bundle-verification-key"},
		{note: "algorithm from the environment without a key", env: map[string]string{"KEYGATE_BUNDLE_VERIFICATION_KEY_ALG": "HS256"}, want: "without --bundle-verification-key"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			cfg, err := parseServe(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			case tc.want == "":
				if got := cfg.lifecycle.cacheDir(cfg.state); got != tc.cache {
					t.Errorf("cache directory %q, want %q", got, tc.cache)
				}
			}
		})
	}
}
