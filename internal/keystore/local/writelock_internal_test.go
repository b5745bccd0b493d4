package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// denyAll is a minimal Authorizer for the internal tests (keystoretest
// imports this package, so it cannot be used here). Like the keys policy it
// answers 401 without a member and 403 otherwise.
type denyAll struct{ calls chan keystore.KeyRequest }

func (d denyAll) AuthorizeKeys(_ context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	select {
	case d.calls <- req:
	default:
	}
	if req.Member == nil {
		return keystore.KeyDecision{Status: http.StatusUnauthorized, Code: "unauthenticated"}, nil
	}
	return keystore.KeyDecision{Status: http.StatusForbidden, Code: "forbidden"}, nil
}

// TestRefusalsDoNotWaitForTheWriteLock: while the write lock is held (here by
// the test; in production by an admin write), a structurally invalid spec is
// refused with 400 and an unauthenticated write with 401, neither waiting for
// the lock: the store's global write lock is only ever taken for requests the
// policy allowed a moment before, with specs within the structural limits.
func TestRefusalsDoNotWaitForTheWriteLock(t *testing.T) {
	authz := denyAll{calls: make(chan keystore.KeyRequest, 16)}
	drv := &captureDriver{opts: Options{StatePath: filepath.Join(t.TempDir(), "state.json")}}
	s, err := keystore.New(t.Context(), drv, keystore.Options{DataDir: "../../../data", Authorizer: authz})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for len(authz.calls) > 0 {
		<-authz.calls // the seed key's validation
	}

	huge := keystore.KeySpec{ContentAPI: keystore.ContentAPI{Individual: map[string]keystore.ContentPerms{}}}
	for i := range 20000 {
		huge.ContentAPI.Individual[fmt.Sprintf("api%d", i)] = keystore.ContentPerms{GetAllDrafts: true}
	}
	valid := keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}

	lb := drv.backend
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, tc := range []struct {
		note   string
		spec   keystore.KeySpec
		status int
		authz  bool // whether the authorizer is consulted at all
	}{
		{"20k entries, no token", huge, http.StatusBadRequest, false},
		{"valid spec, no token", valid, http.StatusUnauthorized, true},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := s.CreateKey(t.Context(), "", "team-demo", tc.spec)
			done <- err
		}()
		select {
		case err := <-done:
			var ke *keystore.Error
			if !errors.As(err, &ke) || ke.Status != tc.status {
				t.Errorf("%s: %v, want status %d", tc.note, err, tc.status)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still waiting for the write lock after 5s", tc.note)
		}
		select {
		case req := <-authz.calls:
			if !tc.authz {
				t.Errorf("%s: the authorizer evaluated it (%d individual entries)", tc.note, len(req.Key.ContentAPI.Individual))
			}
		default:
			if tc.authz {
				t.Errorf("%s: the authorizer was not asked", tc.note)
			}
		}
	}
}
