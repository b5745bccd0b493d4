package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/keystore"
)

// pgTx is a write transaction of the PostgreSQL driver: one READ COMMITTED
// transaction (set explicitly: under REPEATABLE READ the snapshot predates
// the row lock, and concurrent creates would all see the old key count), the
// one change it makes, and that change's audit entry.
type pgTx struct {
	tx     *writeTx
	change *pgChange
	entry  *keystore.AuditEntry
	// service is the service the write is on (Update's argument): its
	// row is locked in the same round trip as the member lookup, which
	// every key write makes first (Member), and Service answers from it.
	service string
	locked  *lockedService
	// keyHashes are the secret hashes of the key rows this transaction
	// locked (Key), by key id: SecretInUse answers from them (secret_hash
	// is unique and a locked row cannot change).
	keyHashes map[string][32]byte
	// writes are the key's own statements (PutKey, DeleteKey), sent in
	// the same round trip as the change row (Update) or before the next
	// read (flush).
	writes []pendingWrite
}

// lockedService is the outcome of locking the service row beside the
// member lookup: what Service returns for that service.
type lockedService struct {
	svc   *keystore.Service
	count int
	err   error
}

// pendingWrite is a statement of the write not sent yet; what names it in
// an error.
type pendingWrite struct {
	what, sql string
	args      []any
}

// writeTx is the transaction of one write, on a connection of the pool:
// BEGIN and the transaction's timeouts are sent with its first statements,
// in the same round trip. The COMMIT is a simple query of its own, as
// pgx.Tx sends it.
type writeTx struct {
	conn          *pgxpool.Conn
	lockTimeout   time.Duration
	begun, closed bool
}

