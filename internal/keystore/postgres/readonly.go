package postgres

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/keystore"
)

// readOnlyError answers a write to a store opened with Options.ReadOnly.
func readOnlyError() error {
	return &keystore.Error{Status: http.StatusServiceUnavailable, Code: "store_read_only", Message: "the key store is open read-only"}
}

// openReadOnly finishes opening b read-only: the schema must be complete
// (nothing is migrated or seeded), then one full load from a REPEATABLE
// READ READ ONLY snapshot. No change feed runs: the index is the database
// as it was at Open.
func openReadOnly(ctx context.Context, b *pgBackend) (*pgBackend, error) {
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := checkSchema(lctx, b.pool)
	if err == nil {
		err = b.fullResync(lctx, "read-only load")
	}
	if err != nil {
		b.pool.Close()
		return nil, fmt.Errorf("keystore: %w", err)
	}
	b.setupDone = true
	return b, nil
}

// checkSchema refuses a database that lacks keygate's schema, or any of its
// migrations, or has a newer one.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	files, err := migrations()
	if err != nil {
		return err
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	if !exists {
		return &keystore.DataError{File: "schema_migrations", Reason: "the database has no keygate schema (run keygate migrate --store … or keygate serve --store … first)"}
	}
	rows, err := pool.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	for _, v := range done {
		if !slices.ContainsFunc(files, func(f migrationFile) bool { return f.version == int(v) }) {
			return &keystore.DataError{File: "schema_migrations", Field: strconv.Itoa(int(v)), Reason: fmt.Sprintf("the database has schema version %d, which this keygate does not know (upgrade keygate)", v)}
		}
	}
	for _, f := range files {
		if !slices.Contains(done, int32(f.version)) {
			return &keystore.DataError{File: "schema_migrations", Field: strconv.Itoa(f.version), Reason: fmt.Sprintf("migration %s is not applied (run keygate migrate --store …)", f.name)}
		}
	}
	return nil
}
