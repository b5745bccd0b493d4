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

func lockOptions(t *testing.T) storeOpts {
	return storeOpts{
		keystore.Options{DataDir: filepath.Join("..", "..", "..", "data"), Authorizer: &keystoretest.Authorizer{}},
		local.Options{StatePath: filepath.Join(t.TempDir(), "state", "state.json")},
	}
}

// TestStateLockedAgainstSecondProcess: a second store on the same state
// must refuse to open (two writers would corrupt the log), and the lock is
// released by Close.
func TestStateLockedAgainstSecondProcess(t *testing.T) {
	opts := lockOptions(t)
	first, err := openStore(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "in use by another keygate process") {
		t.Fatalf("second Open on a locked state: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := openStore(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStateLockSurvivesRemovedFiles: the lock is on
// the state directory, so removing any file in it while keygate runs —
// the snapshot, the log, a lock file of an older keygate, all of them —
// does not let a second writer in. Removing the log also stops the first
// writer from acknowledging writes a restart would not find.
func TestStateLockSurvivesRemovedFiles(t *testing.T) {
	for _, tc := range []struct {
		note       string
		remove     []string // file names in the state directory
		writeFails bool     // the running store's next write is refused
	}{
		{"state.json", []string{"state.json"}, false},
		{"state.json.log", []string{"state.json.log"}, true},
		{"state.json.lock (older keygate's lock file)", []string{"state.json.lock"}, false},
		{"every file", []string{"state.json", "state.json.log", "state.json.lock"}, true},
	} {
		t.Run(tc.note, func(t *testing.T) {
			opts := lockOptions(t)
			dir := filepath.Dir(opts.StatePath)
			first, err := openStore(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { first.Close() })
			if err := os.WriteFile(filepath.Join(dir, "state.json.lock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.remove {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			if s, err := openStore(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "in use by another keygate process") {
				if s != nil {
					s.Close()
				}
				t.Fatalf("second Open after removing %v: %v; want in use", tc.remove, err)
			}
			_, err = first.CreateKey(t.Context(), "team-demo-admin-token", "team-demo", keystore.KeySpec{Name: "after"})
			if tc.writeFails != (err != nil) {
				t.Fatalf("write after removing %v: %v; want refused=%v", tc.remove, err, tc.writeFails)
			}
		})
	}
}

// TestRemovedStateDirectory: a state directory removed and created again
// is a new directory, which a second keygate can lock; the first one then
// refuses every write (its log is gone), so there are never two writers
// acknowledging writes.
func TestRemovedStateDirectory(t *testing.T) {
	opts := lockOptions(t)
	first, err := openStore(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	if err := os.RemoveAll(filepath.Dir(opts.StatePath)); err != nil {
		t.Fatal(err)
	}
	second, err := openStore(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open on a new directory: %v", err)
	}
	t.Cleanup(func() { second.Close() })
	if _, err := first.CreateKey(t.Context(), "team-demo-admin-token", "team-demo", keystore.KeySpec{Name: "orphan"}); err == nil ||
		!strings.Contains(err.Error(), "removed or replaced") {
		t.Fatalf("write of the first store after its directory was removed: %v; want refused", err)
	}
	if _, err := second.CreateKey(t.Context(), "team-demo-admin-token", "team-demo", keystore.KeySpec{Name: "kept"}); err != nil {
		t.Fatalf("write of the second store: %v", err)
	}
}