// SendBatch sends b, after BEGIN and the timeouts when the transaction has
// not begun yet.
func (w *writeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if w.begun {
		return w.conn.SendBatch(ctx, b)
	}
	w.begun = true
	begin := &pgx.Batch{}
	begin.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	begin.Queue(`SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
		strconv.FormatInt(w.lockTimeout.Milliseconds(), 10), strconv.FormatInt(statementTimeout.Milliseconds(), 10))
	begin.QueuedQueries = append(begin.QueuedQueries, b.QueuedQueries...)
	br := w.conn.SendBatch(ctx, begin)
	for range 2 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return failedBatch{err: fmt.Errorf("begin: %w", err)}
		}
	}
	return br
}

// QueryRow runs one query that returns a row.
func (w *writeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if w.begun {
		return w.conn.QueryRow(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := w.SendBatch(ctx, b)
	return batchRow{row: br.QueryRow(), br: br}
}

// Exec runs one statement.
func (w *writeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if w.begun {
		return w.conn.Exec(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := w.SendBatch(ctx, b)
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// Commit commits as pgx.Tx does: a COMMIT that answers ROLLBACK (the
// transaction had failed) is an error, and a connection left in a
// transaction by a failed COMMIT is closed.
func (w *writeTx) Commit(ctx context.Context) error {
	if !w.begun || w.closed {
		return pgx.ErrTxClosed
	}
	w.closed = true
	tag, err := w.conn.Exec(ctx, "commit")
	if err != nil {
		if w.conn.Conn().PgConn().TxStatus() != 'I' {
			_ = w.conn.Conn().Close(ctx)
		}
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback rolls back a transaction begun and not committed; a connection
// where that fails is closed (the pool then drops it).
func (w *writeTx) Rollback(ctx context.Context) error {
	if !w.begun || w.closed {
		return nil
	}
	w.closed = true
	if _, err := w.conn.Exec(ctx, "rollback"); err != nil {
		_ = w.conn.Conn().Close(ctx)
		return err
	}
	return nil
}

// release rolls back a transaction still open and gives the connection
// back to the pool, once.
func (w *writeTx) release(ctx context.Context) {
	if w.conn == nil {
		return
	}
	_ = w.Rollback(ctx)
	w.conn.Release()
	w.conn = nil
}

// batchRow is the row of a batch of one query: Scan also closes the batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// failedBatch is a batch whose BEGIN failed: every result is that error.
type failedBatch struct {
	pgx.BatchResults // not called
	err              error
}

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return nil, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return failedRow{f.err} }
func (f failedBatch) Close() error                     { return f.err }

type failedRow struct{ err error }

func (f failedRow) Scan(...any) error { return f.err }

// pgChange is the change row a write transaction inserts.
type pgChange struct {
	op, id, service string
	row             []byte
	actor           string
}

var _ keystore.Tx = (*pgTx)(nil)

// Update implements Backend: one READ COMMITTED transaction in which fn
// locks the service row first (Tx.Service), decides on that row's key
// count and writes the key and the count; then the head row is updated for
// the next revision (gap-free, in commit order: the head's row lock is held
// to the commit), the change row and the audit row are inserted and a
// notification carrying only the revision is sent. A refused write rolls
// back: no change row, no revision. After the commit Update waits until the
// local index has applied the revision, so a client that asks this replica
// at once sees its write. A COMMIT whose answer is lost is resolved by the
// audit row's request id (commitFailed).
func (b *pgBackend) Update(ctx context.Context, service string, fn func(keystore.Tx) error) error {
	if b.readOnly {
		return readOnlyError()
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return dbError("begin", err)
	}
	tx := &writeTx{conn: conn, lockTimeout: b.lockTimeout}
	defer tx.release(context.WithoutCancel(ctx))
	t := &pgTx{tx: tx, service: service}
	if err := fn(t); err != nil {
		return err
	}
	c := t.change
	if c == nil {
		return nil
	}
	if t.entry != nil {
		c.actor = t.entry.Actor
	}
	// From the head row's update to the commit every other write waits
	// for this one (the head row is locked), so that part is one round
	// trip: the key's own statements, then one statement that takes the
	// revision, inserts the change row and the audit row with it and
	// sends the notification.
	var rev int64
	batch := &pgx.Batch{}
	for _, w := range t.writes {
		batch.Queue(w.sql, w.args...)
	}
	t.writes = nil
	// This replica's writes take the head row one at a time: a write
	// waiting for the row in the database sleeps and is woken by each
	// commit, which costs the server more than the wait here.
	if err := b.takeHead(ctx); err != nil {
		return err
	}
	held := true
	defer func() {
		if held {
			b.releaseHead()
		}
	}()
	// A write followed by another of this replica already waiting for
	// the head leaves the notification to it (notifyOwed): every
	// notification makes the other replicas read up to the head, and
	// each one costs the server a signal and a message per listener.
	notify := b.headWaiters.Load() == 0
	sql, args, err := recordChange(c, t.entry, notify)
	if err != nil {
		return keystore.InternalError("encode audit row", err)
	}
	batch.Queue(sql, args...).QueryRow(func(r pgx.Row) error { return r.Scan(&rev) })
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return dbError("record change", err)
	}
	if t.entry != nil {
		t.entry.StoreRevision = uint64(rev)
	}
	err = tx.Commit(ctx)
	// A commit that failed may have committed: its change is owed a
	// notification as well.
	b.notifyOwed.Store(!notify || err != nil)
	// The connection goes back to the pool before the turn is given up
	// (which may send an owed notification on another connection) and
	// before waiting for the applier, which may need it.
	tx.release(ctx)
	held = false
	b.releaseHead()
	if err != nil {
		if t.entry == nil {
			return dbError("commit", err)
		}
		if err := b.commitFailed(ctx, t.entry, err); err != nil {
			return err
		}
	}
	b.kick()
	if err := b.waitApplied(ctx, uint64(rev)); err != nil {
		// The write is durable; only this replica's view of it is late.
		b.log.Warn("write committed but not yet in this replica's index", "revision", rev, "err", err)
	}
	return nil
}

// recordChange is the statement that takes the next revision from the
// head row and inserts c's change row and e's audit row (when e is not
// nil) with it, and sends the notification carrying the revision; it
// returns the revision. Without notify, no notification is sent (a later
// write's covers it). The sub-statements of a WITH see one snapshot, and
// each reads the revision from the head row's update.
func recordChange(c *pgChange, e *keystore.AuditEntry, notify bool) (string, []any, error) {
	sql := `WITH h AS (UPDATE head SET revision = revision + 1 RETURNING revision),
		c AS (INSERT INTO changes (revision, op, key_id, service, row, actor) SELECT revision, $1, $2, $3, $4, $5 FROM h)`
	args := []any{c.op, c.id, c.service, c.row, c.actor}
	if e != nil {
		cols, vals, aargs, err := auditValues(e, len(args)+1)
		if err != nil {
			return "", nil, err
		}
		sql += `,
		a AS (INSERT INTO audit (` + cols + `, revision) SELECT ` + vals + `, revision FROM h)`
		args = append(args, aargs...)
	}
	if notify {
		sql += `
		SELECT revision FROM h, pg_notify('` + notifyChannel + `', revision::text)`
	} else {
		sql += `
		SELECT revision FROM h`
	}
	return sql, args, nil
}

// flush sends the key's own statements not sent yet, so that a read sees
// them.
func (t *pgTx) flush(ctx context.Context) error {
	for len(t.writes) > 0 {
		w := t.writes[0]
		t.writes = t.writes[1:]
		if _, err := t.tx.Exec(ctx, w.sql, w.args...); err != nil {
			return dbError(w.what, err)
		}
	}
	return nil
}

// takeHead waits for this replica's turn at the head row, as long as the
// database would let the write wait for the row itself (the lock
// timeout): then 503 store_busy, nothing changed.
func (b *pgBackend) takeHead(ctx context.Context) error {
	select {
	case b.headTurn <- struct{}{}:
		return nil
	default:
	}
	b.headWaiters.Add(1)
	defer func() {
		// A write that gives up may be the one the notification was
		// left to (releaseHead).
		if b.headWaiters.Add(-1) == 0 && len(b.headTurn) == 0 {
			b.payNotify(ctx)
		}
	}()
	timer := time.NewTimer(b.lockTimeout)
	defer timer.Stop()
	select {
	case b.headTurn <- struct{}{}:
		return nil
	case <-timer.C:
		return busy(errors.New("waiting for this replica's turn at the head row"))
	case <-ctx.Done():
		return dbError("record change", ctx.Err())
	}
}

// releaseHead gives the turn up; when no write of this replica waits for
// it, a notification left to a later write is sent now.
func (b *pgBackend) releaseHead() {
	<-b.headTurn
	if b.headWaiters.Load() == 0 {
		b.payNotify(context.Background())
	}
}

// payNotify sends the notification owed for changes committed without one
// (notifyOwed), if any. Should it fail, the other replicas see the changes
// at their next heartbeat or notification.
func (b *pgBackend) payNotify(ctx context.Context) {
	if !b.notifyOwed.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := b.pool.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel); err != nil {
		b.log.Warn("change notification failed; other replicas see the change at their heartbeat", "err", err)
	}
}

// Member implements Tx. The write's service row is locked in the same
// round trip (after the lookup, as Service would lock it next), and
// Service answers from it.
func (t *pgTx) Member(ctx context.Context, h [32]byte) (*keystore.Member, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	m := &keystore.Member{}
	keystore.WithTokenHash(m, h)
	var err error
	if t.locked == nil && t.service != "" && storable(t.service) {
		batch := &pgx.Batch{}
		batch.Queue(`SELECT id, service, role FROM members WHERE token_hash = $1`, h[:])
		batch.Queue(serviceLock, t.service)
		br := t.tx.SendBatch(ctx, batch)
		err = br.QueryRow().Scan(&m.ID, &m.Service, &m.Role)
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			ls := &lockedService{}
			ls.svc, ls.count, ls.err = scanService(t.service, br.QueryRow())
			t.locked = ls
		}
		if cerr := br.Close(); cerr != nil && t.locked != nil && t.locked.err == nil {
			t.locked.err = dbError("lock service", cerr)
		}
	} else {
		err = t.tx.QueryRow(ctx, `SELECT id, service, role FROM members WHERE token_hash = $1`, h[:]).Scan(&m.ID, &m.Service, &m.Role)
	}
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	default:
		return nil, dbError("look up member", err)
	}
}

// storable reports whether every v is text PostgreSQL can hold: valid
// UTF-8 without a NUL byte. No row holds other text, so a lookup by it
// finds nothing, as it would on any store, instead of failing.
func storable(v ...string) bool {
	for _, s := range v {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

const serviceLock = `SELECT plan, key_count, apis FROM services WHERE id = $1 FOR UPDATE`

// Service implements Tx: the service row is locked to the end of the
// transaction.
func (t *pgTx) Service(ctx context.Context, id string) (*keystore.Service, int, error) {
	if !storable(id) {
		return nil, 0, nil
	}
	if ls := t.locked; ls != nil && id == t.service {
		return ls.svc, ls.count, ls.err
	}
	if err := t.flush(ctx); err != nil {
		return nil, 0, err
	}
	return scanService(id, t.tx.QueryRow(ctx, serviceLock, id))
}

// scanService reads the row of serviceLock.
func scanService(id string, row pgx.Row) (*keystore.Service, int, error) {
	svc := &keystore.Service{ID: id}
	var count int
	err := row.Scan(&svc.Plan, &count, &svc.APIs)
	switch {
	case err == nil:
		return svc, count, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, nil
	default:
		return nil, 0, dbError("lock service", err)
	}
}

// Key implements Tx: the key's row is locked to the end of the transaction.
func (t *pgTx) Key(ctx context.Context, service, id string) (*keystore.Key, error) {
	if !storable(service, id) {
		return nil, nil
	}
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	k, err := scanKey(t.tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1 AND service = $2 FOR UPDATE`, id, service))
	switch {
	case err == nil:
		if t.keyHashes == nil {
			t.keyHashes = map[string][32]byte{}
		}
		t.keyHashes[k.ID] = keystore.SecretHash(k)
		return k, nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	default:
		return nil, dbError("look up key", err)
	}
}

