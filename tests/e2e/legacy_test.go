package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Old microCMS key values (they were UUID-like) for the legacy tests.
const (
	oldReadKey  = "0d7c1a2e-legacy-read-4b7f-9c1e"
	oldDraftKey = "5e2f9b10-legacy-draft-41aa-8d3c"
	oldWriteKey = "9a41c7d2-legacy-write-4e0b-b6f1"
)

var importLine = regexp.MustCompile(`(?m)^(created|exists|refused)\s+#(\d+)\s+(\S+)\s+(.*)$`)

// importResults runs `keygate keys import-legacy` against f with args and
// returns its exit code and result per line ("created", "exists" or
// "refused ...").
func (f *fixture) importLegacy(t *testing.T, service string, args ...string) (int, []string, string) {
	t.Helper()
	f.addSecret(adminToken(service))
	all := append([]string{"keys", "import-legacy", "--url", f.URL, "--service", service, "--token", adminToken(service)}, args...)
	code, stdout, stderr := keygateRun(t, t.TempDir(), "", all...)
	var results []string
	for _, m := range importLine.FindAllStringSubmatch(stdout, -1) {
		results = append(results, m[1]+" "+m[3]+" "+m[4])
	}
	return code, results, stdout + stderr
}

// TestLegacyImportAndHeaders: old keys imported through the CLI (mapped by the legacy
// policy, created through the plan-limited write path, idempotent), then used with the
// old headers on /v1/decide and /v1/forward-auth under --legacy-headers.
func TestLegacyImportAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "--legacy-headers")
	for _, s := range []string{oldReadKey, oldDraftKey, oldWriteKey} {
		f.addSecret(s)
	}

	file := filepath.Join(t.TempDir(), "old-keys.json")
	if err := os.WriteFile(file, []byte(`{"keys": [{"header": "X-GLOBAL-DRAFT-KEY", "value": "`+oldDraftKey+`", "name": "preview"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--api-key", oldReadKey, "--write-key", oldWriteKey, "--write-methods", "blogs=POST,PUT", "--write-methods", "contact=post", "--file", file}
	code, res, out := f.importLegacy(t, "business-demo", args...)
	if code != 0 || len(res) != 3 {
		t.Fatalf("import: exit %d, results %q:\n%s", code, res, out)
	}
	for _, r := range res {
		if !strings.HasPrefix(r, "created ") {
			t.Errorf("first import: %q, want created", r)
		}
	}
	keys, _ := f.listKeys(t, "business-demo")
	byName := map[string]apiKey{}
	for _, k := range keys {
		byName[k.Name] = k
	}
	if k := byName["Migrated X-API-KEY"]; !k.ContentAPI.Default["get"] || k.ContentAPI.Default["getAllDrafts"] || len(k.ContentAPI.Individual) != 0 {
		t.Errorf("X-API-KEY became %+v, want GET only", k)
	}
	if k := byName["preview"]; !k.ContentAPI.Default["get"] || !k.ContentAPI.Default["getAllDrafts"] {
		t.Errorf("X-GLOBAL-DRAFT-KEY became %+v, want GET + getAllDrafts", k)
	}
	w := byName["Migrated X-WRITE-API-KEY"]
	for flag, on := range w.ContentAPI.Default {
		if on {
			t.Errorf("X-WRITE-API-KEY default %s is on, want every default off", flag)
		}
	}
	if b := w.ContentAPI.Individual["blogs"]; !b["post"] || !b["put"] || b["get"] || b["patch"] || !w.ContentAPI.Individual["contact"]["post"] {
		t.Errorf("X-WRITE-API-KEY individual = %v, want blogs POST+PUT, contact POST", w.ContentAPI.Individual)
	}

	t.Run("re-run is idempotent", func(t *testing.T) {
		code, res, out := f.importLegacy(t, "business-demo", args...)
		if code != 0 || len(res) != 3 {
			t.Fatalf("re-run: exit %d, %q:\n%s", code, res, out)
		}
		for _, r := range res {
			if !strings.HasPrefix(r, "exists ") {
				t.Errorf("re-run: %q, want exists", r)
			}
		}
		if again, _ := f.listKeys(t, "business-demo"); len(again) != len(keys) {
			t.Errorf("re-run changed the key count %d → %d", len(keys), len(again))
		}
	})

	t.Run("plan limit and authorization hold", func(t *testing.T) {
		code, res, out := f.importLegacy(t, "hobby-demo", "--api-key", "hobby-old-read-key-000000000001", "--api-key", "hobby-old-read-key-000000000002")
		if code != 1 || len(res) != 2 || !strings.HasPrefix(res[0], "created ") || !strings.Contains(res[1], "409 key_limit_exceeded") {
			t.Errorf("hobby import: exit %d, %q, want one created and one 409:\n%s", code, res, out)
		}
		f.addSecret(editorToken("business-demo"))
		code, _, out = keygateRun(t, t.TempDir(), "", "keys", "import-legacy", "--url", f.URL, "--service", "business-demo",
			"--token", editorToken("business-demo"), "--api-key", "editor-old-read-key-0000000001")
		if code != 1 || !strings.Contains(out, "403 forbidden") {
			t.Errorf("editor import: exit %d:\n%s", code, out)
		}
		code, res, out = f.importLegacy(t, "business-demo", "--api-key", "short", "--write-key", oldWriteKey+"x", "--write-methods", "blogs=GET")
		if code != 1 || len(res) != 2 || !strings.Contains(res[0], "400 invalid_legacy_key") || !strings.Contains(res[1], "422 invalid_legacy_key") {
			t.Errorf("invalid import: exit %d, %q:\n%s", code, res, out)
		}
	})

	legacy := func(method, path string, headers map[string]string) decision {
		return f.decide(t, map[string]any{"service": "business-demo", "method": method, "path": path, "headers": headers})
	}
	t.Run("decide with old headers", func(t *testing.T) {
		for _, tc := range []struct {
			note, method, path string
			headers            map[string]string
			status             int
			message            string
			drafts             bool
		}{
			{"X-API-KEY reads, published only", "GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey}, 200, "", false},
			{"with X-GLOBAL-DRAFT-KEY: drafts", "GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey, "X-GLOBAL-DRAFT-KEY": oldDraftKey}, 200, "", true},
			{"the draft key as X-API-KEY shows no drafts", "GET", "/api/v1/blogs", map[string]string{"x-api-key": oldDraftKey}, 200, "", false},
			{"X-GLOBAL-DRAFT-KEY alone", "GET", "/api/v1/blogs", map[string]string{"X-GLOBAL-DRAFT-KEY": oldDraftKey}, 401, "X-API-KEY header is invalid.", false},
			{"an invalid X-GLOBAL-DRAFT-KEY", "GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey, "X-GLOBAL-DRAFT-KEY": "nope-nope-nope-nope"}, 401, "X-GLOBAL-DRAFT-KEY header is invalid.", false},
			{"X-WRITE-API-KEY writes its methods", "POST", "/api/v1/blogs", map[string]string{"X-WRITE-API-KEY": oldWriteKey}, 200, "", false},
			{"X-WRITE-API-KEY: a method it never had", "PATCH", "/api/v1/blogs/a", map[string]string{"X-WRITE-API-KEY": oldWriteKey}, 400, "PATCH is forbidden.", false},
			{"a write needs X-WRITE-API-KEY", "POST", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey}, 401, "X-WRITE-API-KEY header is invalid.", false},
			{"a read needs X-API-KEY", "GET", "/api/v1/blogs", map[string]string{"X-WRITE-API-KEY": oldWriteKey}, 401, "X-API-KEY header is invalid.", false},
			{"old and new header together", "GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey, "X-MICROCMS-API-KEY": oldReadKey}, 401, invalidKeyMessage, false},
			{"old keys of two services", "GET", "/api/v1/blogs", map[string]string{"X-API-KEY": oldReadKey, "X-GLOBAL-DRAFT-KEY": "hobby-old-read-key-000000000001"}, 401, invalidKeyMessage, false},
			{"the migrated key with the new header", "GET", "/api/v1/blogs", map[string]string{"X-MICROCMS-API-KEY": oldReadKey}, 200, "", false},
		} {
			d := legacy(tc.method, tc.path, tc.headers)
			if d.Status != tc.status || d.Message != tc.message || d.Visibility.Drafts != tc.drafts {
				t.Errorf("%s: %d %q drafts=%v (code %s), want %d %q drafts=%v", tc.note, d.Status, d.Message, d.Visibility.Drafts, d.Code,
					tc.status, tc.message, tc.drafts)
			}
			if tc.status == 200 && d.KeyID == "" {
				t.Errorf("%s: no keyId", tc.note)
			}
		}
	})

	t.Run("forward-auth with old headers", func(t *testing.T) {
		nginx := []string{"X-Original-Method", "GET", "X-Original-URI", "/api/v1/blogs", "X-Forwarded-Host", "business-demo.microcms.io"}
		r := f.do(t, http.MethodGet, "/v1/forward-auth", nil, append(nginx, "X-API-KEY", oldReadKey, "X-GLOBAL-DRAFT-KEY", oldDraftKey)...)
		if r.status != http.StatusOK || r.header.Get("X-Keygate-Drafts") != "true" {
			t.Errorf("forward-auth with old read + draft keys: %d drafts=%s", r.status, r.header.Get("X-Keygate-Drafts"))
		}
		f.addDecision(r.header.Get("X-Keygate-Decision-Id"))
		r = f.do(t, http.MethodGet, "/v1/forward-auth", nil, append(nginx, "X-WRITE-API-KEY", oldWriteKey)...)
		if r.status != http.StatusUnauthorized || r.header.Get("X-Keygate-Message") != "X-API-KEY header is invalid." {
			t.Errorf("forward-auth read with the write key: %d %s", r.status, r.header.Get("X-Keygate-Message"))
		}
		f.addDecision(r.header.Get("X-Keygate-Decision-Id"))
	})
}

// TestLegacyHeadersOffByDefault: without --legacy-headers an old header is no key.
func TestLegacyHeadersOffByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	d := f.decide(t, map[string]any{"service": "team-demo", "method": "GET", "path": "/api/v1/blogs", "headers": map[string]string{"X-API-KEY": demoReadKey}})
	if d.Status != 401 || d.Code != "invalid_api_key" || d.Message != invalidKeyMessage {
		t.Errorf("X-API-KEY without --legacy-headers: %+v, want 401", d)
	}
}
