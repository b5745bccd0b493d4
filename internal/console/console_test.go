package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/console"
)

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

// TestHeaders: every console answer, page, script, style, string table and
// a 404, carries the security headers and its exact MIME type.
func TestHeaders(t *testing.T) {
	h, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, contentType string
		status            int
	}{
		{"/console/", "text/html; charset=utf-8", 200},
		{"/console/services/team-demo/keys", "text/html; charset=utf-8", 200},
		{"/console/app.js", "text/javascript; charset=utf-8", 200},
		{"/console/app.css", "text/css; charset=utf-8", 200},
		{"/console/i18n/en.js", "text/javascript; charset=utf-8", 200},
		{"/console/i18n/ja.js", "text/javascript; charset=utf-8", 200},
		{"/console/missing.js", "text/plain; charset=utf-8", 404},
		{"/console/../go.mod", "text/plain; charset=utf-8", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res := get(t, h, tc.path)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			want := map[string]string{
				"Content-Type":            tc.contentType,
				"Content-Security-Policy": console.ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
			}
			for k, v := range want {
				if got := res.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestPolicy: the policy has no unsafe source, forbids <base>, framing and
// foreign connections, and enforces Trusted Types with no policy.
func TestPolicy(t *testing.T) {
	csp := console.ContentSecurityPolicy
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "http:", "https:"} {
		if strings.Contains(csp, bad) {
			t.Errorf("policy contains %q", bad)
		}
	}
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"img-src 'self' data:", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
		"require-trusted-types-for 'script'", "trusted-types 'none'"} {
		if !strings.Contains(csp, d+";") && !strings.HasSuffix(csp, d) {
			t.Errorf("policy lacks %q", d)
		}
	}
}

// TestRelativeURLs: the page refers to its assets relative to the console's
// root at any depth, so that a proxy may serve it under any prefix.
func TestRelativeURLs(t *testing.T) {
	h, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, root string }{
		{"/console/", `src="./app.js"`},
		{"/console/services", `src="./app.js"`},
		{"/console/services/team-demo/keys", `src="../../app.js"`},
		{"/console/services/team-demo/audit/", `src="../../../app.js"`},
	} {
		res := get(t, h, tc.path)
		b, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(b), tc.root) {
			t.Errorf("%s: page lacks %s:\n%s", tc.path, tc.root, b)
		}
		if strings.Contains(string(b), `="/`) {
			t.Errorf("%s: page has an absolute URL", tc.path)
		}
	}
}

// TestNoMarkupSinks: the script builds the page with DOM calls only; a sink
// that parses markup would be refused by Trusted Types at run time, and is
// refused here before that.
func TestNoMarkupSinks(t *testing.T) {
	h, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(get(t, h, "/console/app.js").Body)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage.setItem", "document.cookie"} {
		if strings.Contains(string(b), sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}

// TestStringTables: the English and Japanese tables hold the same strings,
// so that no label falls back to English (or to its key) in Japanese.
func TestStringTables(t *testing.T) {
	h, err := console.New()
	if err != nil {
		t.Fatal(err)
	}
	keys := func(lang string) map[string]bool {
		b, _ := io.ReadAll(get(t, h, "/console/i18n/"+lang+".js").Body)
		out := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "//") && !strings.ContainsAny(k, " '\"") {
				out[k] = true
			}
		}
		if len(out) < 50 {
			t.Fatalf("%s: only %d strings found", lang, len(out))
		}
		return out
	}
	en, ja := keys("en"), keys("ja")
	for k := range en {
		if !ja[k] {
			t.Errorf("ja lacks %s", k)
		}
	}
	for k := range ja {
		if !en[k] {
			t.Errorf("en lacks %s", k)
		}
	}
}