// KeyIDInUse implements Tx.
func (t *pgTx) KeyIDInUse(ctx context.Context, id string) (bool, error) {
	if !storable(id) {
		return false, nil
	}
	if err := t.flush(ctx); err != nil {
		return false, err
	}
	var used bool
	if err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys WHERE id = $1)`, id).Scan(&used); err != nil {
		return false, dbError("look up key", err)
	}
	return used, nil
}

// SecretInUse implements Tx. When h is the secret of key except as this
// transaction locked it (an update that keeps the secret), no other key
// has it: secret_hash is unique, and the locked row cannot change.
func (t *pgTx) SecretInUse(ctx context.Context, h [32]byte, except string) (bool, error) {
	if held, ok := t.keyHashes[except]; ok && held == h && len(t.writes) == 0 {
		return false, nil
	}
	if err := t.flush(ctx); err != nil {
		return false, err
	}
	var used bool
	if err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys WHERE secret_hash = $1 AND id <> $2)`, h[:], except).Scan(&used); err != nil {
		return false, dbError("look up secret", err)
	}
	return used, nil
}

// AllowedByIdempotencyKey implements Tx.
func (t *pgTx) AllowedByIdempotencyKey(ctx context.Context, service, actor, key string) (*keystore.AuditEntry, error) {
	if !storable(service, actor, key) {
		return nil, nil
	}
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	var e keystore.AuditEntry
	var after []byte
	err := t.tx.QueryRow(ctx, `SELECT at, service, key_id, action, after FROM audit
		WHERE service = $1 AND actor = $2 AND idempotency_key = $3 AND outcome = 'allowed'`, service, actor, key).
		Scan(&e.At, &e.Service, &e.KeyID, &e.Action, &after)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError("look up idempotency key", err)
	}
	if after != nil {
		e.After = &keystore.AuditConfig{}
		if err := json.Unmarshal(after, e.After); err != nil {
			return nil, keystore.InternalError("decode audit row", err)
		}
	}
	return &e, nil
}

