package postgres_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

// Fixtures written by an earlier keygate (testdata/main/README.md): the
// database dump here, the local state the import reads beside the local
// driver.
const (
	mainState     = "../local/testdata/main/state/state.json"
	mainDump      = "testdata/main/postgres.sql"
	mainStateKey  = "key_1drv8bnepdv7b8v1"
	mainStateSecr = "-1ZkPvxrkZ_jiJLL5RQFcS4i-FfcEuUi2TmrjVDAkLY"
	mainPGKey     = "key_ebbchycc9r26y3t6"
	mainPGSecret  = "SDTcyBYUEMI9L-Qd3tbWxNtqPsXQNp31SwqDFkibrKk"
)

// checkMainKey: the fixture's key serves with its rotated secret, and a
// write on top of it works.
func checkMainKey(t *testing.T, s *keystore.Store, id, secret string) {
	t.Helper()
	k, ok := s.KeyBySecret(secret)
	if !ok || k.ID != id || k.Name != "web2" || k.Revision != 3 || !k.ContentAPI.Individual["blogs"].GetAllDrafts {
		t.Fatalf("fixture key: %+v %v", k, ok)
	}
	if _, ok := s.KeyBySecret(demoSecret); !ok {
		t.Fatal("the seed key is gone")
	}
	if r, _, ok := s.IPRestrictions("business-demo"); !ok || strings.Join(r.APIs["news"], ",") != "2001:db8::/32" {
		t.Fatalf("IP restriction setting: %+v %v", r, ok)
	}
	if _, err := s.UpdateKey(t.Context(), teamAdmin, "team-demo", id, readSpec()); err != nil {
		t.Fatal(err)
	}
}

// TestOpensMainDatabase: a database written by the earlier keygate (its
// dump restored) opens, applies only the migrations made since (a
// service's APIs: its services list none), and takes writes.
func TestOpensMainDatabase(t *testing.T) {
	c := pgtest.Start(t)
	name, url, err := c.NewNamedDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dump, err := os.ReadFile(mainDump)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(t.Context(), name, string(dump)); err != nil {
		t.Fatal(err)
	}
	res, err := postgres.Migrate(t.Context(), postgres.MigrateOptions{URL: url, DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil || !slices.Equal(res.Applied, []int{4}) || res.Seeded {
		t.Fatalf("Migrate of the fixture database: %+v %v, want version 4 applied and nothing seeded", res, err)
	}
	s := pgOpen(t, url, 1, func(o *pgOpts) {
		o.Network = &keystoretest.NetworkAuthorizer{}
	})[0]
	if n := len(fullTrail(t, s, teamAdmin, "team-demo", keystore.AuditQuery{})); n != 6 {
		t.Fatalf("%d entries of team-demo, want the fixture's 6", n)
	}
	if svc, ok := s.Service("team-demo"); !ok || svc.APIs != nil {
		t.Errorf("team-demo of the fixture database: %+v %v, want no APIs", svc, ok)
	}
	checkMainKey(t, s, mainPGKey, mainPGSecret)
}

// TestMigrateImportsMainStateWithNUL: keygate migrate --from-state imports
// a state whose audit trail holds a NUL byte (written by the earlier
// keygate for refused requests), escaping it, and every entry arrives.
func TestMigrateImportsMainStateWithNUL(t *testing.T) {
	c := pgtest.Start(t)
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	state := copyMainState(t)
	from, unlock, err := local.ReadState(state, nil)
	if err != nil {
		t.Fatalf("read the state: %v", err)
	}
	defer unlock()
	res, err := postgres.Migrate(t.Context(), postgres.MigrateOptions{URL: url, DataDir: repoDataDir, From: from, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		t.Fatalf("Migrate --from-state: %v", err)
	}
	if res.AuditEntries != 10 || res.Keys != 2 || res.IPRestrictions != 1 {
		t.Fatalf("imported %+v, want 10 audit entries, 2 keys, 1 IP setting", res)
	}
	s := pgOpen(t, url, 1)[0]
	checkMainKey(t, s, mainStateKey, mainStateSecr)
	trail := fullTrail(t, s, teamAdmin, "team-demo", keystore.AuditQuery{})
	byRequest := map[string]keystore.AuditEntry{}
	for _, e := range trail {
		byRequest[e.RequestID] = e
	}
	for _, tc := range []struct {
		request, keyID, name string
	}{
		{`g6\u0000nul`, `a\u0000b`, ""},
		{"g7", "bad\uFFFDutf8", ""},
		{"g8", "", `read\u0000`},
	} {
		e, ok := byRequest[tc.request]
		if !ok {
			t.Errorf("entry %q not imported (have %d entries)", tc.request, len(trail))
			continue
		}
		if e.KeyID != tc.keyID || (tc.name != "" && (e.After == nil || e.After.Name != tc.name)) {
			t.Errorf("entry %q: key %q after %+v, want key %q name %q", tc.request, e.KeyID, e.After, tc.keyID, tc.name)
		}
	}
}

// copyMainState copies the fixture state into a fresh directory.
func copyMainState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Dir(mainState)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "state.json")
}
