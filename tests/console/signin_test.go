package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSignIn: a wrong token is refused with an alert; the right one shows
// the member's services with plan, role and key count; the token is kept in
// sessionStorage only (never localStorage, a cookie or the URL); Sign out
// forgets it.
func TestSignIn(t *testing.T) { forEachStore(t, testSignIn) }

func testSignIn(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.navigate(f.consoleURL(""))
	f.fill("Member token", "not-a-token")
	f.clickButton("Sign in")
	f.wait("refusal", `all('[role="alert"]').some((e) => e.textContent.includes('The token matches no member.'))`)

	f.fill("Member token", adminToken("team-demo"))
	f.clickButton("Sign in")
	f.wait("services", `all('table tbody tr').length === 1`)
	row := eval[string](f, `norm(all('table tbody tr')[0].textContent)`)
	for _, want := range []string{"team-demo", "team", "admin", "1 / 3 API keys"} {
		if !strings.Contains(row, want) {
			t.Errorf("services row %q lacks %q", row, want)
		}
	}
	where := eval[map[string]any](f, `({session: sessionStorage.getItem('keygate.token'), local: JSON.stringify(localStorage), cookie: document.cookie, url: location.href})`)
	if where["session"] != adminToken("team-demo") {
		t.Errorf("sessionStorage token = %v", where["session"])
	}
	for _, k := range []string{"local", "cookie", "url"} {
		if strings.Contains(where[k].(string), "token") && k != "url" || strings.Contains(where[k].(string), adminToken("team-demo")) {
			t.Errorf("the token is in %s: %v", k, where[k])
		}
	}

	f.clickButton("Sign out")
	f.wait("sign-in form", `field("Member token")`)
	if v := eval[bool](f, `sessionStorage.getItem('keygate.token') === null`); !v {
		t.Error("Sign out left the token in sessionStorage")
	}
}

// TestDeepLink: /console/services/{service}/keys opens that service's key
// list once signed in.
func TestDeepLink(t *testing.T) { forEachStore(t, testDeepLink) }

func testDeepLink(t *testing.T, store string) {
	f := newFixture(t, options{store: store})
	f.signIn("services/team-demo/keys", adminToken("team-demo"))
	f.wait("key list", `document.querySelector('h1') && norm(document.querySelector('h1').textContent).includes('team-demo') && document.querySelector('#keys')`)
	if got := eval[string](f, `norm(document.querySelector('#key-count').textContent)`); got != "1 / 3 API keys" {
		t.Errorf("count = %q, want 1 / 3 API keys", got)
	}
}

// TestSessionEnds: when the member's token stops working (here: changed in
// data/members.json, which keygate reloads), the next screen returns to
// sign-in and says why, with the token forgotten. The state file only: on
// PostgreSQL members live in the database, and the console's handling of a
// 401 does not depend on where the member was.
func TestSessionEnds(t *testing.T) {
	f := newFixture(t, options{})
	f.signIn("services/team-demo/keys", adminToken("team-demo"))
	f.wait("key list", `document.querySelector('#keys')`)
	path := filepath.Join(f.data, "members.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), `"team-demo-admin-token"`, `"team-demo-admin-token-2"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for f.api("GET", "/v1/me", adminToken("team-demo"), nil).status != 401 {
		if time.Now().After(deadline) {
			t.Fatal("the old token still works")
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.click("Audit log link", `all('a').find((a) => norm(a.textContent) === 'Audit log')`)
	f.wait("sign-in", `field("Member token") && all('[role="alert"]').some((a) => a.textContent.includes('Your session ended'))`)
	if !eval[bool](f, `sessionStorage.getItem('keygate.token') === null`) {
		t.Error("the token is still in sessionStorage")
	}
}
