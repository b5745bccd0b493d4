package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
)

// pgTx is a write transaction of the PostgreSQL driver: one READ COMMITTED
// transaction (set explicitly: under REPEATABLE READ the snapshot predates
// the row lock, and concurrent creates would all see the old key count), the
// one change it makes, and that change's audit entry.
type pgTx struct {
	tx     pgx.Tx
	change *pgChange
	entry  *keystore.AuditEntry
}

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
func (b *pgBackend) Update(ctx context.Context, _ string, fn func(keystore.Tx) error) error {
	if b.readOnly {
		return readOnlyError()
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	// One round trip begins the transaction and sets its timeouts.
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginWrite(b.lockTimeout)})
	if err != nil {
		return dbError("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	t := &pgTx{tx: tx}
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
	// for this one (the head row is locked), so that part is sent as one
	// batch, one round trip: the revision taken, the change row, the
	// audit row and the notification, which read the revision back from
	// the head row.
	var rev int64
	const taken = `(SELECT revision FROM head)`
	batch := &pgx.Batch{}
	batch.Queue(`UPDATE head SET revision = revision + 1 RETURNING revision`).QueryRow(func(r pgx.Row) error { return r.Scan(&rev) })
	batch.Queue(`INSERT INTO changes (revision, op, key_id, service, row, actor) VALUES (`+taken+`, $1, $2, $3, $4, $5)`,
		c.op, c.id, c.service, c.row, c.actor)
	if e := t.entry; e != nil {
		sql, args, err := auditInsert(e, taken)
		if err != nil {
			return keystore.InternalError("encode audit row", err)
		}
		batch.Queue(sql, args...)
	}
	batch.Queue(`SELECT pg_notify($1, `+taken+`::text)`, notifyChannel)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return dbError("record change", err)
	}
	if t.entry != nil {
		t.entry.StoreRevision = uint64(rev)
	}
	if err := tx.Commit(ctx); err != nil {
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

// Member implements Tx.
func (t *pgTx) Member(ctx context.Context, h [32]byte) (*keystore.Member, error) {
	m := &keystore.Member{}
	keystore.WithTokenHash(m, h)
	err := t.tx.QueryRow(ctx, `SELECT id, service, role FROM members WHERE token_hash = $1`, h[:]).Scan(&m.ID, &m.Service, &m.Role)
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

// Service implements Tx: the service row is locked to the end of the
// transaction.
func (t *pgTx) Service(ctx context.Context, id string) (*keystore.Service, int, error) {
	if !storable(id) {
		return nil, 0, nil
	}
	svc := &keystore.Service{ID: id}
	var count int
	err := t.tx.QueryRow(ctx, `SELECT plan, key_count, apis FROM services WHERE id = $1 FOR UPDATE`, id).Scan(&svc.Plan, &count, &svc.APIs)
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
	k, err := scanKey(t.tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1 AND service = $2 FOR UPDATE`, id, service))
	switch {
	case err == nil:
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
	var used bool
	if err := t.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keys WHERE id = $1)`, id).Scan(&used); err != nil {
		return false, dbError("look up key", err)
	}
	return used, nil
}

// SecretInUse implements Tx.
func (t *pgTx) SecretInUse(ctx context.Context, h [32]byte, except string) (bool, error) {
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
func (t *pgTx) PutKey(ctx context.Context, old, k *keystore.Key) error {
	if old == nil {
		if err := insertKey(ctx, t.tx, k); err != nil {
			return dbError("insert key", err)
		}
		if _, err := t.tx.Exec(ctx, `UPDATE services SET key_count = key_count + 1 WHERE id = $1`, k.Service); err != nil {
			return dbError("count keys", err)
		}
	} else {
		conf, err := keyConfiguration(k)
		if err != nil {
			return keystore.InternalError("encode key", err)
		}
		if _, err := t.tx.Exec(ctx, `UPDATE keys SET name = $2, secret_hash = $3, configuration = $4, updated_at = $5, revision = $6 WHERE id = $1`,
			k.ID, k.Name, hashBytes(k), conf, k.UpdatedAt, int64(k.Revision)); err != nil {
			return dbError("update key", err)
		}
	}
	row, err := json.Marshal(keystore.NewKeyRecord(k))
	if err != nil {
		return keystore.InternalError("encode change", err)
	}
	t.change = &pgChange{op: keystore.ChangePut, id: k.ID, service: k.Service, row: row}
	return nil
}

// DeleteKey implements Tx.
func (t *pgTx) DeleteKey(ctx context.Context, k *keystore.Key) error {
	if _, err := t.tx.Exec(ctx, `DELETE FROM keys WHERE id = $1`, k.ID); err != nil {
		return dbError("delete key", err)
	}
	if _, err := t.tx.Exec(ctx, `UPDATE services SET key_count = key_count - 1 WHERE id = $1`, k.Service); err != nil {
		return dbError("count keys", err)
	}
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
