package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/keystore"
)

// MigrateOptions configure Migrate.
type MigrateOptions struct {
	// URL is the connection string (postgres://…).
	URL string
	// DataDir seeds services and members (and keys, without From) into an
	// empty database.
	DataDir string
	// From, when set, is another store's content (a local state, read by
	// the local driver) whose keys and audit trail are imported instead of
	// data/keys.json, and whose IP restriction settings (when it has any)
	// replace data/ip-restrictions.json. The database must hold no keys
	// yet.
	From *keystore.Import
	// Authorizer validates seed keys. Required.
	Authorizer keystore.Authorizer
	Logger     *slog.Logger
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	// Applied are the schema versions applied now.
	Applied []int
	// Seeded reports whether the database was empty and got seeded.
	Seeded bool
	// Keys is the number of keys imported or seeded.
	Keys int
	// AuditEntries is the number of audit entries imported with a state
	// file (its <state>.audit).
	AuditEntries int
	// IPRestrictions is the number of services whose IP restriction
	// setting was imported or seeded.
	IPRestrictions int
}

// Migrate applies the schema and seeds an empty database, as keygate serve
// does at start; with From it imports another store's content.
func Migrate(ctx context.Context, opts MigrateOptions) (MigrateResult, error) {
	if opts.Authorizer == nil {
		return MigrateResult{}, errors.New("keystore: MigrateOptions.Authorizer is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.New(ctx, opts.URL)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: --store: %w", err)
	}
	defer pool.Close()
	var imp stateImport
	if opts.From != nil {
		imp = stateImport{keys: opts.From.Keys, ip: opts.From.IP, trail: opts.From.Trail, ipFile: opts.From.IPFile}
		for _, k := range imp.keys {
			k.CreatedAt = k.CreatedAt.UTC().Truncate(time.Microsecond)
			k.UpdatedAt = k.UpdatedAt.UTC().Truncate(time.Microsecond)
		}
	}
	var res MigrateResult
	err = setupWith(ctx, pool, opts.DataDir, opts.Authorizer, logger, imp, &res)
	if err != nil {
		return res, fmt.Errorf("keystore: %w", err)
	}
	return res, nil
}

func setup(ctx context.Context, pool *pgxpool.Pool, dataDir string, authz keystore.Authorizer, logger *slog.Logger) error {
	return setupWith(ctx, pool, dataDir, authz, logger, stateImport{}, &MigrateResult{})
}

// stateImport is what keygate migrate --from-state imports: the keys (nil:
// no import) and the IP restriction settings of the state's side file (nil:
// none; data/ seeds them).
type stateImport struct {
	keys []*keystore.Key
	ip   map[string]keystore.IPRestrictions
	// trail is the state file's audit trail, imported with the keys in
	// the same transaction (allowed entries with revision 0: their change
	// revisions were the state log's).
	trail  []keystore.AuditEntry
	ipFile string
}

