package local

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

	"github.com/keygate/keygate/internal/keystore"
)

// DefaultStatePath is where state lives when Options.StatePath is empty.
const DefaultStatePath = ".keygate/state.json"

// DefaultCompactAfter is how many log records trigger a compaction when
// Options.CompactAfter is zero.
const DefaultCompactAfter = 10000

// Options configure the local driver.
type Options struct {
	// StatePath is the snapshot file; the log is StatePath + ".log", the
	// audit trail StatePath + ".audit", the IP restriction settings
	// StatePath + ".ip-restrictions.json". Default DefaultStatePath. Its
	// directory is created if missing.
	StatePath string
	// CompactAfter is the number of log records after which a write folds
	// the log into a new snapshot. Zero means DefaultCompactAfter.
	CompactAfter int

	// fsys is the state files' file system; nil is the real one (tests
	// inject storage faults here).
	fsys fileSystem
}

// Driver is the local driver of a keystore.Store (keystore.New).
type Driver struct{ opts Options }

// New returns the driver for the state at opts.StatePath.
func New(opts Options) *Driver {
	if opts.StatePath == "" {
		opts.StatePath = DefaultStatePath
	}
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = DefaultCompactAfter
	}
	return &Driver{opts: opts}
}

// Open implements keystore.Driver: it loads services and members from
// env.DataDir and keys from the state (or, when no state exists, from
// data/keys.json), then folds the state log into a fresh snapshot. A
// malformed data or state file fails Open with an error naming the file,
// the field and the reason; nothing is half-loaded.
func (d *Driver) Open(ctx context.Context, env keystore.Env) (keystore.Backend, error) {
	return open(ctx, d.opts, env)
}

