package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/tests/gateway/stack"
)

func adminToken(service string) string  { return service + "-admin-token" }
func editorToken(service string) string { return service + "-editor-token" }

// fixture is a keygate of its own and a browser tab on its console. Every
// JavaScript dialog, uncaught exception, console error and security
// (Content-Security-Policy, Trusted Types) report of the page is recorded,
// and fails the test at its end unless the test expected it.
type fixture struct {
	t   *testing.T
	kg  *stack.Keygate
	ctx context.Context
	// data is keygate's data directory (watched: edits take effect).
	data string

	mu       sync.Mutex
	problems []string
}

// Key stores the flows run on.
const (
	storeFile     = "state-file"
	storePostgres = "postgres"
)

// forEachStore runs a flow on the state file and on PostgreSQL.
func forEachStore(t *testing.T, flow func(t *testing.T, store string)) {
	for _, store := range []string{storeFile, storePostgres} {
		t.Run(store, func(t *testing.T) { flow(t, store) })
	}
}

// postgres is the PostgreSQL cluster of this test binary, started by the
// first test that needs it (each fixture gets a database of its own) and
// stopped by TestMain.
var postgres struct {
	once    sync.Once
	cluster *pgtest.Cluster
	err     error
}

// storeURL returns a fresh database of the shared cluster; it skips the
// test without PostgreSQL (fails it under CI=true).
func storeURL(t *testing.T) string {
	t.Helper()
	bin := pgtest.Require(t)
	postgres.once.Do(func() {
		c, err := pgtest.New(bin)
		if err == nil {
			if err = c.Start(); err != nil {
				err = fmt.Errorf("%w\n%s", err, c.LogTail())
			}
		}
		postgres.cluster, postgres.err = c, err
	})
	if postgres.err != nil {
		t.Fatalf("pgtest: %v", postgres.err)
	}
	_, url, err := postgres.cluster.NewNamedDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

type options struct {
	store string           // storeFile ("" too) or storePostgres
	extra []string         // serve flags
	data  func(dir string) // edits the data/ copy before start
	lang  string           // Accept-Language / navigator.language of the tab
	pre   func(dir string) // edits the policies/ copy before start
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	requireBrowser(t)
	dir := t.TempDir()
	if err := stack.CopyDirs(build.Root, dir, "policies", "data"); err != nil {
		t.Fatal(err)
	}
	if o.data != nil {
		o.data(filepath.Join(dir, "data"))
	}
	if o.pre != nil {
		o.pre(filepath.Join(dir, "policies"))
	}
	args := []string{"--decision-log", "off"}
	if o.store == storePostgres {
		args = append(args, "--store", storeURL(t))
	}
	cfg := stack.KeygateConfig{
		Binary: build.Binary, Dir: dir,
		Policies: filepath.Join(dir, "policies"), Data: filepath.Join(dir, "data"),
		Args:    append(args, o.extra...),
		LogPath: filepath.Join(dir, "keygate.log"), ReadyTimeout: 30 * time.Second,
	}
	if o.store != storePostgres {
		cfg.State = filepath.Join(dir, "state", "state.json")
	}
	kg, err := stack.StartKeygate(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start keygate: %v", err)
	}
	t.Cleanup(func() { _ = kg.Stop() })

	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	f := &fixture{t: t, kg: kg, ctx: ctx, data: filepath.Join(dir, "data")}
	if err := chromedp.Listen(ctx, f.record); err != nil {
		t.Fatal(err)
	}
	if o.lang != "" {
		ua, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: o.lang})
			return err
		})); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(f.check)
	return f
}

