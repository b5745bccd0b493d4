package keystore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/pgtest"
)

// The audit trail of key management on both backends: every write and every
// refused attempt recorded with actor, key, action, outcome, status, code,
// configuration before and after, policy revision, address and request id;
// served newest first with filters and a cursor; kept across a restart (and,
// on PostgreSQL, visible from every replica).

type auditBackend struct {
	name string
	// open returns the store and a function that restarts it (closing the
	// old one) and a second replica's store (PostgreSQL only, else nil).
	open func(t *testing.T) (s *keystore.Store, restart func() *keystore.Store, other func() *keystore.Store)
}

func auditBackends() []auditBackend {
	return []auditBackend{
		{"local", func(t *testing.T) (*keystore.Store, func() *keystore.Store, func() *keystore.Store) {
			f := newFixture(t)
			return f.store, func() *keystore.Store { f.reopen(t); return f.store }, nil
		}},
		{"postgres", func(t *testing.T) (*keystore.Store, func() *keystore.Store, func() *keystore.Store) {
			c := pgtest.Start(t)
			stores, url := pgStores(t, c, 1)
			s := stores[0]
			return s, func() *keystore.Store {
					_ = s.Close()
					s = pgOpen(t, url, 1)[0]
					return s
				}, func() *keystore.Store {
					return pgOpen(t, url, 1)[0]
				}
		}},
	}
}

func caller(t *testing.T, id string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: id})
}

// fullTrail reads every page of service's trail with q's filters.
func fullTrail(t *testing.T, s *keystore.Store, token, service string, q keystore.AuditQuery) []keystore.AuditEntry {
	t.Helper()
	var all []keystore.AuditEntry
	for {
		p, err := s.Audit(t.Context(), token, service, q)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		all = append(all, p.Entries...)
		if p.Next == 0 {
			return all
		}
		q.Before = p.Next
	}
}

func summary(entries []keystore.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Action+"/"+e.Outcome+"/"+http.StatusText(e.Status)+"/"+e.Code+"/"+e.Actor+"/"+e.RequestID)
	}
	return out
}

