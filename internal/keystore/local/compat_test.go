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
	// The fixture's log held records: Open folded them into a snapshot of
	// the current format, which the next start reads.
	if b, err := os.ReadFile(state); err != nil || !strings.HasPrefix(string(b), `{"format":"keygate-state","version":4,`) {
		t.Fatalf("snapshot after Open: %.60q, %v; want format 4", b, err)
	}
	s.Close()
	s, err = keystore.New(t.Context(), local.New(local.Options{StatePath: state}), keystore.Options{DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if k, ok := s.KeyBySecret(mainStateSecr); !ok || k.ID != mainStateKey || k.Name != "web" {
		t.Fatalf("fixture key after the second start (renamed by the write above): %+v %v", k, ok)
	}
}

// TestReadStateBothFormats: keygate migrate --from-state reads the state
// the earlier keygate wrote (a format-3 snapshot and its log) and the same
// state once rewritten in format 4, with the same keys.
func TestReadStateBothFormats(t *testing.T) {
	state := copyMainState(t)
	before, unlock, err := local.ReadState(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	s, err := keystore.New(t.Context(), local.New(local.Options{StatePath: state}), keystore.Options{DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	after, unlock, err := local.ReadState(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if b, _ := os.ReadFile(state); !strings.HasPrefix(string(b), `{"format":"keygate-state","version":4,`) {
		t.Fatalf("snapshot not rewritten in format 4: %.60q", b)
	}
	if len(before.Keys) != 2 || len(after.Keys) != len(before.Keys) {
		t.Fatalf("keys: %d from format 3, %d from format 4", len(before.Keys), len(after.Keys))
	}
	for i := range before.Keys {
		a, b := before.Keys[i], after.Keys[i]
		if a.ID != b.ID || a.Name != b.Name || a.Revision != b.Revision || !a.UpdatedAt.Equal(b.UpdatedAt) ||
			keystore.SecretHash(a) != keystore.SecretHash(b) || len(a.ContentAPI.Individual) != len(b.ContentAPI.Individual) {
			t.Errorf("key %d: %+v from format 3, %+v from format 4", i, a, b)
		}
	}
	if mk := before.Keys[slicesIndex(before.Keys, mainStateKey)]; !mk.ContentAPI.Individual["blogs"].GetAllDrafts {
		t.Errorf("fixture key read from format 3: %+v", mk)
	}
	if len(after.Trail) != len(before.Trail) {
		t.Errorf("audit trail: %d entries before, %d after", len(before.Trail), len(after.Trail))
	}
}

func slicesIndex(keys []*keystore.Key, id string) int {
	for i, k := range keys {
		if k.ID == id {
			return i
		}
	}
	return -1
}