// record keeps what must not happen on the page. It runs in chromedp's
// event loop: no commands here (a dialog is dismissed from a goroutine).
func (f *fixture) record(ev any) {
	var p string
	switch e := ev.(type) {
	case *page.EventJavascriptDialogOpening:
		p = fmt.Sprintf("JavaScript %s dialog: %q", e.Type, e.Message)
		go func() {
			_ = chromedp.Do(f.ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
				return err
			}))
		}()
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		p = "uncaught exception: " + d.Text
		if d.Exception != nil {
			p += " " + d.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			p = "console." + string(e.Type) + " called"
		}
	case *cdplog.EventEntryAdded:
		// Failed fetches (a 403, a 422) are the API's answers the console
		// shows; what must never happen is a security report.
		if e.Entry.Source == cdplog.EntrySourceSecurity || e.Entry.Source == cdplog.EntrySourceViolation ||
			strings.Contains(e.Entry.Text, "Content Security Policy") || strings.Contains(e.Entry.Text, "TrustedHTML") {
			p = fmt.Sprintf("%s report: %s", e.Entry.Source, e.Entry.Text)
		}
	}
	if p == "" {
		return
	}
	f.mu.Lock()
	f.problems = append(f.problems, p)
	f.mu.Unlock()
}

// takeProblems returns and forgets what was recorded.
func (f *fixture) takeProblems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.problems
	f.problems = nil
	return p
}

func (f *fixture) check() {
	// Let late events arrive.
	time.Sleep(100 * time.Millisecond)
	if p := f.takeProblems(); len(p) > 0 {
		f.t.Errorf("the page reported:\n%s", strings.Join(p, "\n"))
	}
}

// consoleURL is the console's URL for a path below /console/.
func (f *fixture) consoleURL(rest string) string { return f.kg.URL + "/console/" + rest }

func (f *fixture) do(steps ...chromedp.Action[chromedp.Void]) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		f.t.Fatal(err)
	}
}

// helpers are JavaScript functions the tests use to find controls the way a
// user (or a screen reader) does: by their accessible names.
const helpers = `
const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
const accName = (el) => {
  if (el.getAttribute('aria-label')) return norm(el.getAttribute('aria-label'));
  if (el.labels && el.labels.length) return norm(el.labels[0].textContent);
  return norm(el.textContent);
};
const scope = () => document.querySelector('dialog[open]') || document;
const all = (sel, root) => [...(root || scope()).querySelectorAll(sel)];
const visible = (el) => !!el && el.getClientRects().length > 0 && !el.closest('[hidden]');
const button = (name, root) => all('button, [role="tab"]', root).find((b) => accName(b) === name && visible(b));
const field = (label, root) => {
  const l = all('label', root).find((l) => norm(l.textContent) === label && visible(l));
  return l ? l.control : null;
};
const group = (legend, root) => all('fieldset', root).find((f) => f.querySelector(':scope > legend') && norm(f.querySelector(':scope > legend').textContent) === legend);
const groups = (legend, root) => all('fieldset', root).filter((f) => f.querySelector(':scope > legend') && norm(f.querySelector(':scope > legend').textContent) === legend);
const setValue = (el, v) => { el.focus(); el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); return true; };
`

func js(expr string) string { return "(() => {" + helpers + "\nreturn (" + expr + ");\n})()" }

