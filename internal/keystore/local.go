package keystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// localBackend is the single-node driver: the state file's snapshot and
// log (local_journal.go), the audit trail (local_audit.go), the IP restriction file
// (iprestrictions.go), the state directory's lock; every write under one
// lock (see doc.go). It owns all of that; of the Store it has only the
// index, which its write transactions change directly.
type localBackend struct {
	ix      *index
	log     *slog.Logger
	dataDir string
	ipPath  string

	mu      sync.Mutex // serializes writes; owns everything below
	journal *journal
	audit   *auditLog
	broken  error // set when a log write failed: memory and disk may differ
	closed  bool
	unlock  func() // releases the state directory's lock
}

var _ Backend = (*localBackend)(nil)

// openLocal opens the state at opts.StatePath into ix (see Open).
func openLocal(ctx context.Context, opts Options, logger *slog.Logger, ix *index) (*localBackend, error) {
	dir, err := LoadDirectory(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("keystore: load data: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(opts.StatePath), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create state dir: %w", err)
	}
	unlock, err := lockState(filepath.Dir(opts.StatePath))
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	removeStaleTemps(opts.StatePath)
	j := newJournal(opts.fsys, opts.StatePath, opts.CompactAfter, logger)
	trail, rec, err := openLocalAudit(opts.fsys, opts.StatePath, j, logger)
	if err != nil {
		return nil, fmt.Errorf("keystore: load audit trail: %w", err)
	}
	defer func() {
		if !ok {
			_ = trail.close()
		}
	}()
	keys, found, err := j.loadState()
	if err != nil {
		return nil, fmt.Errorf("keystore: load state: %w", err)
	}
	if err := rec.finish(trail, j.seq, opts.Now); err != nil {
		return nil, fmt.Errorf("keystore: reconcile audit trail: %w", err)
	}
	var all []*Key
	if found {
		for _, k := range keys {
			all = append(all, k)
		}
	} else {
		if all, err = LoadSeedKeys(ctx, opts.DataDir, dir, opts.Now().UTC(), opts.Authorizer); err != nil {
			return nil, fmt.Errorf("keystore: seed keys: %w", err)
		}
		logger.Info("no state found; seeded keys from data", "state", opts.StatePath, "keys", len(all))
	}
	if err := fill(ix.db, dir, all, logger); err != nil {
		return nil, fmt.Errorf("keystore: load state %s: %w", opts.StatePath, err)
	}
	if err := j.compact(all); err != nil {
		j.close()
		return nil, fmt.Errorf("keystore: write state: %w", err)
	}
	ip, err := loadIPRestrictions(opts.StatePath, opts.DataDir)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("keystore: load ip restrictions: %w", err)
	}
	ix.ip.cur.Store(ip)
	ok = true
	return &localBackend{ix: ix, log: logger, dataDir: opts.DataDir, ipPath: ipPath(opts.StatePath), journal: j, audit: trail, unlock: unlock}, nil
}

// Kind implements Backend.
func (*localBackend) Kind() string { return StoreLocal }

// TimePrecision implements Backend: the state file keeps times in full.
func (*localBackend) TimePrecision() time.Duration { return 0 }

// localTx is a write transaction of the local driver: a memdb write
// transaction on the index, and the one change it makes (a log record, or
// the next IP restriction settings) with its audit entry.
type localTx struct {
	b     *localBackend
	txn   *memdb.Txn
	rec   *record
	ip    *ipState
	entry *AuditEntry
}

var _ Tx = (*localTx)(nil)

// Update implements Backend: the store's write lock, one memdb write
// transaction, fn (the decision and the change), the fsynced log record (or
// the IP restriction file, replaced durably), and only then the commit;
// the change's audit entry follows, fsynced, before Update returns.
func (b *localBackend) Update(_ context.Context, _ string, fn func(Tx) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return internal("store is closed", errors.New("closed"))
	case b.broken != nil:
		return internal("store is read-only after a failed state write; restart keygate", b.broken)
	}
	if err := b.audit.failed(); err != nil {
		return internal("store is read-only after a failed audit trail write; restart keygate", err)
	}
	txn := b.ix.db.Txn(true)
	defer txn.Abort()
	tx := &localTx{b: b, txn: txn}
	if err := fn(tx); err != nil {
		return err
	}
	if tx.ip != nil {
		if err := saveIPFile(b.journal, b.ipPath, tx.ip.services); err != nil {
			b.log.Error("ip restriction write failed", "err", err)
			// Nothing changed in memory; the file is either the old or the
			// new one (atomic rename), so a retry is safe.
			return internal("state write failed", err)
		}
		b.ix.ip.cur.Store(tx.ip)
		b.ix.gen.Add(1)
		return nil
	}
	if tx.rec == nil {
		return nil
	}
	if err := b.journal.append(tx.rec); err != nil {
		b.broken = err
		b.log.Error("state write failed; refusing further writes until restart", "err", err)
		return internal("state write failed", err)
	}
	txn.Commit()
	b.ix.gen.Add(1)
	// The change is durable; its audit entry follows it (a crash in between
	// is reconciled at Open). A failed entry turns the store read-only, like
	// a failed log record, and the write is answered as failed although it
	// stands: the restart records it as recovered.
	if e := tx.entry; e != nil {
		e.StoreRevision = b.journal.seq
		if err := b.audit.append(e); err != nil {
			b.log.Error("audit trail write failed; the key change stands, refusing further writes until restart", "err", err)
			return internal("audit trail write failed", err)
		}
	}
	b.maybeCompact()
	return nil
}

