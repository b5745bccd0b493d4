package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// Fixtures written by an earlier keygate (testdata/main/README.md).
const (
	mainState     = "testdata/main/state"
	mainStateKey  = "key_1drv8bnepdv7b8v1"
	mainStateSecr = "-1ZkPvxrkZ_jiJLL5RQFcS4i-FfcEuUi2TmrjVDAkLY"
	mainPGKey     = "key_ebbchycc9r26y3t6"
	mainPGSecret  = "SDTcyBYUEMI9L-Qd3tbWxNtqPsXQNp31SwqDFkibrKk"
)

// copyMainState copies the fixture state into a fresh directory.
func copyMainState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(mainState)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(mainState, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "state.json")
}

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

// TestOpensMainState: a local state written by the earlier keygate opens
// unchanged, with its keys, settings and audit trail.
func TestOpensMainState(t *testing.T) {
	state := copyMainState(t)
	s, err := keystore.New(t.Context(), local.New(local.Options{StatePath: state}), keystore.Options{DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	trail := fullTrail(t, s, teamAdmin, "team-demo", keystore.AuditQuery{})
	if len(trail) != 9 {
		t.Fatalf("%d entries of team-demo, want the fixture's 9", len(trail))
	}
	checkMainKey(t, s, mainStateKey, mainStateSecr)
}
