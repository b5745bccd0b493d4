package postgres

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/pgtest"
)

// keyRows inserts n keys of service team-demo named prefix-<i>.
func keyRows(t *testing.T, ctx context.Context, conn *pgx.Conn, prefix string, n int) {
	t.Helper()
	at := time.Now().UTC().Truncate(time.Microsecond)
	conf := `{"contentApi": {"default": {"get": true}, "individual": {"blogs": {"post": true}}}, "managementApi": {"getMedia": true}}`
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"keys"}, []string{"id", "service", "name", "secret_hash", "configuration", "created_by", "created_at", "updated_at", "revision"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			h := sha256.Sum256(fmt.Appendf(nil, "%s-secret-%d", prefix, i))
			return []any{fmt.Sprintf("%s-%d", prefix, i), "team-demo", "k", h[:], conf, "seed", at, at, int64(1)}, nil
		})); err != nil {
		t.Fatal(err)
	}
}

func ids(keys []*keystore.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	slices.Sort(out)
	return out
}

// The keys read in parallel parts are exactly the keys the load's snapshot
// sees, decoded as the one-query read decodes them: a write committed
// after the snapshot was taken is in no part, and no key is read twice or
// missed at the parts' boundaries.
func TestParallelKeyReadIsTheSnapshot(t *testing.T) {
	ctx := t.Context()
	c := pgtest.Start(t)
	url, err := c.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, MigrateOptions{URL: url, DataDir: "../../../data", Authorizer: &keystoretest.Authorizer{}}); err != nil {
		t.Fatal(err)
	}
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.WithoutCancel(ctx))
	keyRows(t, ctx, writer, "before", 3000)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b := &pgBackend{pool: pool, log: slog.New(slog.DiscardHandler), parallelBlocks: 1}

	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM keys`).Scan(&n); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	// Committed after the snapshot: deletes at both ends of the table,
	// updates (new row versions in other blocks) and new keys.
	for _, q := range []string{
		`DELETE FROM keys WHERE id IN ('before-0', 'before-2999')`,
		`UPDATE keys SET name = 'changed' WHERE id LIKE 'before-1%'`,
	} {
		if _, err := writer.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	keyRows(t, ctx, writer, "after", 500)

	keys, parts, err := b.readKeys(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if parts != readParts {
		t.Fatalf("read in %d parts, want %d", parts, readParts)
	}
	rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM keys`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*keystore.Key, error) { return scanKey(r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != n || len(keys) != n {
		t.Fatalf("parallel read %d keys, one query %d, the snapshot's count %d", len(keys), len(want), n)
	}
	if got, w := ids(keys), ids(want); !slices.Equal(got, w) {
		t.Fatalf("parallel read ids differ from the one query's")
	}
	byID := map[string]*keystore.Key{}
	for _, k := range want {
		byID[k.ID] = k
	}
	for _, k := range keys {
		w := byID[k.ID]
		if k.Name != w.Name || k.Name == "changed" || keystore.SecretHash(k) != keystore.SecretHash(w) ||
			!k.CreatedAt.Equal(w.CreatedAt) || k.ContentAPI.Individual["blogs"] != w.ContentAPI.Individual["blogs"] || k.ManagementAPI != w.ManagementAPI {
			t.Fatalf("key %s: parallel %+v, one query %+v", k.ID, k, w)
		}
	}
}

// prune deletes every change row older than the retention however many
// there are (in several bounded statements), and none of the newer ones.
func TestPruneDeletesEveryAgedRowInBatches(t *testing.T) {
	ctx := t.Context()
	c := pgtest.Start(t)
	url, err := c.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, MigrateOptions{URL: url, DataDir: "../../../data", Authorizer: &keystoretest.Authorizer{}}); err != nil {
		t.Fatal(err)
	}
	aged := 2*pruneBatch + 123
	if err := c.Exec(ctx, dbName(t, url), fmt.Sprintf(`INSERT INTO changes (revision, op, key_id, service, actor, at)
		SELECT g, 'delete', 'k' || g, 'team-demo', 'test', now() - interval '2 hours' FROM generate_series(1, %d) g;
		INSERT INTO changes (revision, op, key_id, service, actor)
		SELECT g, 'delete', 'k' || g, 'team-demo', 'test' FROM generate_series(%d, %d) g`, aged, aged+1, aged+10)); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	b := &pgBackend{pool: pool, log: slog.New(slog.DiscardHandler), retention: time.Hour}
	n, err := b.prune(ctx)
	if err != nil || n != int64(aged) {
		t.Fatalf("prune = %d, %v; want %d", n, err, aged)
	}
	var left, oldest int64
	if err := pool.QueryRow(ctx, `SELECT count(*), min(revision) FROM changes`).Scan(&left, &oldest); err != nil {
		t.Fatal(err)
	}
	if left != 10 || oldest != int64(aged+1) {
		t.Fatalf("%d rows left from revision %d; want the 10 newer ones from %d", left, oldest, aged+1)
	}
}

// dbName is the database name of a pgtest URL.
func dbName(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}
