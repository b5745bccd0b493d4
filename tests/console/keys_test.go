package console

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// openAdd opens the create dialog from the key list of service.
func (f *fixture) openAdd(service string) {
	f.t.Helper()
	f.signIn("services/"+service+"/keys", adminToken(service))
	f.wait("key list", `document.querySelector('#keys')`)
	f.clickButton("Add")
	f.wait("create dialog", `document.querySelector('dialog[open] h2') && norm(document.querySelector('dialog[open] h2').textContent) === 'Add API key'`)
}

// TestCreateKey: a key made with default, individual and management
// permissions does exactly what was ticked (asked of /v1/decide); its secret
// is shown once, in a dialog that Escape does not close, and is gone from
// the page after Done.
func TestCreateKey(t *testing.T) { forEachStore(t, testCreateKey) }

func testCreateKey(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.openAdd("business-demo")
	f.fill("Name", "website")
	f.tick("Default permissions", "GET")
	f.clickButton("Add individual permission")
	f.wait("individual group", `group("Individual permissions")`)
	eval[bool](f, `setValue(field("API", group("Individual permissions")), "blogs")`)
	f.tick("Individual permissions", "POST")
	f.tick("Individual permissions", "PUT")
	f.clickButton("Management API (beta)")
	f.tick("Management API permissions", "Get media")
	f.clickButton("Content API")
	// The advice of the policy's dry run: blogs is writable.
	f.wait("advice", `all('[role="status"] li').some((li) => li.textContent.includes('"blogs" is writable'))`)
	f.screenshot("console-create.png")
	f.clickButton("Create")

	f.wait("secret dialog", `document.querySelector('#secret-dialog[open]')`)
	secret := eval[string](f, `document.querySelector('#secret-value').textContent`)
	if len(secret) < 20 {
		t.Fatalf("secret %q", secret)
	}
	if w := eval[string](f, `norm(document.querySelector('#secret-dialog .warning').textContent)`); !strings.Contains(w, "will not be shown again") {
		t.Errorf("secret warning = %q", w)
	}
	// Escape does not close it before Done.
	f.do(chromedp.KeyEvent(kb.Escape))
	time.Sleep(200 * time.Millisecond)
	if !eval[bool](f, `!!document.querySelector('#secret-dialog[open]')`) {
		t.Fatal("Escape closed the secret dialog before Done")
	}
	f.grantClipboard()
	f.clickButton("Copy")
	f.wait("copied", `all('[role="status"]').some((s) => s.textContent === 'Copied to the clipboard.')`)
	if got := eval[string](f, `navigator.clipboard.readText()`); got != secret {
		t.Errorf("clipboard holds %q, want the secret", got)
	}
	f.clickButton("Done")
	f.wait("secret dialog gone", `!document.querySelector('#secret-dialog')`)
	gone := eval[map[string]bool](f, fmt.Sprintf(`({dom: document.documentElement.outerHTML.includes(%[1]q),
		session: JSON.stringify(sessionStorage).includes(%[1]q), local: JSON.stringify(localStorage).includes(%[1]q),
		url: location.href.includes(%[1]q), history: JSON.stringify(history.state || null).includes(%[1]q)})`, secret))
	for where, found := range gone {
		if found {
			t.Errorf("the secret is still in the page's %s", where)
		}
	}
	f.wait("row", `all('#keys tbody th').some((th) => th.textContent === 'website')`)
	f.wait("count", `norm(document.querySelector('#key-count').textContent) === '1 / 10 API keys'`)

	// The key does exactly what was ticked.
	for _, c := range []struct {
		api, method, path string
		want              bool
	}{
		{"content", "GET", "/api/v1/news", true},        // default GET
		{"content", "POST", "/api/v1/news", false},      // default has no POST
		{"content", "GET", "/api/v1/blogs", false},      // blogs' individual entry replaces the default
		{"content", "POST", "/api/v1/blogs", true},      // individual POST
		{"content", "PUT", "/api/v1/blogs/a", true},     // individual PUT
		{"content", "DELETE", "/api/v1/blogs/a", false}, // not ticked
		{"management", "GET", "/api/v1/media", true},    // Get media
		{"management", "GET", "/api/v1/members", false},
		{"management", "POST", "/api/v1/media", false},
	} {
		if got := f.decide("business-demo", c.api, c.method, c.path, secret); got != c.want {
			t.Errorf("%s %s %s: allow %v, want %v", c.api, c.method, c.path, got, c.want)
		}
	}
	k := f.keyNamed("business-demo", "website")
	var def map[string]bool
	_ = json.Unmarshal(k.ContentAPI["default"], &def)
	if !def["get"] || def["getAllDrafts"] || def["post"] {
		t.Errorf("default = %v", def)
	}

	// The search box filters by name.
	f.createKey("business-demo", "mobile-app", map[string]any{"contentApi": map[string]any{"default": map[string]bool{"get": true}}})
	f.createKey("business-demo", "preview", map[string]any{"contentApi": map[string]any{"default": map[string]bool{"get": true, "getAllDrafts": true}}})
	f.navigate(f.consoleURL("services/business-demo/keys"))
	f.wait("three rows", `all('#keys tbody tr').length === 3`)
	f.screenshot("console-keys.png")
	f.fill("Search by name", "MOB")
	f.wait("filtered", `all('#keys tbody tr').length === 1 && all('#keys tbody th')[0].textContent === 'mobile-app'`)
}

