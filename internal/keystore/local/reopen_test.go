package local_test

import (
	"os"
	"testing"
)

// TestOpenKeepsACurrentSnapshot: an open whose log holds no record past
// the snapshot leaves the snapshot file as it is (no re-encode and fsync of
// every key on each restart); an open that replayed records folds them
// into a new snapshot; writes after either are kept across restarts.
func TestOpenKeepsACurrentSnapshot(t *testing.T) {
	f := newFixture(t)
	snap := f.opts.StatePath
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(snap)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	const token, service = "enterprise-demo-admin-token", "enterprise-demo"
	a, err := f.store.CreateKey(t.Context(), token, service, readSpec())
	if err != nil {
		t.Fatal(err)
	}
	before := stat()
	f.reopen(t) // the log holds a's create: folded into a new snapshot
	folded := stat()
	if os.SameFile(before, folded) {
		t.Fatal("reopening over a log with a record kept the old snapshot")
	}
	f.reopen(t) // nothing past the snapshot: it stays
	if !os.SameFile(folded, stat()) {
		t.Fatal("reopening over an empty log rewrote the snapshot")
	}
	b, err := f.store.CreateKey(t.Context(), token, service, readSpec())
	if err != nil {
		t.Fatal(err)
	}
	f.reopen(t)
	f.reopen(t)
	for _, id := range []string{a.ID, b.ID} {
		if _, err := f.store.GetKey(t.Context(), token, service, id); err != nil {
			t.Fatalf("key %s after restarts: %v", id, err)
		}
	}
}