// localBackend is the single-node driver: the state file's snapshot and
// log (journal.go), the audit trail (audit.go), the IP restriction file
// (ipfile.go), the state directory's lock; every write under one lock (see
// doc.go). It owns all of that; of the Store it has only the index, which
// its write transactions change.
type localBackend struct {
	ix      keystore.Index
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

var _ keystore.Backend = (*localBackend)(nil)

// open opens the state at opts.StatePath into env.Index.
func open(ctx context.Context, opts Options, env keystore.Env) (*localBackend, error) {
	logger, ix := env.Logger, env.Index
	dir, err := keystore.LoadDirectory(env.DataDir)
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
	if err := rec.finish(trail, j.seq, env.Now); err != nil {
		return nil, fmt.Errorf("keystore: reconcile audit trail: %w", err)
	}
	var all []*keystore.Key
	if found {
		all = keys.sorted()
	} else {
		if all, err = keystore.LoadSeedKeys(ctx, env.DataDir, dir, env.Now().UTC(), env.Authorizer); err != nil {
			return nil, fmt.Errorf("keystore: seed keys: %w", err)
		}
		logger.Info("no state found; seeded keys from data", "state", opts.StatePath, "keys", len(all))
	}
	ip, err := loadIPRestrictions(opts.StatePath, env.DataDir)
	if err != nil {
		return nil, fmt.Errorf("keystore: load ip restrictions: %w", err)
	}
	warnOrphans(dir, all, logger)
	if err := ix.Load(dir, all, ip); err != nil {
		return nil, fmt.Errorf("keystore: load state %s: %w", opts.StatePath, err)
	}
	if err := j.reopen(all); err != nil {
		j.close()
		return nil, fmt.Errorf("keystore: write state: %w", err)
	}
	ok = true
	return &localBackend{ix: ix, log: logger, dataDir: env.DataDir, ipPath: ipPath(opts.StatePath), journal: j, audit: trail, unlock: unlock}, nil
}

// warnOrphans warns of keys whose service is not in data/: they stay
// stored but cannot authenticate.
func warnOrphans(dir *keystore.Directory, keys []*keystore.Key, logger *slog.Logger) {
	known := make(map[string]bool, len(dir.Services))
	for _, s := range dir.Services {
		known[s.ID] = true
	}
	for _, k := range keys {
		if !known[k.Service] {
			logger.Warn("key belongs to a service not in data; it stays stored but cannot authenticate", "key", k.ID, "service", k.Service)
		}
	}
}

// Kind implements Backend.
func (*localBackend) Kind() string { return keystore.StoreLocal }

// TimePrecision implements Backend: the state file keeps times in full.
func (*localBackend) TimePrecision() time.Duration { return 0 }

// localTx is a write transaction of the local driver: a write transaction
// on the index, and the one change it makes (a log record, or the next IP
// restriction settings) with its audit entry.
type localTx struct {
	b     *localBackend
	txn   keystore.IndexTxn
	rec   *record
	ip    *keystore.Change // the IP restriction change, applied once durable
	ipAll map[string]*keystore.IPRestrictions
	entry *keystore.AuditEntry
}

var _ keystore.Tx = (*localTx)(nil)

// Update implements Backend: the store's write lock, one index write
// transaction, fn (the decision and the change), the fsynced log record (or
// the IP restriction file, replaced durably), and only then the commit;
// the change's audit entry follows, fsynced, before Update returns.
func (b *localBackend) Update(_ context.Context, _ string, fn func(keystore.Tx) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return keystore.InternalError("store is closed", errors.New("closed"))
	case b.broken != nil:
		return keystore.InternalError("store is read-only after a failed state write; restart keygate", b.broken)
	}
	if err := b.audit.failed(); err != nil {
		return keystore.InternalError("store is read-only after a failed audit trail write; restart keygate", err)
	}
	txn := b.ix.Write()
	defer txn.Abort()
	tx := &localTx{b: b, txn: txn}
	if err := fn(tx); err != nil {
		return err
	}
	if tx.ip != nil {
		if err := saveIPFile(b.journal, b.ipPath, tx.ipAll); err != nil {
			b.log.Error("ip restriction write failed", "err", err)
			// Nothing changed in memory; the file is either the old or the
			// new one (atomic rename), so a retry is safe.
			return keystore.InternalError("state write failed", err)
		}
		// An IP restriction write changes no key: its index transaction
		// ends here, and the setting is applied as a change of its own.
		txn.Abort()
		if err := b.ix.Apply([]keystore.Change{*tx.ip}); err != nil {
			b.broken = err
			b.log.Error("ip restriction settings not applied; refusing further writes until restart", "err", err)
			return keystore.InternalError("state write failed", err)
		}
		return nil
	}
	if tx.rec == nil {
		return nil
	}
	if err := b.journal.append(tx.rec); err != nil {
		b.broken = err
		b.log.Error("state write failed; refusing further writes until restart", "err", err)
		return keystore.InternalError("state write failed", err)
	}
	txn.Commit()
	// The change is durable; its audit entry follows it (a crash in between
	// is reconciled at Open). A failed entry turns the store read-only, like
	// a failed log record, and the write is answered as failed although it
	// stands: the restart records it as recovered.
	if e := tx.entry; e != nil {
		e.StoreRevision = b.journal.seq
		if err := b.audit.append(e); err != nil {
			b.log.Error("audit trail write failed; the key change stands, refusing further writes until restart", "err", err)
			return keystore.InternalError("audit trail write failed", err)
		}
	}
	b.maybeCompact()
	return nil
}

// Member implements Tx.
func (t *localTx) Member(_ context.Context, h [32]byte) (*keystore.Member, error) {
	m, err := t.txn.Member(h)
	if err != nil {
		return nil, keystore.InternalError("look up member", err)
	}
	return m, nil
}

// Service implements Tx.
func (t *localTx) Service(_ context.Context, id string) (*keystore.Service, int, error) {
	svc, n, err := t.txn.Service(id)
	if err != nil {
		return nil, 0, keystore.InternalError("look up service", err)
	}
	return svc, n, nil
}