// TestViolation: get all drafts without GET is the policy's violation, shown
// as an alert in the Default permissions group; Create writes nothing (no
// key, no audit entry).
func TestViolation(t *testing.T) { forEachStore(t, testViolation) }

func testViolation(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	before := f.auditCount("business-demo")
	f.openAdd("business-demo")
	f.fill("Name", "drafts")
	f.tick("Default permissions", "Get all drafts")
	f.wait("violation", `group("Default permissions").querySelector('[role="alert"]') && group("Default permissions").querySelector('[role="alert"]').textContent.includes('getAllDrafts requires get')`)
	if !eval[bool](f, `field("Get all drafts", group("Default permissions")).getAttribute('aria-invalid') === 'true'`) {
		t.Error("the checkbox is not marked invalid")
	}
	f.clickButton("Create")
	time.Sleep(500 * time.Millisecond)
	if !eval[bool](f, `!!document.querySelector('#key-dialog[open]')`) {
		t.Fatal("the dialog closed on a refused configuration")
	}
	if l := f.keys("business-demo"); l.Count != 0 {
		t.Errorf("a key was written: %+v", l)
	}
	if n := f.auditCount("business-demo"); n != before {
		t.Errorf("audit entries %d -> %d: a dry run was audited", before, n)
	}
	// Ticking GET clears it.
	f.tick("Default permissions", "GET")
	f.wait("no violation", `!group("Default permissions").querySelector('[role="alert"]')`)
}

// TestAdvice: DELETE in the default permissions gets the policy's advice, as
// a status (not an alert).
func TestAdvice(t *testing.T) { forEachStore(t, testAdvice) }

func testAdvice(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.openAdd("business-demo")
	f.fill("Name", "writer")
	f.tick("Default permissions", "GET")
	f.tick("Default permissions", "DELETE")
	f.wait("advice", `all('dialog [role="status"] li').some((li) => li.textContent.includes('Every API is writable with this key (delete)'))`)
	if eval[bool](f, `all('dialog [role="alert"]').some((a) => a.textContent.trim() !== '')`) {
		t.Error("advice shown as an alert")
	}
}

// TestEditRotateDelete: the row buttons carry the key's name; Edit saves a
// new configuration, Rotate (confirmed) kills the old secret at once, Delete
// needs the key's name typed.
func TestEditRotateDelete(t *testing.T) { forEachStore(t, testEditRotateDelete) }

