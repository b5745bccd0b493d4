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

// TestIPRestriction: on business the default list is saved; on team the
// console shows the API's refusal (the plan has no IP restriction) as soon
// as the screen opens, from a dry run of the write, with Save disabled and
// nothing written.
func TestIPRestriction(t *testing.T) { forEachStore(t, testIPRestriction) }

func testIPRestriction(t *testing.T, store string) {
	for _, c := range []struct {
		service string
		ok      bool
	}{{"business-demo", true}, {"team-demo", false}} {
		t.Run(c.service, func(t *testing.T) {
			f := newFixture(t, options{store: store})
			f.signIn("services/"+c.service+"/ip-restrictions", adminToken(c.service))
			f.wait("form", `field("Default allowed addresses")`)
			if !c.ok {
				// Said on open: no Save, no typing.
				f.wait("refusal on open", `all('[role="alert"]').some((a) => a.textContent.includes('team'))`)
				if !eval[bool](f, `button("Save").disabled && field("Default allowed addresses").disabled`) {
					t.Error("Save or the default list is enabled on a plan without the feature")
				}
				r := f.api("GET", "/v1/services/"+c.service+"/ip-restrictions", adminToken(c.service), nil)
				if !strings.Contains(string(r.body), `"default":[]`) {
					t.Errorf("team's setting after the screen opened: %s", r.body)
				}
				return
			}
			// The dry run on open wrote nothing, and business is not refused.
			if eval[bool](f, `all('[role="alert"]').length > 0 || button("Save").disabled`) {
				t.Error("business: a refusal or a disabled Save on open")
			}
			if r := f.api("GET", "/v1/services/"+c.service+"/ip-restrictions", adminToken(c.service), nil); !strings.Contains(string(r.body), `"default":[]`) {
				t.Errorf("business's setting after the screen opened: %s", r.body)
			}
			eval[bool](f, `setValue(field("Default allowed addresses"), "203.0.113.0/24\n198.51.100.7")`)
			f.clickButton("Add an API list")
			eval[bool](f, `setValue(field("API", all('.ip-apis fieldset')[0]), "blogs")`)
			eval[bool](f, `setValue(field("Allowed addresses for this API", all('.ip-apis fieldset')[0]), "192.0.2.1")`)
			f.clickButton("Save")
			f.wait("saved", `all('[role="status"]').some((s) => s.textContent.includes('API IP restriction saved.'))`)
			r := f.api("GET", "/v1/services/"+c.service+"/ip-restrictions", adminToken(c.service), nil)
			var got struct {
				Default []string            `json:"default"`
				APIs    map[string][]string `json:"apis"`
			}
			_ = json.Unmarshal(r.body, &got)
			if strings.Join(got.Default, ",") != "203.0.113.0/24,198.51.100.7" || strings.Join(got.APIs["blogs"], ",") != "192.0.2.1" {
				t.Errorf("saved default = %v (%s)", got.Default, r.body)
			}
		})
	}
}

// TestAudit: the audit screen lists key management newest first, with
// actor, action, key and result, and pages to older entries.
func TestAudit(t *testing.T) { forEachStore(t, testAudit) }

