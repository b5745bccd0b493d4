package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/keystore"
)

// Defaults of the PostgreSQL write path's timeouts.
const (
	// DefaultLockTimeout bounds how long a write waits for the service's row
	// (another write of the same service holds it): then 503 store_busy.
	DefaultLockTimeout = 5 * time.Second
	// statementTimeout bounds each statement of a write.
	statementTimeout = 10 * time.Second
	// resolveTimeout bounds finding out whether a COMMIT whose answer was
	// lost took effect.
	resolveTimeout = 10 * time.Second
)

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// setTimeouts sets the lock and statement timeouts of tx's transaction.
func setTimeouts(ctx context.Context, tx execer, lock time.Duration) error {
	_, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
		strconv.FormatInt(lock.Milliseconds(), 10), strconv.FormatInt(statementTimeout.Milliseconds(), 10))
	return err
}

// isBusy reports whether err is a lock timeout (55P03) or a statement
// timeout (57014) of the database.
func isBusy(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "57014")
}

func busy(err error) *keystore.Error {
	return &keystore.Error{Status: http.StatusServiceUnavailable, Code: keystore.CodeStoreBusy,
		Message: "another write holds this service's keys longer than the lock timeout; nothing was changed, retry", Err: err}
}

func jsonOrNil(c *keystore.AuditConfig) (any, error) {
	if c == nil {
		return nil, nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// insertAudit inserts e (rev: the change revision of an allowed write).
func insertAudit(ctx context.Context, q execer, e *keystore.AuditEntry, rev *int64) error {
	sql, args, err := auditInsert(e, "$16")
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, sql, append(args, rev)...)
	return err
}

// auditInsert is the INSERT of e's audit row whose revision column is the
// SQL expression revision, and its first 15 arguments.
func auditInsert(e *keystore.AuditEntry, revision string) (string, []any, error) {
	cols, vals, args, err := auditValues(e, 1)
	if err != nil {
		return "", nil, err
	}
	return `INSERT INTO audit (` + cols + `, revision) VALUES (` + vals + `, ` + revision + `)`, args, nil
}

// auditColumns are the columns of an audit row but its revision.
const auditColumns = `at, service, key_id, action, actor, outcome, status, code, message, before, after, policy_revision, client_ip, request_id, idempotency_key`

// auditValues are auditColumns, their values as parameters numbered from
// first on, and those parameters' arguments for e.
func auditValues(e *keystore.AuditEntry, first int) (cols, vals string, args []any, err error) {
	before, err := jsonOrNil(e.Before)
	if err != nil {
		return "", "", nil, err
	}
	after, err := jsonOrNil(e.After)
	if err != nil {
		return "", "", nil, err
	}
	args = []any{e.At, e.Service, e.KeyID, e.Action, e.Actor, e.Outcome, e.Status, e.Code, e.Message, before, after,
		e.PolicyRevision, e.ClientIP, e.RequestID, e.IdempotencyKey}
	params := make([]string, len(args))
	for i := range args {
		params[i] = "$" + strconv.Itoa(first+i)
	}
	return auditColumns, strings.Join(params, ", "), args, nil
}

// Audit implements Backend: a refused or failed attempt, in a transaction of its own.
func (b *pgBackend) Audit(ctx context.Context, e *keystore.AuditEntry) error {
	if err := insertAudit(ctx, b.pool, e, nil); err != nil {
		return keystore.UnavailableError(fmt.Errorf("insert audit row: %w", err))
	}
	return nil
}

// AuditPage implements Backend.
func (b *pgBackend) AuditPage(ctx context.Context, service string, q keystore.AuditQuery) (keystore.AuditPage, error) {
	if !storable(service, q.KeyID, q.Actor, q.Action) {
		return keystore.AuditPage{}, nil // no row holds such text
	}
	var since, until *time.Time
	if !q.Since.IsZero() {
		since = &q.Since
	}
	if !q.Until.IsZero() {
		until = &q.Until
	}
	rows, err := b.pool.Query(ctx, `SELECT id, at, service, key_id, action, actor, outcome, status, code, message, before, after,
		policy_revision, client_ip, request_id, idempotency_key, coalesce(revision, 0)
		FROM audit WHERE service = $1 AND ($2 = 0 OR id < $2) AND ($3 = '' OR key_id = $3) AND ($4 = '' OR actor = $4)
		AND ($5 = '' OR action = $5) AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7)
		ORDER BY id DESC LIMIT $8`,
		service, int64(q.Before), q.KeyID, q.Actor, q.Action, since, until, q.Limit+1)
	if err != nil {
		return keystore.AuditPage{}, keystore.UnavailableError(fmt.Errorf("read audit: %w", err))
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keystore.AuditEntry, error) {
		var e keystore.AuditEntry
		var id, rev int64
		var before, after []byte
		if err := r.Scan(&id, &e.At, &e.Service, &e.KeyID, &e.Action, &e.Actor, &e.Outcome, &e.Status, &e.Code, &e.Message,
			&before, &after, &e.PolicyRevision, &e.ClientIP, &e.RequestID, &e.IdempotencyKey, &rev); err != nil {
			return e, err
		}
		e.ID, e.StoreRevision, e.At = uint64(id), uint64(rev), e.At.UTC()
		for _, c := range []struct {
			raw []byte
			to  **keystore.AuditConfig
		}{{before, &e.Before}, {after, &e.After}} {
			if c.raw != nil {
				*c.to = &keystore.AuditConfig{}
				if err := json.Unmarshal(c.raw, *c.to); err != nil {
					return e, fmt.Errorf("audit row %d: %w", id, err)
				}
			}
		}
		return e, nil
	})
	if err != nil {
		return keystore.AuditPage{}, keystore.UnavailableError(fmt.Errorf("read audit: %w", err))
	}
	p := keystore.AuditPage{Entries: entries}
	if len(entries) > q.Limit {
		p.Entries = entries[:q.Limit]
		p.Next = p.Entries[q.Limit-1].ID
	}
	return p, nil
}