// setupWith applies the schema migrations not yet applied and seeds an empty
// database, in one transaction under an advisory lock (replicas starting
// together migrate once). imp.keys, when not nil, replaces
// data/keys.json.
func setupWith(ctx context.Context, pool *pgxpool.Pool, dataDir string, authz keystore.Authorizer, logger *slog.Logger, imp stateImport, res *MigrateResult) error {
	files, err := migrations()
	if err != nil {
		return err
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	latest := migrationFile{}
	if n := len(files); n > 0 {
		latest = files[n-1]
	}
	for _, v := range done {
		if int(v) > latest.version {
			return &keystore.DataError{File: "schema_migrations", Field: strconv.Itoa(int(v)), Reason: fmt.Sprintf("the database has schema version %d; this keygate knows up to %d (upgrade keygate)", v, latest.version)}
		}
	}
	for _, f := range files {
		if slices.Contains(done, int32(f.version)) {
			continue
		}
		if _, err := tx.Exec(ctx, f.sql); err != nil {
			return fmt.Errorf("migration %s: %w", f.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, f.version, f.name); err != nil {
			return fmt.Errorf("migration %s: %w", f.name, err)
		}
		res.Applied = append(res.Applied, f.version)
		logger.Info("schema migration applied", "version", f.version, "name", f.name)
	}
	if err := seed(ctx, tx, dataDir, authz, logger, imp, res); err != nil {
		return err
	}
	if imp.keys != nil {
		for i := range imp.trail {
			// An earlier keygate recorded request text as it came: a NUL
			// byte, which PostgreSQL refuses, is imported escaped.
			e := new(imp.trail[i].Escaped())
			var rev *int64
			if e.Outcome == keystore.OutcomeAllowed {
				rev = new(int64)
			}
			if err := insertAudit(ctx, tx, e, rev); err != nil {
				return fmt.Errorf("import audit entry %d: %w", e.ID, err)
			}
		}
		res.AuditEntries = len(imp.trail)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// seed fills an empty database from data/ (services, members, IP restriction
// settings, and keys from keys.json or imported) exactly once:
// head.seeded_at marks it done. An import into a database that already
// holds keys is refused.
func seed(ctx context.Context, tx pgx.Tx, dataDir string, authz keystore.Authorizer, logger *slog.Logger, imp stateImport, res *MigrateResult) error {
	imported := imp.keys
	var seeded *time.Time
	if err := tx.QueryRow(ctx, `SELECT seeded_at FROM head FOR UPDATE`).Scan(&seeded); err != nil {
		return fmt.Errorf("seed: read head: %w", err)
	}
	if seeded != nil {
		if imported == nil {
			return nil
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM keys`).Scan(&n); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if n > 0 {
			return &keystore.DataError{File: "keys", Reason: fmt.Sprintf("the database already holds %d keys; a state file is imported into an empty database only", n)}
		}
		if imp.ip != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM ip_restrictions`); err != nil {
				return fmt.Errorf("import: %w", err)
			}
			var err error
			if res.IPRestrictions, err = insertIP(ctx, tx, imp.ipFile, imp.ip); err != nil {
				return fmt.Errorf("import: %w", err)
			}
		}
		return insertKeys(ctx, tx, imported, res)
	}
	dir, err := keystore.LoadDirectory(dataDir)
	if err != nil {
		return fmt.Errorf("load data: %w", err)
	}
	keys := imported
	if keys == nil {
		if keys, err = keystore.LoadSeedKeys(ctx, dataDir, dir, time.Now().UTC().Truncate(time.Microsecond), authz); err != nil {
			return fmt.Errorf("seed keys: %w", err)
		}
	}
	for _, s := range dir.Services {
		if _, err := tx.Exec(ctx, `INSERT INTO services (id, plan, apis) VALUES ($1, $2, $3)`, s.ID, s.Plan, s.APIs); err != nil {
			return fmt.Errorf("seed service %s: %w", s.ID, err)
		}
	}
	for _, m := range dir.Members {
		if _, err := tx.Exec(ctx, `INSERT INTO members (id, service, role, token_hash) VALUES ($1, $2, $3, $4)`, m.ID, m.Service, m.Role, tokenBytes(m)); err != nil {
			return fmt.Errorf("seed member %s: %w", m.ID, err)
		}
	}
	ipFile, ip := imp.ipFile, imp.ip
	if ip == nil {
		ipFile = filepath.Join(dataDir, keystore.IPSeedFile)
		if ip, err = keystore.ReadIPSeed(dataDir); err != nil {
			return fmt.Errorf("load data: %w", err)
		}
	}
	if res.IPRestrictions, err = insertIP(ctx, tx, ipFile, ip); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := insertKeys(ctx, tx, keys, res); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE head SET seeded_at = now()`); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	res.Seeded = true
	logger.Info("seeded an empty key store database from data", "services", len(dir.Services), "members", len(dir.Members), "keys", len(keys), "ipRestrictions", res.IPRestrictions)
	return nil
}

// insertKeys inserts keys, sets every service's key count from the rows and
// moves the head (without change rows: every replica that sees the new head
// finds no change to apply and resyncs).
func insertKeys(ctx context.Context, tx pgx.Tx, keys []*keystore.Key, res *MigrateResult) error {
	for _, k := range keys {
		if err := insertKey(ctx, tx, k); err != nil {
			return fmt.Errorf("insert key %s: %w", k.ID, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE services s SET key_count = (SELECT count(*) FROM keys k WHERE k.service = s.id)`); err != nil {
		return fmt.Errorf("count keys: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE head SET revision = revision + 1`); err != nil {
		return fmt.Errorf("move head: %w", err)
	}
	res.Keys = len(keys)
	return nil
}

type migrationFile struct {
	version   int
	name, sql string
}

// migrations lists the embedded migrations/NNNN_name.sql in version order.
func migrations() ([]migrationFile, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []migrationFile
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migrations: %s is not NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		out = append(out, migrationFile{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migrationFile) int { return a.version - b.version })
	return out, nil
}

// tokenBytes is m's token hash as the token_hash column holds it.
func tokenBytes(m *keystore.Member) []byte {
	h := keystore.TokenHash(m)
	return h[:]
}
