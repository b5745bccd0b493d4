package keystore_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
)

// TestStateLockedAgainstSecondProcess: a second store on the same state
// must refuse to open (two writers would corrupt the log), and the lock is
// released by Close.
func TestStateLockedAgainstSecondProcess(t *testing.T) {
	opts := keystore.Options{
		DataDir:    filepath.Join("..", "..", "data"),
		StatePath:  filepath.Join(t.TempDir(), "state.json"),
		Authorizer: &keystoretest.Authorizer{},
	}
	first, err := keystore.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(t.Context(), opts); err == nil || !strings.Contains(err.Error(), "in use by another keygate process") {
		t.Fatalf("second Open on a locked state: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := keystore.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