func TestAuditTrail(t *testing.T) {
	for _, be := range auditBackends() {
		t.Run(be.name, func(t *testing.T) {
			s, restart, other := be.open(t)
			const svc = "team-demo"
			admin, editor := svc+"-admin-token", svc+"-editor-token"

			created, err := s.CreateKey(caller(t, "r1"), admin, svc, readSpec())
			if err != nil {
				t.Fatal(err)
			}
			up := readSpec()
			up.Name, up.ContentAPI.Default.Post = "web2", true
			if _, err := s.UpdateKey(caller(t, "r2"), admin, svc, created.ID, up); err != nil {
				t.Fatal(err)
			}
			rotated, err := s.RotateKey(caller(t, "r3"), admin, svc, created.ID)
			if err != nil {
				t.Fatal(err)
			}
			refusals := []struct {
				id     string
				status int
				call   func(ctx context.Context) error
			}{
				{"r4", http.StatusForbidden, func(ctx context.Context) error {
					_, err := s.CreateKey(ctx, editor, svc, readSpec())
					return err
				}},
				{"r5", http.StatusUnauthorized, func(ctx context.Context) error {
					_, err := s.RotateKey(ctx, "no-such-token", svc, created.ID)
					return err
				}},
				{"r6", http.StatusUnprocessableEntity, func(ctx context.Context) error {
					bad := readSpec()
					bad.ContentAPI.Default = keystore.ContentPerms{GetAllDrafts: true}
					_, err := s.UpdateKey(ctx, admin, svc, created.ID, bad)
					return err
				}},
				{"r7", http.StatusNotFound, func(ctx context.Context) error {
					return s.DeleteKey(ctx, admin, svc, "no-such-key")
				}},
				{"r8", http.StatusConflict, func(ctx context.Context) error {
					for range 3 { // team allows 3 keys; the demo key is one
						if _, err := s.CreateKey(ctx, admin, svc, readSpec()); err != nil {
							return err
						}
					}
					return nil
				}},
			}
			for _, r := range refusals {
				err := r.call(caller(t, r.id))
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != r.status {
					t.Fatalf("%s: %v, want %d", r.id, err, r.status)
				}
			}
			if err := s.DeleteKey(caller(t, "r9"), admin, svc, created.ID); err != nil {
				t.Fatal(err)
			}

			check := func(t *testing.T, s *keystore.Store) {
				all := fullTrail(t, s, admin, svc, keystore.AuditQuery{Limit: 2})
				got := strings.Join(summary(all), "\n")
				want := strings.Join([]string{
					"delete/allowed/No Content/allowed/team-demo-admin/r9",
					"create/refused/Conflict/key_limit_exceeded/team-demo-admin/r8",
					"create/allowed/Created/allowed/team-demo-admin/r8",
					"delete/refused/Not Found/key_not_found/team-demo-admin/r7",
					"update/refused/Unprocessable Entity/invalid_key_config/team-demo-admin/r6",
					"rotate/refused/Unauthorized/unauthenticated//r5",
					"create/refused/Forbidden/forbidden/team-demo-editor/r4",
					"rotate/allowed/OK/allowed/team-demo-admin/r3",
					"update/allowed/OK/allowed/team-demo-admin/r2",
					"create/allowed/Created/allowed/team-demo-admin/r1",
				}, "\n")
				if got != want {
					t.Fatalf("trail, newest first:\n%s\nwant\n%s", got, want)
				}
				for i, e := range all {
					if i > 0 && e.ID >= all[i-1].ID {
						t.Errorf("ids not descending: %d after %d", e.ID, all[i-1].ID)
					}
					if i > 0 && e.At.After(all[i-1].At) {
						t.Errorf("entry %d is later than the entry after it", e.ID)
					}
					if e.ClientIP != "192.0.2.7" || e.Service != svc || e.At.IsZero() {
						t.Errorf("entry %d: address %q service %q at %v", e.ID, e.ClientIP, e.Service, e.At)
					}
					if e.Code != "unknown_action" && e.Status != http.StatusNotFound && e.PolicyRevision != keystoretest.Revision {
						t.Errorf("entry %d (%s %d): policy revision %q", e.ID, e.Action, e.Status, e.PolicyRevision)
					}
				}
				// Before and after: the update shows both configurations; the
				// rotation the same one at the next revision; the delete only before.
				upd, rot, del := all[8], all[7], all[0]
				if upd.Before == nil || upd.Before.Name != "web" || upd.After == nil || upd.After.Name != "web2" || !upd.After.ContentAPI.Default.Post ||
					upd.After.Revision != 2 || upd.KeyID != created.ID {
					t.Errorf("update entry: %+v before %+v after %+v", upd, upd.Before, upd.After)
				}
				if rot.Before == nil || rot.After == nil || rot.Before.Name != "web2" || rot.After.Revision != rot.Before.Revision+1 {
					t.Errorf("rotate entry before %+v after %+v", rot.Before, rot.After)
				}
				if del.Before == nil || del.After != nil || del.KeyID != created.ID || del.StoreRevision == 0 {
					t.Errorf("delete entry %+v", del)
				}
				// A refused update records what was asked for.
				if r6 := all[4]; r6.After == nil || !r6.After.ContentAPI.Default.GetAllDrafts || r6.Before == nil {
					t.Errorf("refused update entry before %+v after %+v", r6.Before, r6.After)
				}
				// Never a secret or a secret hash.
				raw, _ := json.Marshal(all)
				for _, secret := range []string{created.Secret, rotated.Secret} {
					h := sha256.Sum256([]byte(secret))
					if strings.Contains(string(raw), secret) || strings.Contains(string(raw), hex.EncodeToString(h[:])) {
						t.Fatal("a secret or its hash is in the audit trail")
					}
				}

				// Filters.
				for _, tc := range []struct {
					name string
					q    keystore.AuditQuery
					want []string
				}{
					{"by action", keystore.AuditQuery{Action: "rotate"}, []string{"r5", "r3"}},
					{"by actor", keystore.AuditQuery{Actor: "team-demo-editor"}, []string{"r4"}},
					{"by key", keystore.AuditQuery{KeyID: created.ID, Action: "update"}, []string{"r6", "r2"}},
					{"time range", keystore.AuditQuery{Since: all[2].At, Until: all[1].At.Add(time.Microsecond)}, []string{"r8", "r8"}},
					{"nothing before the first", keystore.AuditQuery{Until: all[len(all)-1].At}, nil},
				} {
					t.Run(tc.name, func(t *testing.T) {
						var ids []string
						for _, e := range fullTrail(t, s, admin, svc, tc.q) {
							ids = append(ids, e.RequestID)
						}
						if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
							t.Errorf("request ids %v, want %v", ids, tc.want)
						}
					})
				}
				// Only admins of the service read it.
				for _, token := range []string{editor, "hobby-demo-admin-token", ""} {
					_, err := s.Audit(t.Context(), token, svc, keystore.AuditQuery{})
					var ke *keystore.Error
					if !errors.As(err, &ke) || (ke.Status != http.StatusForbidden && ke.Status != http.StatusUnauthorized) {
						t.Errorf("Audit with %q: %v, want 401/403", token, err)
					}
				}
				if p, err := s.Audit(t.Context(), "hobby-demo-admin-token", "hobby-demo", keystore.AuditQuery{}); err != nil || len(p.Entries) != 0 {
					t.Errorf("another service's trail: %v %v", p.Entries, err)
				}
			}
			t.Run("served", func(t *testing.T) { check(t, s) })
			if other != nil {
				t.Run("another replica", func(t *testing.T) { check(t, other()) })
			}
			s = restart()
			t.Run("after restart", func(t *testing.T) { check(t, s) })
		})
	}
}