// PutKey implements Tx: a new key also counts in its service's key_count.
// The statements go with the change row (Update), in the same round trip.
func (t *pgTx) PutKey(_ context.Context, old, k *keystore.Key) error {
	conf, err := keyConfiguration(k)
	if err != nil {
		return keystore.InternalError("encode key", err)
	}
	if old == nil {
		t.writes = append(t.writes,
			pendingWrite{"insert key", `INSERT INTO keys (` + keyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				[]any{k.ID, k.Service, k.Name, hashBytes(k), conf, k.CreatedBy, k.CreatedAt, k.UpdatedAt, int64(k.Revision)}},
			pendingWrite{"count keys", `UPDATE services SET key_count = key_count + 1 WHERE id = $1`, []any{k.Service}})
	} else {
		t.writes = append(t.writes, pendingWrite{"update key",
			`UPDATE keys SET name = $2, secret_hash = $3, configuration = $4, updated_at = $5, revision = $6 WHERE id = $1`,
			[]any{k.ID, k.Name, hashBytes(k), conf, k.UpdatedAt, int64(k.Revision)}})
	}
	row, err := json.Marshal(keystore.NewKeyRecord(k))
	if err != nil {
		return keystore.InternalError("encode change", err)
	}
	t.change = &pgChange{op: keystore.ChangePut, id: k.ID, service: k.Service, row: row}
	return nil
}

