// Package postgres is the shared driver of keystore: keys, services,
// members, IP restriction settings and the audit trail live in PostgreSQL,
// and any number of keygate replicas share them, each deciding from its own
// in-memory index:
//
//	store, err := keystore.New(ctx, postgres.New(url, postgres.Options{}), opts)
//
// # Files
//
//	postgres.go   Driver, Options, the Backend: open, the change feed
//	              (applier, LISTEN, heartbeat, resync), status, staleness
//	tx.go         the Tx over pgx: one write transaction
//	keyconfig.go  decoding of the configuration column (full loads)
//	audit.go      the audit table, write timeouts, commit resolution
//	ip.go         IP restriction rows and their change rows
//	readonly.go   read-only mode (keygate replay --store)
//	migrate.go    schema migrations, seeding, Migrate (keygate migrate)
//	migrations/   the schema, embedded, applied in order
//
// # Schema
//
// migrations/0001_init.sql: services (id, plan, key_count), members (id,
// service, role, token_hash), keys (id, service, name, secret_hash,
// configuration jsonb, created/updated, revision), head (one row: the
// newest revision, the epoch, seeded_at), changes (revision, op put/delete,
// key id, service, row: the persisted key encoding, keystore.KeyRecord),
// schema_migrations. 0002_audit.sql: the audit table, with a unique partial
// index on (service, actor, idempotency key) among allowed rows.
// 0003_ip_restrictions.sql: ip_restrictions (service, settings jsonb) and
// the change op "ip", whose row is the whole setting after the write. A
// migration is never edited once released: a database written by an
// earlier keygate opens unchanged (testdata/main/postgres.sql, compat_test.go).
//
// # Writes
//
// One READ COMMITTED transaction per write (Update), in four round trips
// on a pooled connection: BEGIN and lock_timeout (Options.LockTimeout,
// default 5 s) and statement_timeout (10 s), set locally, go in the batch
// of the first statements, the member lookup and the write's service row
// FOR UPDATE (the keys policy decides on its key_count, which the write
// changes with the key; Service answers from that row); the key FOR
// UPDATE; then, in one batch, the key's own statements and one statement
// that updates the head row (last, for a gap-free revision) and, reading
// the revision from it (a WITH of data-modifying parts), inserts the change
// row and the audit row and calls pg_notify(revision); COMMIT, a simple
// query of its own. A timeout is 503 store_busy. SecretInUse asks the
// database nothing when the secret is the one of the key row the write
// locked (an update that keeps its secret: secret_hash is unique). Every
// write waits for the head row from its update to the COMMIT, which bounds
// the write rate of the whole database; a replica's own writes take it in
// turn (a turn held from that batch to the COMMIT, waited for at most the
// lock timeout), so that at most one per replica waits in the database,
// where every commit would wake the waiters. A write that sees another of
// its replica waiting for the turn leaves out pg_notify: the next write's
// notification covers it (the other replicas read up to the head), and one
// owed when no write waits any more (the last failed or gave up) is sent on
// its own. Then the writer waits until its own index applied the revision.
// Write timestamps are cut to the microsecond (TimePrecision), PostgreSQL's
// precision, so that a replica that applied a change and one that loaded it
// fresh hold equal keys.
//
// # Commit resolution
//
// A COMMIT that returns an error is resolved before answering
// (resolveCommit): on another connection, lock the service row (granted
// only once the write's transaction is over on the server), then look for
// the write's audit row by request id. Found: the write's own success; not
// found: 503 store_unavailable; the check itself failing: 503
// outcome_unknown carrying the request id.
//
// # Change feed
//
// Every replica's index follows the changes table: a LISTEN connection
// wakes the applier, which also reads the head every Options.Heartbeat
// (default 1 s), applies contiguous batches of changes in one index
// transaction each (keystore.Index.Apply), and reloads everything from a
// REPEATABLE READ READ ONLY snapshot (Index.Load, a resync) whenever the log
// does not continue where it stands (a gap, change rows pruned after
// Options.Retention, an epoch or time that differs at the applied
// revision). A keys table of 10,000 blocks or more (80 MB: tens of
// thousands of keys) is read in two block ranges at once, each on a
// connection of its own in a transaction that imports the load's exported
// snapshot (SET TRANSACTION SNAPSHOT), so the load sees exactly what one
// query would (before PostgreSQL 14, with a pool of fewer than four
// connections or none free, or where snapshots cannot be exported, it is
// one query). Each key's configuration JSON is parsed by
// hand when it is in the form keygate writes, else by encoding/json.
// Change rows older than the retention are pruned beside the applier,
// oldest first, at most 10,000 a statement.
//
// Status reports readiness, the applied and head revisions and the last
// error; Stale(max) is what the server checks on every decision. Until the
// first load, every decision fails closed and every key operation is a
// 503. Open waits up to 15 s for the first load (migration, seeding,
// load); a longer one (a large database) finishes in the background rather
// than being cut and started over.
//
// # Read-only mode
//
// Options.ReadOnly opens the database without migrating or seeding, over
// default_transaction_read_only sessions, loads it once with no change
// feed, and refuses every write (503 store_read_only); a database without
// the complete schema fails Open.
//
// # Migrate
//
// Open applies the migrations not yet applied and seeds an empty database
// from data/ once (head.seeded_at), in one transaction under an advisory
// lock, so replicas starting together migrate once. Migrate does the same
// without serving (keygate migrate) and, with From, imports another store's
// content (keystore.Import: keys, audit trail escaped as the bounds escape
// it and nothing cut, IP restriction settings) into a database that holds
// no keys yet; cmd/keygate reads it with local.ReadState.
package postgres
