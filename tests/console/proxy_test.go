package console

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestBehindPathPrefix: behind a reverse proxy that serves keygate under
// /kg/, the console finds its assets and the API through relative URLs:
// a deep link, sign-in and a create work, and no request escapes the
// prefix.
func TestBehindPathPrefix(t *testing.T) {
	f := newFixture(t, options{})
	target, err := url.Parse(f.kg.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var (
		mu      sync.Mutex
		outside []string
	)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/kg/")
		if !ok {
			mu.Lock()
			outside = append(outside, r.URL.Path)
			mu.Unlock()
			http.NotFound(w, r)
			return
		}
		r.URL.Path = "/" + rest
		r.URL.RawPath = ""
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	f.navigate(proxy.URL + "/kg/console/services/business-demo/keys")
	f.fill("Member token", adminToken("business-demo"))
	f.clickButton("Sign in")
	f.wait("key list", `document.querySelector('#keys')`)
	f.clickButton("Add")
	f.fill("Name", "proxied")
	f.tick("Default permissions", "GET")
	f.clickButton("Create")
	f.wait("secret dialog", `document.querySelector('#secret-dialog[open]')`)
	f.clickButton("Done")
	f.wait("row", `all('#keys tbody th').some((th) => th.textContent === 'proxied')`)
	if loc := eval[string](f, `location.pathname`); loc != "/kg/console/services/business-demo/keys" {
		t.Errorf("location %q", loc)
	}
	f.clickButton("Sign out")
	f.wait("sign-in", `field("Member token")`)
	if loc := eval[string](f, `location.pathname`); loc != "/kg/console/" {
		t.Errorf("after sign out, location %q", loc)
	}
	// /kg/console without the slash: the redirect keeps the prefix.
	f.navigate(proxy.URL + "/kg/console")
	f.wait("sign-in after /kg/console", `field("Member token")`)
	if loc := eval[string](f, `location.pathname`); loc != "/kg/console/" {
		t.Errorf("/kg/console led to %q, want /kg/console/", loc)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(outside) > 0 {
		t.Errorf("requests outside the prefix: %v", outside)
	}
	f.keyNamed("business-demo", "proxied")
}