// eval evaluates expr (with helpers) and decodes its value.
func eval[T any](f *fixture, expr string) T {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js(expr), chromedp.EvalAwaitPromise))
	if err != nil {
		f.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait polls expr until it is true.
func (f *fixture) wait(what, expr string) {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!"+js(expr)))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(f.ctx, chromedp.Evaluate[string](`document.body.innerText`))
			f.t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expr, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// click clicks the element expr finds (it must find one).
func (f *fixture) click(what, expr string) {
	f.t.Helper()
	f.wait(what, expr)
	eval[bool](f, "(() => { const el = "+expr+"; el.click(); return true; })()")
}

func (f *fixture) clickButton(name string) {
	f.t.Helper()
	f.click("button "+name, fmt.Sprintf("button(%q)", name))
}

// fill types v into the field labelled label.
func (f *fixture) fill(label, v string) {
	f.t.Helper()
	f.wait("field "+label, fmt.Sprintf("field(%q)", label))
	eval[bool](f, fmt.Sprintf("setValue(field(%q), %q)", label, v))
}

// tick ticks the checkbox labelled label in the group with legend.
func (f *fixture) tick(legend, label string) {
	f.t.Helper()
	f.click(legend+" / "+label, fmt.Sprintf("field(%q, group(%q))", label, legend))
}

func (f *fixture) navigate(url string) {
	f.t.Helper()
	f.do(chromedp.Navigate(url))
}

// signIn opens the console at rest and signs in with token.
func (f *fixture) signIn(rest, token string) {
	f.t.Helper()
	f.navigate(f.consoleURL(rest))
	f.fill("Member token", token)
	f.clickButton("Sign in")
	f.wait("signed in", `button("Sign out")`)
}

// grantClipboard lets the page write and read the clipboard, as a user's
// click on Copy would in a browser with a window.
func (f *fixture) grantClipboard() {
	f.t.Helper()
	for _, name := range []string{"clipboard-write", "clipboard-read"} {
		f.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, chromedp.FromContext(ctx).Browser, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
				Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: f.kg.URL,
			})
			return err
		}))
	}
}

func (f *fixture) screenshot(name string) {
	f.t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(*screenshots, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// ---- the API, directly -----------------------------------------------------------

type reply struct {
	status int
	body   []byte
}

func (f *fixture) api(method, path, token string, body any) reply {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.kg.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, b}
}

type apiKey struct {
	ID            string                     `json:"id"`
	Name          string                     `json:"name"`
	ContentAPI    map[string]json.RawMessage `json:"contentApi"`
	ManagementAPI map[string]bool            `json:"managementApi"`
}

type keyList struct {
	Keys  []apiKey `json:"keys"`
	Count int      `json:"count"`
	Limit int      `json:"limit"`
}

func (f *fixture) keys(service string) keyList {
	f.t.Helper()
	r := f.api("GET", "/v1/services/"+service+"/keys", adminToken(service), nil)
	if r.status != 200 {
		f.t.Fatalf("list keys: %d %s", r.status, r.body)
	}
	var l keyList
	if err := json.Unmarshal(r.body, &l); err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *fixture) keyNamed(service, name string) apiKey {
	f.t.Helper()
	l := f.keys(service)
	i := slices.IndexFunc(l.Keys, func(k apiKey) bool { return k.Name == name })
	if i < 0 {
		f.t.Fatalf("no key %q in %s", name, service)
	}
	return l.Keys[i]
}

// createKey creates a key through the API and returns its id and secret.
func (f *fixture) createKey(service, name string, spec map[string]any) (string, string) {
	f.t.Helper()
	body := map[string]any{"name": name}
	for k, v := range spec {
		body[k] = v
	}
	r := f.api("POST", "/v1/services/"+service+"/keys", adminToken(service), body)
	if r.status != 201 {
		f.t.Fatalf("create key: %d %s", r.status, r.body)
	}
	var c struct {
		Key    apiKey `json:"key"`
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(r.body, &c); err != nil {
		f.t.Fatal(err)
	}
	return c.Key.ID, c.Secret
}

// decide asks /v1/decide whether secret may make the request.
func (f *fixture) decide(service, api, method, path, secret string) bool {
	f.t.Helper()
	r := f.api("POST", "/v1/decide", "", map[string]any{"service": service, "api": api, "method": method, "path": path, "apiKey": secret})
	if r.status != 200 {
		f.t.Fatalf("decide: %d %s", r.status, r.body)
	}
	var d struct {
		Allow bool `json:"allow"`
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		f.t.Fatal(err)
	}
	return d.Allow
}

func (f *fixture) auditCount(service string) int {
	f.t.Helper()
	r := f.api("GET", "/v1/services/"+service+"/audit?limit=100", adminToken(service), nil)
	if r.status != 200 {
		f.t.Fatalf("audit: %d %s", r.status, r.body)
	}
	var a struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &a); err != nil {
		f.t.Fatal(err)
	}
	return len(a.Entries)
}