func testEditRotateDelete(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	_, oldSecret := f.createKey("business-demo", "website", map[string]any{"contentApi": map[string]any{"default": map[string]bool{"get": true}}})
	f.signIn("services/business-demo/keys", adminToken("business-demo"))
	f.wait("row", `button("Edit website")`)

	f.clickButton("Edit website")
	f.wait("edit dialog", `document.querySelector('#key-dialog[open]')`)
	if !eval[bool](f, `field("GET", group("Default permissions")).checked`) {
		t.Error("the edit dialog does not show the key's GET")
	}
	f.fill("Name", "website-2")
	f.tick("Default permissions", "PATCH")
	f.clickButton("Save")
	f.wait("saved", `button("Edit website-2")`)
	var def map[string]bool
	_ = json.Unmarshal(f.keyNamed("business-demo", "website-2").ContentAPI["default"], &def)
	if !def["get"] || !def["patch"] {
		t.Errorf("after edit, default = %v", def)
	}

	f.clickButton("Rotate website-2")
	f.wait("confirm", `document.querySelector('#rotate-dialog[open]') && document.querySelector('#rotate-dialog').textContent.includes('stops working at once')`)
	f.clickButton("Rotate key")
	f.wait("secret dialog", `document.querySelector('#secret-dialog[open]')`)
	newSecret := eval[string](f, `document.querySelector('#secret-value').textContent`)
	f.clickButton("Done")
	if f.decide("business-demo", "content", "GET", "/api/v1/news", oldSecret) {
		t.Error("the old secret still works after rotation")
	}
	if !f.decide("business-demo", "content", "GET", "/api/v1/news", newSecret) {
		t.Error("the new secret does not work")
	}

	f.clickButton("Delete website-2")
	f.wait("delete dialog", `field("Type the key name to confirm")`)
	f.fill("Type the key name to confirm", "website")
	if !eval[bool](f, `button("Delete key").disabled`) {
		t.Error("Delete key is enabled with a wrong name")
	}
	f.fill("Type the key name to confirm", "website-2")
	f.wait("enabled", `!button("Delete key").disabled`)
	f.clickButton("Delete key")
	f.wait("row gone", `!document.querySelector("dialog[open]") && document.querySelector("#keys") && !button("Delete website-2")`)
	if l := f.keys("business-demo"); l.Count != 0 {
		t.Errorf("after delete: %+v", l)
	}
}

// TestPlanLimit: at the plan's limit Add is disabled and says why.
func TestPlanLimit(t *testing.T) { forEachStore(t, testPlanLimit) }

func testPlanLimit(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.createKey("hobby-demo", "only", nil)
	f.signIn("services/hobby-demo/keys", adminToken("hobby-demo"))
	f.wait("count", `norm(document.querySelector('#key-count').textContent) === '1 / 1 API keys'`)
	if !eval[bool](f, `document.querySelector('#add-key').disabled`) {
		t.Fatal("Add is enabled at the limit")
	}
	reason := eval[string](f, `document.getElementById(document.querySelector('#add-key').getAttribute('aria-describedby')).textContent`)
	if !strings.Contains(reason, "hobby plan allows 1 API keys") {
		t.Errorf("reason = %q", reason)
	}
}

// TestEditorSeesNoWriteControls: an editor sees the count and that only
// admins manage keys, and no Add, Edit, Rotate or Delete.
func TestEditorSeesNoWriteControls(t *testing.T) { forEachStore(t, testEditorSeesNoWriteControls) }

func testEditorSeesNoWriteControls(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.signIn("services/team-demo/keys", editorToken("team-demo"))
	f.wait("notice", `document.body.textContent.includes('Only admins of this service may create, edit and delete API keys.')`)
	if n := eval[int](f, `all('main button').filter((b) => /^(Add|Edit|Rotate|Delete)/.test(accName(b))).length`); n != 0 {
		t.Errorf("%d write controls shown to an editor", n)
	}
	if got := eval[string](f, `norm(document.querySelector('#key-count').textContent)`); got != "1 / 3 API keys" {
		t.Errorf("count = %q", got)
	}
}

// TestAPIPicker: the API field of an individual permission offers the
// service's APIs as data/services.json lists them (through /v1/me), and an
// API the service does not list draws the keys policy's unlisted_api
// advice from the dry run.
func TestAPIPicker(t *testing.T) { forEachStore(t, testAPIPicker) }

func testAPIPicker(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.openAdd("business-demo")
	f.fill("Name", "picker")
	f.tick("Default permissions", "GET")
	f.clickButton("Add individual permission")
	f.wait("individual group", `group("Individual permissions")`)
	offered := eval[string](f, `(() => { const api = field("API", group("Individual permissions"));
		return [...api.list.options].map((o) => o.value).join(","); })()`)
	if offered != "blogs,news,contact,categories" {
		t.Errorf("the API field offers %q, want blogs,news,contact,categories", offered)
	}
	eval[bool](f, `setValue(field("API", group("Individual permissions")), "blgos")`)
	f.tick("Individual permissions", "GET")
	f.wait("unlisted advice", `all('[role="status"] li').some((li) => li.textContent.includes('"blgos"'))`)
	eval[bool](f, `setValue(field("API", group("Individual permissions")), "blogs")`)
	f.wait("advice gone", `!all('[role="status"] li').some((li) => li.textContent.includes('lists no API'))`)
}
