package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

// pgStores opens n stores on one fresh database of c, as n replicas would.
func pgStores(t *testing.T, c *pgtest.Cluster, n int, mutate ...func(*pgOpts)) ([]*keystore.Store, string) {
	t.Helper()
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return pgOpen(t, url, n, mutate...), url
}

func pgOpen(t *testing.T, url string, n int, mutate ...func(*pgOpts)) []*keystore.Store {
	t.Helper()
	var stores []*keystore.Store
	for range n {
		opts := pgOpts{keystore.Options{DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}, Logger: slog.New(slog.DiscardHandler)},
			postgres.Options{Heartbeat: 200 * time.Millisecond}}
		for _, m := range mutate {
			m(&opts)
		}
		s, err := openPG(t.Context(), url, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	return stores
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func keyIDs(t *testing.T, s *keystore.Store, service string) []string {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), service+"-admin-token", service)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID+"/"+k.UpdatedAt.String())
	}
	return ids
}

func TestPostgresSeedsOnceAndWritesReachEveryReplica(t *testing.T) {
	c := pgtest.Start(t)
	stores, url := pgStores(t, c, 2)
	a, b := stores[0], stores[1]
	for i, s := range stores {
		if _, ok := s.KeyBySecret(demoSecret); !ok {
			t.Fatalf("replica %d: seed key missing", i)
		}
		if st := s.Status(); st.Kind != keystore.StorePostgres || !st.Ready || st.Applied != 1 {
			t.Fatalf("replica %d: status %+v, want postgres, ready, revision 1 (the seed)", i, st)
		}
	}
	created, err := a.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec())
	if err != nil {
		t.Fatal(err)
	}
	// The writer's own index has it when CreateKey returns.
	if _, ok := a.KeyBySecret(created.Secret); !ok {
		t.Fatal("writer's index lacks the key it just created")
	}
	eventually(t, 2*time.Second, "create reaches B", func() bool { _, ok := b.KeyBySecret(created.Secret); return ok })

	gen := b.Generation()
	rotated, err := a.RotateKey(t.Context(), teamAdmin, "team-demo", created.ID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "rotation reaches B", func() bool { _, ok := b.KeyBySecret(created.Secret); return !ok })
	if _, ok := b.KeyBySecret(rotated.Secret); !ok {
		t.Fatal("B: the new secret does not work")
	}
	if b.Generation() == gen {
		t.Fatal("B's generation did not move")
	}
	if err := a.DeleteKey(t.Context(), teamAdmin, "team-demo", created.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "delete reaches B", func() bool { _, ok := b.KeyBySecret(rotated.Secret); return !ok })

	// A refused write uses no revision.
	before := a.Status().Applied
	_, err = a.CreateKey(t.Context(), teamEditor, "team-demo", readSpec())
	var ke *keystore.Error
	if !errors.As(err, &ke) || ke.Status != http.StatusForbidden {
		t.Fatalf("editor create: %v, want 403", err)
	}
	if err := c.Exec(t.Context(), "postgres", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var head, changes int64
	if err := conn.QueryRow(t.Context(), `SELECT revision, (SELECT count(*) FROM changes) FROM head`).Scan(&head, &changes); err != nil {
		t.Fatal(err)
	}
	if uint64(head) != before || changes != 3 {
		t.Fatalf("head %d with %d change rows, want %d and 3", head, changes, before)
	}

	// A third replica opened now seeds nothing and sees the same keys.
	c3 := pgOpen(t, url, 1)[0]
	if got, want := keyIDs(t, c3, "team-demo"), keyIDs(t, a, "team-demo"); !slices.Equal(got, want) {
		t.Fatalf("fresh replica %v, writer %v", got, want)
	}
}