// Key implements Tx.
func (t *localTx) Key(_ context.Context, service, id string) (*keystore.Key, error) {
	k, err := t.txn.Key(id)
	if err != nil {
		return nil, keystore.InternalError("look up key", err)
	}
	if k == nil || k.Service != service {
		return nil, nil
	}
	return k, nil
}

// KeyIDInUse implements Tx.
func (t *localTx) KeyIDInUse(_ context.Context, id string) (bool, error) {
	k, err := t.txn.Key(id)
	if err != nil {
		return false, keystore.InternalError("look up key", err)
	}
	return k != nil, nil
}

// SecretInUse implements Tx.
func (t *localTx) SecretInUse(_ context.Context, h [32]byte, except string) (bool, error) {
	k, err := t.txn.KeyBySecret(h)
	if err != nil {
		return false, keystore.InternalError("look up secret", err)
	}
	return k != nil && k.ID != except, nil
}

// AllowedByIdempotencyKey implements Tx.
func (t *localTx) AllowedByIdempotencyKey(_ context.Context, service, actor, key string) (*keystore.AuditEntry, error) {
	return t.b.audit.byIdempotencyKey(service, actor, key), nil
}

// PutKey implements Tx.
func (t *localTx) PutKey(_ context.Context, _, k *keystore.Key) error {
	if err := t.txn.Put(k); err != nil {
		return keystore.InternalError("put key", err)
	}
	t.rec = putRecord(k)
	return nil
}

// DeleteKey implements Tx.
func (t *localTx) DeleteKey(_ context.Context, k *keystore.Key) error {
	if err := t.txn.Delete(k); err != nil {
		return keystore.InternalError("delete key", err)
	}
	t.rec = &record{Op: keystore.ChangeDelete, ID: k.ID}
	return nil
}

// PutIPRestrictions implements Tx: the file is written with every
// service's setting after the change, the index changes once it is durable.
func (t *localTx) PutIPRestrictions(_ context.Context, service string, r *keystore.IPRestrictions, _ string) error {
	next := maps.Clone(t.b.ix.IPRestrictions())
	if next == nil {
		next = map[string]*keystore.IPRestrictions{}
	}
	if len(r.Default) == 0 && len(r.APIs) == 0 {
		delete(next, service)
	} else {
		next[service] = r
	}
	t.ipAll = next
	t.ip = &keystore.Change{Op: keystore.ChangeIP, Service: service, IP: r}
	return nil
}

// RecordAudit implements Tx.
func (t *localTx) RecordAudit(_ context.Context, e *keystore.AuditEntry) error {
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
	dir, err := keystore.LoadDirectory(b.dataDir)
	if err != nil {
		return fmt.Errorf("keystore: reload data: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.ix.ReplaceDirectory(dir); err != nil {
		return keystore.InternalError("reload data", err)
	}
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
func (b *localBackend) Audit(_ context.Context, e *keystore.AuditEntry) error {
	if err := b.audit.append(e); err != nil {
		return keystore.InternalError("audit trail write failed; the store is read-only until restart", err)
	}
	return nil
}

// AuditPage implements Backend.
func (b *localBackend) AuditPage(_ context.Context, service string, q keystore.AuditQuery) (keystore.AuditPage, error) {
	return b.audit.page(service, q), nil
}

// Status implements Backend: the local store is its own source of truth.
func (*localBackend) Status() keystore.StoreStatus {
	return keystore.StoreStatus{Kind: keystore.StoreLocal, Ready: true}
}

// Stale implements Backend: never, for the same reason.
func (*localBackend) Stale(time.Duration) bool { return false }

func (b *localBackend) maybeCompact() {
	if b.journal.records < b.journal.compactAfter {
		return
	}
	keys := b.ix.Keys()
	if err := b.journal.compact(keys); err != nil {
		// The log still holds every record; compaction is retried on the next write.
		b.log.Warn("state compaction failed", "err", err)
	}
}

func putRecord(k *keystore.Key) *record {
	return &record{Op: keystore.ChangePut, Key: keystore.NewKeyRecord(k)}
}