// Member implements Tx.
func (t *localTx) Member(_ context.Context, h [32]byte) (*Member, error) {
	raw, err := t.txn.First(tableMembers, indexToken, &h)
	if err != nil {
		return nil, internal("look up member", err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*Member), nil
}

// Service implements Tx.
func (t *localTx) Service(_ context.Context, id string) (*Service, int, error) {
	raw, err := t.txn.First(tableServices, indexID, id)
	if err != nil {
		return nil, 0, internal("look up service", err)
	}
	if raw == nil {
		return nil, 0, nil
	}
	n, err := countKeys(t.txn, id)
	if err != nil {
		return nil, 0, internal("count keys", err)
	}
	return raw.(*Service), n, nil
}

// Key implements Tx.
func (t *localTx) Key(_ context.Context, service, id string) (*Key, error) {
	raw, err := t.txn.First(tableKeys, indexID, id)
	if err != nil {
		return nil, internal("look up key", err)
	}
	if raw == nil || raw.(*Key).Service != service {
		return nil, nil
	}
	return raw.(*Key), nil
}

// KeyIDInUse implements Tx.
func (t *localTx) KeyIDInUse(_ context.Context, id string) (bool, error) {
	raw, err := t.txn.First(tableKeys, indexID, id)
	if err != nil {
		return false, internal("look up key", err)
	}
	return raw != nil, nil
}

// SecretInUse implements Tx.
func (t *localTx) SecretInUse(_ context.Context, h [32]byte, except string) (bool, error) {
	raw, err := t.txn.First(tableKeys, indexSecret, &h)
	if err != nil {
		return false, internal("look up secret", err)
	}
	return raw != nil && raw.(*Key).ID != except, nil
}

// AllowedByIdempotencyKey implements Tx.
func (t *localTx) AllowedByIdempotencyKey(_ context.Context, service, actor, key string) (*AuditEntry, error) {
	return t.b.audit.byIdempotencyKey(service, actor, key), nil
}

// PutKey implements Tx.
func (t *localTx) PutKey(_ context.Context, _, k *Key) error {
	if err := t.txn.Insert(tableKeys, k); err != nil {
		return internal("put key", err)
	}
	t.rec = putRecord(k)
	return nil
}

// DeleteKey implements Tx.
func (t *localTx) DeleteKey(_ context.Context, k *Key) error {
	if err := t.txn.Delete(tableKeys, k); err != nil {
		return internal("delete key", err)
	}
	t.rec = &record{Op: opDelete, ID: k.ID}
	return nil
}

// PutIPRestrictions implements Tx.
func (t *localTx) PutIPRestrictions(_ context.Context, service string, r *IPRestrictions, _ string) error {
	old := t.b.ix.ip.cur.Load()
	next := &ipState{rev: old.rev + 1, services: maps.Clone(old.services)}
	if len(r.Default) == 0 && len(r.APIs) == 0 {
		delete(next.services, service)
	} else {
		next.services[service] = r
	}
	t.ip = next
	return nil
}

// RecordAudit implements Tx.
func (t *localTx) RecordAudit(_ context.Context, e *AuditEntry) error {
	t.entry = e
	return nil
}

// ReloadData implements Backend: services.json and members.json are read
// again and swapped in as a whole (a malformed file leaves the previous
// data serving and returns an error naming the file, field and reason;
// keys are not touched).
func (b *localBackend) ReloadData(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := LoadDirectory(b.dataDir)
	if err != nil {
		return fmt.Errorf("keystore: reload data: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	txn := b.ix.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(tableServices, indexID); err != nil {
		return internal("reload data", err)
	}
	if _, err := txn.DeleteAll(tableMembers, indexID); err != nil {
		return internal("reload data", err)
	}
	if err := insertDirectory(txn, dir); err != nil {
		return internal("reload data", err)
	}
	txn.Commit()
	b.ix.gen.Add(1)
	b.log.Info("data reloaded", "services", len(dir.Services), "members", len(dir.Members))
	return nil
}

// Close implements Backend: it flushes and closes the state log and the
// audit trail and releases the state directory's lock.
func (b *localBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	defer b.unlock()
	aerr := b.audit.close()
	if err := b.journal.close(); err != nil {
		return fmt.Errorf("keystore: close state log: %w", err)
	}
	if aerr != nil {
		return fmt.Errorf("keystore: close audit trail: %w", aerr)
	}
	return nil
}

// Audit implements Backend: a refused or failed attempt, in the audit file.
func (b *localBackend) Audit(_ context.Context, e *AuditEntry) error {
	if err := b.audit.append(e); err != nil {
		return internal("audit trail write failed; the store is read-only until restart", err)
	}
	return nil
}

// AuditPage implements Backend.
func (b *localBackend) AuditPage(_ context.Context, service string, q AuditQuery) (AuditPage, error) {
	return b.audit.page(service, q), nil
}

// Status implements Backend: the local store is its own source of truth.
func (*localBackend) Status() StoreStatus { return StoreStatus{Kind: StoreLocal, Ready: true} }

// Stale implements Backend: never, for the same reason.
func (*localBackend) Stale(time.Duration) bool { return false }

func (b *localBackend) maybeCompact() {
	if b.journal.records < b.journal.compactAfter {
		return
	}
	var keys []*Key
	it, err := b.ix.db.Txn(false).Get(tableKeys, indexID)
	if err != nil {
		b.log.Warn("state compaction skipped", "err", err)
		return
	}
	for o := it.Next(); o != nil; o = it.Next() {
		keys = append(keys, o.(*Key))
	}
	if err := b.journal.compact(keys); err != nil {
		// The log still holds every record; compaction is retried on the next write.
		b.log.Warn("state compaction failed", "err", err)
	}
}

func putRecord(k *Key) *record { return &record{Op: opPut, Key: NewKeyRecord(k)} }