func TestPostgresConcurrentCreatesHoldThePlanLimit(t *testing.T) {
	c := pgtest.Start(t)
	for _, tc := range []struct {
		name      string
		isolation string // the database's default, which the write path must override
	}{
		{"read committed default", ""},
		{"repeatable read default", "repeatable read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, url, err := c.NewNamedDatabase(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tc.isolation != "" {
				if err := c.Exec(t.Context(), "postgres", "ALTER DATABASE "+db+" SET default_transaction_isolation = '"+tc.isolation+"'"); err != nil {
					t.Fatal(err)
				}
			}
			stores := pgOpen(t, url, 3)
			limits := keystoretest.DefaultLimits()
			for _, svc := range []struct{ id, plan string }{{"team-demo", "team"}, {"business-demo", "business"}} {
				var wg sync.WaitGroup
				var mu sync.Mutex
				ok, conflict := 0, 0
				for i := range 50 {
					wg.Go(func() {
						_, err := stores[i%3].CreateKey(t.Context(), svc.id+"-admin-token", svc.id, readSpec())
						mu.Lock()
						defer mu.Unlock()
						var ke *keystore.Error
						switch {
						case err == nil:
							ok++
						case errors.As(err, &ke) && ke.Status == http.StatusConflict:
							conflict++
						default:
							t.Errorf("create: %v", err)
						}
					})
				}
				wg.Wait()
				seeded := 0
				if svc.id == "team-demo" {
					seeded = 1
				}
				if want := limits[svc.plan] - seeded; ok != want || conflict != 50-want {
					t.Errorf("%s: %d created, %d refused; want %d and %d", svc.id, ok, conflict, want, 50-want)
				}
				conn, err := pgx.Connect(t.Context(), url)
				if err != nil {
					t.Fatal(err)
				}
				var stored, rows int
				if err := conn.QueryRow(t.Context(), `SELECT key_count, (SELECT count(*) FROM keys WHERE service = $1) FROM services WHERE id = $1`, svc.id).Scan(&stored, &rows); err != nil {
					t.Fatal(err)
				}
				conn.Close(context.Background())
				if stored != rows || rows != limits[svc.plan] {
					t.Errorf("%s: key_count %d, rows %d, want both %d", svc.id, stored, rows, limits[svc.plan])
				}
				want := keyIDs(t, stores[0], svc.id)
				for i, s := range stores[1:] {
					eventually(t, 3*time.Second, "replicas converge", func() bool { return slices.Equal(keyIDs(t, s, svc.id), want) })
					_ = i
				}
			}
		})
	}
}