// TestAuditConcurrent: writes, refusals and trail reads at once (run with
// -race): every answered attempt has exactly one entry, ids are unique and
// ordered, and every allowed entry follows its change.
func TestAuditConcurrent(t *testing.T) {
	for _, be := range auditBackends() {
		t.Run(be.name, func(t *testing.T) {
			s, _, _ := be.open(t)
			const svc = "enterprise-demo"
			admin := svc + "-admin-token"
			var allowed, refused atomic.Int64
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					for range 10 {
						c, err := s.CreateKey(caller(t, ""), admin, svc, readSpec())
						if err != nil {
							continue // the plan's limit: refused, and audited as such
						}
						allowed.Add(1)
						if err := s.DeleteKey(caller(t, ""), admin, svc, c.ID); err == nil {
							allowed.Add(1)
						}
					}
				})
			}
			for range 2 {
				wg.Go(func() {
					for range 15 {
						if _, err := s.CreateKey(caller(t, ""), "no-such-token", svc, readSpec()); err != nil {
							refused.Add(1)
						}
					}
				})
				wg.Go(func() {
					for range 20 {
						if _, err := s.Audit(t.Context(), admin, svc, keystore.AuditQuery{Limit: 5}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			all := fullTrail(t, s, admin, svc, keystore.AuditQuery{Limit: 100})
			var a, r int64
			seen := map[uint64]bool{}
			for i, e := range all {
				if seen[e.ID] || (i > 0 && e.ID >= all[i-1].ID) {
					t.Fatalf("entry id %d repeated or out of order", e.ID)
				}
				seen[e.ID] = true
				switch {
				case e.Outcome == keystore.OutcomeAllowed:
					a++
				case e.Status == http.StatusUnauthorized:
					r++
				}
			}
			if a != allowed.Load() || r != refused.Load() {
				t.Fatalf("%d allowed and %d 401 entries, want %d and %d", a, r, allowed.Load(), refused.Load())
			}
		})
	}
}
