package keystore_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

func withIdem(t *testing.T, requestID, key string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: requestID, IdempotencyKey: key})
}

// TestIdempotencyKey: on both backends, a write retried with the same
// Idempotency-Key by the same member is answered from the first (no second
// key, no second rotation or revision, no 404 for a second delete, no 409
// when the first create took the plan's last slot), also after a restart; the
// key reused for a different request is 422 idempotency_key_reused.
func TestIdempotencyKey(t *testing.T) {
	for _, be := range auditBackends() {
		t.Run(be.name, func(t *testing.T) {
			s, restart, _ := be.open(t)
			const svc = "hobby-demo" // the hobby plan allows one key
			admin := svc + "-admin-token"
			first, err := s.CreateKey(withIdem(t, "c1", "create-1"), admin, svc, readSpec())
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.CreateKey(withIdem(t, "c2", "create-1"), admin, svc, readSpec())
			if err != nil || !again.Replayed || again.ID != first.ID || again.Secret != "" || first.Replayed {
				t.Fatalf("retried create: %+v %v (first %s)", again, err, first.ID)
			}
			if n := keyCount(t, s, svc); n != 1 {
				t.Fatalf("%d keys after a retried create, want 1", n)
			}
			// Without the key, the plan's limit refuses.
			if _, err := s.CreateKey(withIdem(t, "c3", ""), admin, svc, readSpec()); !isStatus(err, http.StatusConflict) {
				t.Fatalf("create over the limit: %v", err)
			}

			rot, err := s.RotateKey(withIdem(t, "r1", "rotate-1"), admin, svc, first.ID)
			if err != nil {
				t.Fatal(err)
			}
			rot2, err := s.RotateKey(withIdem(t, "r2", "rotate-1"), admin, svc, first.ID)
			if err != nil || !rot2.Replayed || rot2.Revision != rot.Revision || rot2.Secret != "" {
				t.Fatalf("retried rotation: %+v %v", rot2, err)
			}
			eventually(t, 5*time.Second, "the rotated secret works", func() bool {
				k, ok := s.KeyBySecret(rot.Secret)
				return ok && k.ID == first.ID
			})

			up := readSpec()
			up.Name = "renamed"
			u1, err := s.UpdateKey(withIdem(t, "u1", "update-1"), admin, svc, first.ID, up)
			if err != nil {
				t.Fatal(err)
			}
			u2, err := s.UpdateKey(withIdem(t, "u2", "update-1"), admin, svc, first.ID, up)
			if err != nil || !u2.Replayed || u2.Revision != u1.Revision || u2.Name != "renamed" {
				t.Fatalf("retried update: %+v %v", u2, err)
			}

			for _, tc := range []struct {
				name string
				call func() error
			}{
				{"another spec", func() error {
					other := up
					other.Name = "other"
					_, err := s.UpdateKey(withIdem(t, "x1", "update-1"), admin, svc, first.ID, other)
					return err
				}},
				{"another action", func() error {
					_, err := s.RotateKey(withIdem(t, "x2", "update-1"), admin, svc, first.ID)
					return err
				}},
				{"another key", func() error {
					_, err := s.RotateKey(withIdem(t, "x3", "rotate-1"), admin, svc, "no-such-key")
					return err
				}},
			} {
				t.Run("reused for "+tc.name, func(t *testing.T) {
					var ke *keystore.Error
					if err := tc.call(); !errors.As(err, &ke) || ke.Status != http.StatusUnprocessableEntity || ke.Code != keystore.CodeIdempotencyKeyReused {
						t.Fatalf("%v, want 422 %s", err, keystore.CodeIdempotencyKeyReused)
					}
				})
			}

			s = restart()
			if err := s.DeleteKey(withIdem(t, "d1", "delete-1"), admin, svc, first.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteKey(withIdem(t, "d2", "delete-1"), admin, svc, first.ID); err != nil {
				t.Fatalf("retried delete: %v, want the first delete's success", err)
			}
			// The create's key, retried after the restart, still names the
			// (now deleted) key and creates nothing.
			again, err = s.CreateKey(withIdem(t, "c4", "create-1"), admin, svc, readSpec())
			if err != nil || !again.Replayed || again.ID != first.ID {
				t.Fatalf("create retried after restart and delete: %+v %v", again, err)
			}
			if n := keyCount(t, s, svc); n != 0 {
				t.Fatalf("%d keys, want 0", n)
			}
			// Only the first attempts changed anything: the trail has one
			// allowed entry per idempotency key.
			allowed := map[string]int{}
			for _, e := range fullTrail(t, s, admin, svc, keystore.AuditQuery{}) {
				if e.Outcome == keystore.OutcomeAllowed {
					allowed[e.IdempotencyKey]++
				}
			}
			for _, k := range []string{"create-1", "rotate-1", "update-1", "delete-1"} {
				if allowed[k] != 1 {
					t.Errorf("%d allowed entries with key %s, want 1 (%v)", allowed[k], k, allowed)
				}
			}
		})
	}
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
	f := newFixture(t, func(o *keystore.Options) { o.DataDir = dir })
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
