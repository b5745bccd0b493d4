package keystore_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// networkAuthz is the fake keys authorizer plus the fake network decision
// (admins of the service; a default entry "bad" is refused with 422).
type networkAuthz struct {
	keystoretest.Authorizer
	keystoretest.NetworkAuthorizer
}

func TestIPRestrictions(t *testing.T) {
	ctx := t.Context()
	withNetwork := func(o *storeOpts) { a := &networkAuthz{}; o.Authorizer, o.Network = a, a }

	t.Run("seeded from data, replaced, durable, generation moves", func(t *testing.T) {
		data := writeData(t, map[string]string{
			"services.json":        `[{"id":"business-demo","plan":"business"},{"id":"team-demo","plan":"team"}]`,
			"members.json":         `[{"id":"a","service":"business-demo","role":"admin","token":"admin-token"},{"id":"e","service":"business-demo","role":"editor","token":"editor-token"}]`,
			"ip-restrictions.json": `{"business-demo":{"default":["203.0.113.0/24"],"apis":{"blogs":[]}}}`,
		})
		f := newFixture(t, withNetwork, func(o *storeOpts) { o.DataDir = data })
		r, _, ok := f.store.IPRestrictions("business-demo")
		if !ok || len(r.Default) != 1 || r.APIs["blogs"] == nil {
			t.Fatalf("seeded setting = %+v, %v", r, ok)
		}
		if _, _, ok := f.store.IPRestrictions("team-demo"); ok {
			t.Error("team-demo restricts without a setting")
		}
		gen := f.store.Generation()
		want := keystore.IPRestrictions{Default: []string{"198.51.100.7"}, APIs: map[string][]string{"news": {"2001:db8::/32"}}}
		if _, err := f.store.PutIPRestrictions(ctx, "admin-token", "business-demo", want); err != nil {
			t.Fatal(err)
		}
		if f.store.Generation() == gen {
			t.Error("a setting write did not move the generation (the decision cache would serve stale answers)")
		}
		// The seed is read only while no state exists: a reopen keeps the write.
		f.reopen(t)
		got, err := f.store.GetIPRestrictions(ctx, "admin-token", "business-demo")
		if err != nil || strings.Join(got.Default, ",") != "198.51.100.7" || strings.Join(got.APIs["news"], ",") != "2001:db8::/32" {
			t.Fatalf("after reopen: %+v, %v", got, err)
		}
		if _, err := os.Stat(f.opts.StatePath + ".ip-restrictions.json"); err != nil {
			t.Errorf("no settings file beside the state: %v", err)
		}
		// Cleared: no restriction, and an empty answer.
		if _, err := f.store.PutIPRestrictions(ctx, "admin-token", "business-demo", keystore.IPRestrictions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := f.store.IPRestrictions("business-demo"); ok {
			t.Error("cleared setting still restricts")
		}
	})

	t.Run("refusals", func(t *testing.T) {
		f := newFixture(t, withNetwork)
		for _, tc := range []struct {
			note, token string
			setting     keystore.IPRestrictions
			status      int
			code        string
		}{
			{"no member", "", keystore.IPRestrictions{}, 401, "unauthenticated"},
			{"editor", "business-demo-editor-token", keystore.IPRestrictions{}, 403, "forbidden"},
			{"policy refuses an entry", "business-demo-admin-token", keystore.IPRestrictions{Default: []string{"bad"}}, 422, "invalid_ip_entry"},
			{"API name", "business-demo-admin-token", keystore.IPRestrictions{APIs: map[string][]string{"a/b": {}}}, 400, "invalid_ip_restrictions"},
			{"entry too long", "business-demo-admin-token", keystore.IPRestrictions{Default: []string{strings.Repeat("1", 65)}}, 400, "invalid_ip_restrictions"},
		} {
			t.Run(tc.note, func(t *testing.T) {
				_, err := f.store.PutIPRestrictions(ctx, tc.token, "business-demo", tc.setting)
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != tc.status || ke.Code != tc.code {
					t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
				}
				if tc.status == 422 && (len(ke.Violations) != 1 || ke.Violations[0].Entry != "bad") {
					t.Errorf("violations %+v", ke.Violations)
				}
			})
		}
	})

	t.Run("an authorizer without the network decision fails closed", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.store.PutIPRestrictions(ctx, "business-demo-admin-token", "business-demo", keystore.IPRestrictions{})
		var ke *keystore.Error
		if !errors.As(err, &ke) || ke.Status != http.StatusInternalServerError {
			t.Fatalf("err = %v, want 500", err)
		}
	})

	t.Run("a malformed settings file fails Open naming it", func(t *testing.T) {
		dir := t.TempDir()
		state := filepath.Join(dir, "state.json")
		if err := os.WriteFile(state+".ip-restrictions.json", []byte(`{"format":"other","version":1,"services":{}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := keystore.New(ctx, local.New(local.Options{StatePath: state}), keystore.Options{DataDir: repoDataDir, Authorizer: &networkAuthz{}})
		if err == nil || !strings.Contains(err.Error(), "ip-restrictions.json") {
			t.Fatalf("Open = %v, want an error naming the file", err)
		}
	})
}