// TestPostgresReplicasStartingTogetherSeedOnce: replicas opening an empty
// database at the same moment migrate and seed it exactly once, and a later
// Open applies no migration again.
func TestPostgresReplicasStartingTogetherSeedOnce(t *testing.T) {
	c := pgtest.Start(t)
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { pgOpen(t, url, 1) })
	}
	wg.Wait()
	res, err := postgres.Migrate(t.Context(), postgres.MigrateOptions{URL: url, DataDir: repoDataDir, Authorizer: &keystoretest.Authorizer{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.Seeded {
		t.Fatalf("Migrate after the replicas: %+v, want nothing applied or seeded", res)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var services, members, keys, versions int
	var head int64
	if err := conn.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM services), (SELECT count(*) FROM members),
		(SELECT count(*) FROM keys), (SELECT count(*) FROM schema_migrations), (SELECT revision FROM head)`).Scan(&services, &members, &keys, &versions, &head); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if services != 5 || members != 10 || keys != 1 || versions != len(files) || head != 1 {
		t.Fatalf("services %d members %d keys %d migrations %d head %d, want 5 10 1 %d 1 (data/: five services, two members each, one key)", services, members, keys, versions, head, len(files))
	}
	// Tokens and secrets are stored as their SHA-256.
	var tokens, secrets int
	if err := conn.QueryRow(t.Context(), `SELECT
		(SELECT count(*) FROM members WHERE token_hash = sha256(convert_to('team-demo-admin-token', 'UTF8'))),
		(SELECT count(*) FROM keys WHERE secret_hash = sha256(convert_to('team-demo-read-key', 'UTF8')))`).Scan(&tokens, &secrets); err != nil {
		t.Fatal(err)
	}
	if tokens != 1 || secrets != 1 {
		t.Fatalf("%d members with the SHA-256 of the demo admin token, %d keys with that of the demo secret; want 1 and 1", tokens, secrets)
	}
}

// TestPostgresFeedWithoutNotifications: a change committed without a
// notification (as one sent while the listener was away is lost) is applied
// by the heartbeat; a new epoch makes the replica resync.
func TestPostgresFeedWithoutNotifications(t *testing.T) {
	c := pgtest.Start(t)
	const heartbeat = 200 * time.Millisecond
	stores, url := pgStores(t, c, 1, func(o *pgOpts) { o.Heartbeat = heartbeat })
	s := stores[0]
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	const secret = "written-behind-keygates-back"
	sum := sha256.Sum256([]byte(secret))
	row := `{"id":"key_quiet0000000000","service":"team-demo","name":"quiet","contentApi":{"default":{"get":true},"individual":{}},` +
		`"managementApi":{},"createdBy":"sql","createdAt":"2025-01-01T00:00:00Z","updatedAt":"2025-01-01T00:00:00Z","revision":1,` +
		`"secretHash":"sha256:` + hex.EncodeToString(sum[:]) + `"}`
	exec(`BEGIN`)
	exec(`INSERT INTO keys (id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision)
		VALUES ('key_quiet0000000000', 'team-demo', 'quiet', $1, '{"contentApi":{"default":{"get":true}},"managementApi":{}}', 'sql', '2025-01-01Z', '2025-01-01Z', 1)`, sum[:])
	exec(`UPDATE services SET key_count = key_count + 1 WHERE id = 'team-demo'`)
	exec(`INSERT INTO changes (revision, op, key_id, service, row, actor) SELECT revision + 1, 'put', 'key_quiet0000000000', 'team-demo', $1, 'sql' FROM head`, row)
	exec(`UPDATE head SET revision = revision + 1`)
	exec(`COMMIT`)
	took := eventually(t, 3*heartbeat, "applied without a notification", func() bool { _, ok := s.KeyBySecret(secret); return ok })
	t.Logf("applied %s after the commit (heartbeat %s)", took, heartbeat)
	if st := s.Status(); st.Resyncs != 0 {
		t.Fatalf("status %+v: a contiguous change needs no resync", st)
	}

	exec(`UPDATE head SET epoch = 'another database'`)
	eventually(t, 3*heartbeat, "resync on a new epoch", func() bool { return s.Status().Resyncs == 1 })
	if _, ok := s.KeyBySecret(secret); !ok {
		t.Fatal("the key is gone after the resync")
	}
}

// Concurrent writes of one replica leave their notifications to the write
// waiting behind them; the other replica must still be woken for every
// change, with no heartbeat to fall back on.
func TestPostgresConcurrentWritesWakeTheOtherReplica(t *testing.T) {
	c := pgtest.Start(t)
	stores, _ := pgStores(t, c, 2, func(o *pgOpts) { o.Heartbeat = time.Hour })
	a, b := stores[0], stores[1]
	services := []string{"hobby-demo", "team-demo", "business-demo", "advanced-demo", "enterprise-demo"}
	for _, svc := range services {
		for range 3 { // as many as the plan allows
			if _, err := a.CreateKey(t.Context(), svc+"-admin-token", svc, readSpec()); err != nil {
				var ke *keystore.Error
				if !errors.As(err, &ke) || ke.Status != http.StatusConflict {
					t.Fatalf("create in %s: %v", svc, err)
				}
			}
		}
	}
	for round := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last []string // each key's secret after its last rotation
		writers := 0
		for _, svc := range services {
			keys, err := a.ListKeys(t.Context(), svc+"-admin-token", svc)
			if err != nil {
				t.Fatalf("%s: %v", svc, err)
			}
			writers += len(keys)
			for _, k := range keys {
				wg.Go(func() {
					var secret string
					for range 4 {
						created, err := a.RotateKey(t.Context(), svc+"-admin-token", svc, k.ID)
						if err != nil {
							t.Errorf("rotate %s: %v", k.ID, err)
							return
						}
						secret = created.Secret
					}
					mu.Lock()
					last = append(last, secret)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		if writers < 6 {
			t.Fatalf("%d seeded keys to rotate concurrently, want 6 or more", writers)
		}
		want := a.Status().Applied
		eventually(t, 2*time.Second, fmt.Sprintf("round %d: B reaches revision %d", round, want), func() bool { return b.Status().Applied >= want })
		for _, s := range last {
			if _, ok := b.KeyBySecret(s); !ok {
				t.Fatalf("round %d: B lacks a key's last secret", round)
			}
		}
	}
}