// DeleteKey implements Tx. The statements go with the change row (Update),
// in the same round trip.
func (t *pgTx) DeleteKey(_ context.Context, k *keystore.Key) error {
	t.writes = append(t.writes,
		pendingWrite{"delete key", `DELETE FROM keys WHERE id = $1`, []any{k.ID}},
		pendingWrite{"count keys", `UPDATE services SET key_count = key_count - 1 WHERE id = $1`, []any{k.Service}})
	t.change = &pgChange{op: keystore.ChangeDelete, id: k.ID, service: k.Service}
	return nil
}

// PutIPRestrictions implements Tx: the row of ip_restrictions, and a change
// row of op "ip" holding the whole setting.
func (t *pgTx) PutIPRestrictions(ctx context.Context, service string, r *keystore.IPRestrictions, actor string) error {
	row, err := json.Marshal(r)
	if err != nil {
		return keystore.InternalError("encode ip restrictions", err)
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	if len(r.Default) == 0 && len(r.APIs) == 0 {
		if _, err := t.tx.Exec(ctx, `DELETE FROM ip_restrictions WHERE service = $1`, service); err != nil {
			return dbError("clear ip restrictions", err)
		}
	} else if _, err := t.tx.Exec(ctx, `INSERT INTO ip_restrictions (service, settings, updated_by) VALUES ($1, $2, $3)
		ON CONFLICT (service) DO UPDATE SET settings = excluded.settings, updated_by = excluded.updated_by, updated_at = now()`,
		service, row, actor); err != nil {
		return dbError("write ip restrictions", err)
	}
	t.change = &pgChange{op: keystore.ChangeIP, service: service, row: row, actor: actor}
	return nil
}

// RecordAudit implements Tx.
func (t *pgTx) RecordAudit(_ context.Context, e *keystore.AuditEntry) error {
	t.entry = e
	return nil
}
