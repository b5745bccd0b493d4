package keystore_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

func withIdem(t *testing.T, requestID, key string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: requestID, IdempotencyKey: key})
}

func isStatus(err error, status int) bool {
	var ke *keystore.Error
	return errors.As(err, &ke) && ke.Status == status
}

// TestIdempotencyReplayNeedsReadAccess: a replay shows the key as it is now,
// so a member who can no longer read the service's keys gets the write's
// own refusal, not the replay.
func TestIdempotencyReplayNeedsReadAccess(t *testing.T) {
	files := map[string]string{}
	for _, name := range []string{"services.json", "members.json", "keys.json"} {
		b, err := os.ReadFile(filepath.Join(repoDataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	dir := writeData(t, files)
	f := newFixture(t, func(o *storeOpts) { o.DataDir = dir })
	if _, err := f.store.CreateKey(withIdem(t, "c1", "k1"), teamAdmin, "team-demo", readSpec()); err != nil {
		t.Fatal(err)
	}
	demoted := strings.Replace(files["members.json"], `"id": "team-demo-admin", "service": "team-demo", "role": "admin"`,
		`"id": "team-demo-admin", "service": "team-demo", "role": "editor"`, 1)
	if demoted == files["members.json"] {
		t.Fatal("members.json has another layout than this test expects")
	}
	if err := os.WriteFile(filepath.Join(dir, "members.json"), []byte(demoted), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.store.ReloadData(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := f.store.CreateKey(withIdem(t, "c2", "k1"), teamAdmin, "team-demo", readSpec())
	if !isStatus(err, http.StatusForbidden) {
		t.Fatalf("replay for a demoted member: %v, want 403", err)
	}
}