func testAudit(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	for i := range 11 {
		id, _ := f.createKey("business-demo", fmt.Sprintf("k%02d", i), nil)
		if r := f.api("DELETE", "/v1/services/business-demo/keys/"+id, adminToken("business-demo"), nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
	}
	f.signIn("services/business-demo/audit", adminToken("business-demo"))
	f.wait("trail", `all('#audit tbody tr').length === 20`)
	first := eval[string](f, `norm(all('#audit tbody tr')[0].textContent)`)
	for _, want := range []string{"business-demo-admin", "delete", "k10", "allowed"} {
		if !strings.Contains(first, want) {
			t.Errorf("newest row %q lacks %q", first, want)
		}
	}
	f.clickButton("Older entries")
	f.wait("older page", `all('#audit tbody tr').length === 22`)
	last := eval[string](f, `norm(all('#audit tbody tr')[21].textContent)`)
	if !strings.Contains(last, "create") || !strings.Contains(last, "k00") {
		t.Errorf("oldest row %q", last)
	}
	if eval[bool](f, `!button("Older entries")`) == false {
		t.Error("Older entries shown on the last page")
	}
}

// TestJapanese: a browser asking for Japanese gets the page's Japanese
// terms; the language can be switched back.
func TestJapanese(t *testing.T) { forEachStore(t, testJapanese) }

func testJapanese(t *testing.T, store string) {
	f := newFixture(t, options{store: store, lang: "ja-JP,ja"})
	f.navigate(f.consoleURL("services/business-demo/keys"))
	f.fill("メンバートークン", adminToken("business-demo"))
	f.clickButton("サインイン")
	f.wait("list", `document.querySelector('#keys')`)
	if got := eval[string](f, `norm(document.querySelector('#key-count').textContent)`); got != "0 / 10 個のAPIキー" {
		t.Errorf("count = %q", got)
	}
	f.clickButton("追加")
	f.wait("dialog", `document.querySelector('#key-dialog[open]')`)
	for _, expr := range []string{
		`group("デフォルト権限")`,
		`field("下書きコンテンツの全取得", group("デフォルト権限"))`,
		`field("公開終了コンテンツの全取得", group("デフォルト権限"))`,
		`button("コンテンツAPI")`,
		`button("マネジメントAPI（ベータ）")`,
		`button("+ 個別権限を追加")`,
	} {
		if !eval[bool](f, "!!"+expr) {
			t.Errorf("no %s", expr)
		}
	}
	f.clickButton("+ 個別権限を追加")
	f.wait("個別権限", `group("個別権限")`)
	if lang := eval[string](f, `document.documentElement.lang`); lang != "ja" {
		t.Errorf("html lang = %q", lang)
	}
	f.do(chromedp.KeyEvent(kb.Escape))
	f.wait("closed", `!document.querySelector('dialog[open]')`)
	eval[bool](f, `(() => { const s = field("言語"); s.value = 'en'; s.dispatchEvent(new Event('change')); return true; })()`)
	f.wait("English", `button("Add")`)
}

// TestKeyboardOnly: a key is created with the keyboard alone, and focus
// stays inside the dialog while it is open.
func TestKeyboardOnly(t *testing.T) { forEachStore(t, testKeyboardOnly) }

func testKeyboardOnly(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.signIn("services/business-demo/keys", adminToken("business-demo"))
	f.wait("list", `document.querySelector('#keys')`)
	f.tabTo("Add", `document.activeElement.id === 'add-key'`)
	f.do(chromedp.KeyEvent(kb.Enter))
	f.wait("dialog", `document.querySelector('#key-dialog[open]') && document.activeElement === field("Name")`)
	f.do(chromedp.KeyEvent("typed"))
	f.tabTo("GET", `document.activeElement === field("GET", group("Default permissions"))`)
	f.do(chromedp.KeyEvent(" "))
	// Focus never leaves the open dialog.
	for range 40 {
		f.do(chromedp.KeyEvent(kb.Tab))
		if !eval[bool](f, `document.querySelector('#key-dialog').contains(document.activeElement)`) {
			t.Fatal("Tab left the dialog")
		}
	}
	f.tabTo("Create", `document.activeElement === button("Create")`)
	f.do(chromedp.KeyEvent(kb.Enter))
	f.wait("secret dialog", `document.querySelector('#secret-dialog[open]') && document.activeElement === button("Done")`)
	f.do(chromedp.KeyEvent(kb.Enter))
	f.wait("closed", `!document.querySelector('dialog[open]')`)
	var def map[string]bool
	_ = json.Unmarshal(f.keyNamed("business-demo", "typed").ContentAPI["default"], &def)
	if !def["get"] || def["post"] {
		t.Errorf("default = %v", def)
	}
}

// tabTo presses Tab until expr holds (at most 60 times).
func (f *fixture) tabTo(what, expr string) {
	f.t.Helper()
	for range 60 {
		if eval[bool](f, "!!("+expr+")") {
			return
		}
		f.do(chromedp.KeyEvent(kb.Tab))
	}
	f.t.Fatalf("Tab never reached %s", what)
}

// xssPayloads would each run script if the console put them in the page as
// markup.
var xssPayloads = []string{
	`<img src=x onerror=alert(1)>`,
	`"><script>alert(2)</script>`,
	`<svg onload=alert(3)>`,
	`javascript:alert(4)`,
}

// TestXSS: key names carrying script reach every screen that shows them
// (list, edit, rotate and delete dialogs, the audit trail) as text: no
// dialog, exception or CSP report, and no element made of them.
func TestXSS(t *testing.T) { forEachStore(t, testXSS) }

func testXSS(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	for _, p := range xssPayloads {
		f.createKey("enterprise-demo", p, nil)
	}
	f.signIn("services/enterprise-demo/keys", adminToken("enterprise-demo"))
	f.wait("rows", fmt.Sprintf(`all('#keys tbody th').length === %d`, len(xssPayloads)))
	names := eval[[]string](f, `all('#keys tbody th').map((th) => th.textContent)`)
	for i, p := range xssPayloads {
		if names[i] != p {
			t.Errorf("row %d shows %q, want the text %q", i, names[i], p)
		}
	}
	for _, p := range xssPayloads {
		for _, action := range []string{"Edit", "Rotate", "Delete"} {
			f.clickButton(action + " " + p)
			f.wait("dialog", `document.querySelector('dialog[open]')`)
			f.do(chromedp.KeyEvent(kb.Escape))
			f.wait("closed", `!document.querySelector('dialog[open]')`)
		}
	}
	f.navigate(f.consoleURL("services/enterprise-demo/audit"))
	f.wait("audit", `all('#audit tbody tr').length === 4`)
	time.Sleep(300 * time.Millisecond)
	if n := eval[int](f, `document.querySelectorAll('main img, main script, main svg').length`); n != 0 {
		t.Errorf("%d elements made from payloads", n)
	}
}

// TestTrustedTypesEnforced: the page's policy makes an innerHTML sink throw
// and reports it, and the fixture catches the report: the XSS test would
// see a payload that reached a sink.
func TestTrustedTypesEnforced(t *testing.T) {
	f := newFixture(t, options{})
	f.navigate(f.consoleURL(""))
	f.wait("sign-in", `field("Member token")`)
	threw := eval[bool](f, `(() => { try { document.body.innerHTML = '<b>x</b>'; return false; } catch (e) { return e instanceof TypeError; } })()`)
	if !threw {
		t.Error("innerHTML with a string did not throw")
	}
	time.Sleep(300 * time.Millisecond)
	if p := f.takeProblems(); len(p) == 0 {
		t.Error("the fixture saw no report of the blocked sink")
	}
}
