package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks checks every relative link of README.md and docs/: the file exists and, for a
// Markdown file, the #anchor names one of its headings (as GitHub makes anchors from headings).
func TestLinks(t *testing.T) {
	anchors := map[string]map[string]bool{}
	headingsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, err := os.ReadFile(filepath.Join(build.Root, path))
		if err == nil {
			fence := false
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "```") {
					fence = !fence
				}
				if !fence && strings.HasPrefix(l, "#") {
					a[slug(strings.TrimLeft(l, "#"))] = true
				}
			}
		}
		anchors[path] = a
		return a
	}
	for _, file := range markdownFiles(t, build.Root) {
		b, err := os.ReadFile(filepath.Join(build.Root, file))
		if err != nil {
			t.Fatal(err)
		}
		fence := false
		for n, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fence = !fence
			}
			if fence {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, anchor, _ := strings.Cut(target, "#")
				if path == "" {
					path = file
				} else {
					path = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), path)))
				}
				if _, err := os.Stat(filepath.Join(build.Root, path)); err != nil {
					t.Errorf("%s:%d: link %s: %v", file, n+1, target, err)
					continue
				}
				if anchor != "" && strings.HasSuffix(path, ".md") && !headingsOf(path)[anchor] {
					t.Errorf("%s:%d: link %s: no heading makes #%s in %s", file, n+1, target, anchor, path)
				}
			}
		}
	}
}

// slug is GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces as -.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		" Replay (`keygate replay`)":         "replay-keygate-replay",
		" 5. Ship a signed bundle":           "5-ship-a-signed-bundle",
		" Envoy ext_authz (HTTP service)":    "envoy-ext_authz-http-service",
		" POST /v1/decide":                   "post-v1decide",
		" data.network — API IP restriction": "datanetwork--api-ip-restriction",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}