// resolveCommit finds out whether the write w, whose COMMIT was sent but
// whose answer never came, took effect. On another connection it first
// locks the service's row, which the write held to its end: once the lock
// is granted, the write's transaction is over on the server (committed, or
// rolled back when its connection went away), and its audit row, found by
// the request id, says which. An error means the outcome is unknown.
func (b *pgBackend) resolveCommit(ctx context.Context, w *keystore.AuditEntry) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := setTimeouts(ctx, tx, b.lockTimeout); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM services WHERE id = $1 FOR UPDATE`, w.Service); err != nil {
		return false, err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit WHERE request_id = $1 AND outcome = 'allowed'`, w.RequestID).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// commitFailed answers a write whose COMMIT returned err.
func (b *pgBackend) commitFailed(ctx context.Context, w *keystore.AuditEntry, err error) error {
	committed, rerr := b.resolveCommit(ctx, w)
	switch {
	case rerr != nil:
		b.log.Error("key write outcome unknown: the commit's answer was lost and the outcome could not be read",
			"request_id", w.RequestID, "service", w.Service, "action", w.Action, "err", err, "resolve_err", rerr)
		return &keystore.Error{Status: http.StatusServiceUnavailable, Code: keystore.CodeOutcomeUnknown, RequestID: w.RequestID,
			Message: "the database connection failed during the commit: the write may or may not have been applied; " +
				"find request id " + w.RequestID + " in the service's audit trail before retrying",
			Err: errors.Join(err, rerr)}
	case !committed:
		return dbError("commit (not applied)", err)
	}
	b.log.Warn("the commit's answer was lost, but the write committed (found by its request id)",
		"request_id", w.RequestID, "service", w.Service, "action", w.Action, "err", err)
	return nil
}
