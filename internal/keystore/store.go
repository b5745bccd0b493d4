package keystore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// DefaultStatePath is where state lives when Options.StatePath is empty.
const DefaultStatePath = ".keygate/state.json"

// DefaultCompactAfter is how many log records trigger a compaction when
// Options.CompactAfter is zero.
const DefaultCompactAfter = 10000

// Options configure Open.
type Options struct {
	// DataDir holds services.json, members.json and (optionally) keys.json.
	DataDir string
	// StatePath is the snapshot file; the log is StatePath + ".log".
	// Default DefaultStatePath. Its directory is created if missing.
	StatePath string
	// Authorizer decides every key operation. Required.
	Authorizer Authorizer
	// Logger receives warnings (component=keystore). Nil discards.
	Logger *slog.Logger
	// Now is the clock for createdAt/updatedAt. Nil means time.Now.
	Now func() time.Time
	// CompactAfter is the number of log records after which a write folds the
	// log into a new snapshot. Zero means DefaultCompactAfter.
	CompactAfter int

	// fsys is the state files' file system; nil is the real one (tests
	// inject storage faults here).
	fsys fileSystem

	// Postgres, when set, is a PostgreSQL connection string (postgres://…):
	// keys, services and members live there, shared by every replica, and
	// StatePath is not used. Empty means the local state file.
	Postgres string
	// Heartbeat is how often a PostgreSQL replica reads the head even when
	// no notification came. Zero means DefaultHeartbeat.
	Heartbeat time.Duration
	// Retention is how long PostgreSQL keeps change rows. Zero means
	// DefaultRetention.
	Retention time.Duration
	// LockTimeout bounds how long a PostgreSQL write waits for its service's
	// row (held by another write): then 503 store_busy, nothing changed.
	// Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// ReadOnly (PostgreSQL only) opens the database for reading: no
	// migration, no seeding, no writes (every session is read-only), one
	// full load and no change feed. A database without keygate's complete
	// schema, or one that does not answer, fails Open. For keygate replay.
	ReadOnly bool
}

// Store kinds, as StoreStatus.Kind names them.
const (
	StoreLocal    = "local"
	StorePostgres = "postgres"
)

// backend is where key writes are made durable and where the index comes
// from: the local journal (localBackend) or PostgreSQL (pgBackend). The
// memdb index, lookups, the authorization of writes and the generation are
// the Store's, shared by both.
type backend interface {
	kind() string
	// write performs a key write that passed the shared checks: it
	// authorizes it again on the authoritative state, makes it durable, and
	// returns once the local index shows it.
	write(ctx context.Context, w *keyWrite) error
	// reloadData re-reads services and members from where they live.
	reloadData(ctx context.Context) error
	// audit records a refused or failed attempt (a success is recorded by
	// write, with the change); auditPage reads a service's trail.
	audit(ctx context.Context, e *AuditEntry) error
	auditPage(ctx context.Context, service string, q AuditQuery) (AuditPage, error)
	status() StoreStatus
	close() error
}

// StoreStatus describes where the key store's index comes from and how fresh
// it is (for /health and metrics).
type StoreStatus struct {
	// Kind is StoreLocal or StorePostgres.
	Kind string `json:"kind"`
	// Ready reports whether the first full load is done.
	Ready bool `json:"ready"`
	// Applied is the last revision in the index, Head the newest revision
	// seen in the database (PostgreSQL only).
	Applied uint64 `json:"appliedRevision"`
	Head    uint64 `json:"headRevision"`
	// Confirmed is when the index was last known to equal the head; the
	// zero time before the first load.
	Confirmed time.Time `json:"confirmedAt,omitzero"`
	// Staleness is the time since Confirmed (zero for the local store,
	// which is its own source of truth).
	Staleness time.Duration `json:"-"`
	// Resyncs counts full reloads after the first.
	Resyncs uint64 `json:"resyncs"`
	// LastError is the last error of the change feed, if any.
	LastError string `json:"lastError,omitempty"`
}

// Store is the key store. Lookups are lock-free reads of an immutable
// go-memdb snapshot; key writes are serialized, authorized and made durable
// under one lock. All methods are safe for concurrent use.
type Store struct {
	db      *memdb.MemDB
	authz   Authorizer
	log     *slog.Logger
	now     func() time.Time
	dataDir string
	gen     atomic.Uint64

	backend   backend
	precision time.Duration // of write timestamps: 0 local, 1µs PostgreSQL

	mu      sync.Mutex // serializes local writes and owns journal, broken, closed
	journal *journal
	audit   *auditLog // the local audit trail (nil on PostgreSQL)
	broken  error     // set when a log write failed: memory and disk may differ
	closed  bool
	unlock  func() // releases the state lock (local only)

	// ip holds the API IP restriction settings (iprestrictions.go).
	ip *ipStore
}

// Open loads services and members from opts.DataDir and keys from the state
// (or, when no state exists, from data/keys.json), then folds the state log
// into a fresh snapshot. A malformed data or state file fails Open with an
// error naming the file, the field and the reason; nothing is half-loaded.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Authorizer == nil {
		return nil, errors.New("keystore: Options.Authorizer is required")
	}
	if opts.StatePath == "" {
		opts.StatePath = DefaultStatePath
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = DefaultCompactAfter
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "keystore")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Postgres != "" {
		return openPostgres(ctx, opts, logger)
	}

	dir, err := loadDirectory(opts.DataDir)
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
		if all, err = loadSeedKeys(ctx, opts.DataDir, dir, opts.Now().UTC(), opts.Authorizer); err != nil {
			return nil, fmt.Errorf("keystore: seed keys: %w", err)
		}
		logger.Info("no state found; seeded keys from data", "state", opts.StatePath, "keys", len(all))
	}

	db, err := memdb.NewMemDB(newSchema())
	if err != nil {
		return nil, fmt.Errorf("keystore: schema: %w", err)
	}
	if err := fill(db, dir, all, logger); err != nil {
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
	s := &Store{db: db, authz: opts.Authorizer, log: logger, now: opts.Now, dataDir: opts.DataDir, journal: j, audit: trail, unlock: unlock, ip: ip}
	s.backend = localBackend{s}
	s.gen.Store(1)
	ok = true
	return s, nil
}

// fill inserts a validated directory and keys into an empty database.
func fill(db *memdb.MemDB, dir *directory, keys []*Key, logger *slog.Logger) error {
	txn := db.Txn(true)
	defer txn.Abort()
	if err := insertDirectory(txn, dir); err != nil {
		return err
	}
	for _, k := range keys {
		if existing, err := txn.First(tableKeys, indexSecret, &k.secretHash); err != nil {
			return err
		} else if existing != nil {
			return fmt.Errorf("keys %q and %q share a secret hash", existing.(*Key).ID, k.ID)
		}
		if svc, _ := txn.First(tableServices, indexID, k.Service); svc == nil {
			logger.Warn("key belongs to a service not in data; it stays stored but cannot authenticate", "key", k.ID, "service", k.Service)
		}
		if err := txn.Insert(tableKeys, k); err != nil {
			return fmt.Errorf("insert key %s: %w", k.ID, err)
		}
	}
	txn.Commit()
	return nil
}

func insertDirectory(txn *memdb.Txn, dir *directory) error {
	for _, s := range dir.services {
		if err := txn.Insert(tableServices, s); err != nil {
			return fmt.Errorf("insert service %s: %w", s.ID, err)
		}
	}
	for _, m := range dir.members {
		if err := txn.Insert(tableMembers, m); err != nil {
			return fmt.Errorf("insert member %s: %w", m.ID, err)
		}
	}
	return nil
}

// ReloadData re-reads services and members and swaps them in as a whole:
// from services.json and members.json for the local store (a malformed file
// leaves the previous data serving and returns an error naming the file,
// field and reason; keys are not touched), from PostgreSQL (a full resync of
// the index) for a shared store, where data/ only seeds an empty database.
func (s *Store) ReloadData(ctx context.Context) error { return s.backend.reloadData(ctx) }

func (s *Store) reloadDataDir(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := loadDirectory(s.dataDir)
	if err != nil {
		return fmt.Errorf("keystore: reload data: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.db.Txn(true)
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
	s.gen.Add(1)
	s.log.Info("data reloaded", "services", len(dir.services), "members", len(dir.members))
	return nil
}

// Close flushes and closes the state log. Later writes fail; lookups keep
// answering from memory.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.unlock != nil {
		defer s.unlock()
	}
	return s.backend.close()
}

// Status says where the index comes from and how fresh it is.
func (s *Store) Status() StoreStatus { return s.backend.status() }

// Stale reports whether decisions must not be taken from the index: it has
// not been loaded yet, or it was last confirmed current more than max ago
// (max 0: only before the first load). Always false for the local store.
// It is cheap enough for every decision.
func (s *Store) Stale(maxStaleness time.Duration) bool {
	pg, ok := s.backend.(*pgBackend)
	return ok && pg.stale(maxStaleness)
}

// KeyBySecret finds the key a presented secret belongs to (by its SHA-256).
// It is the hot path of every decision: one hash, one index lookup, no lock.
// The returned key's Individual map is shared: treat it as read-only.
func (s *Store) KeyBySecret(secret string) (Key, bool) {
	if secret == "" {
		return Key{}, false
	}
	return s.KeyBySecretHash(sha256.Sum256([]byte(secret)))
}

// KeyBySecretHash finds the key whose secret has SHA-256 h: for callers
// that hash the presented secret once and use the hash for more than the
// lookup (the decision cache keys on it instead of the secret).
func (s *Store) KeyBySecretHash(h [32]byte) (Key, bool) {
	raw, err := s.db.Txn(false).First(tableKeys, indexSecret, &h)
	if err != nil || raw == nil {
		return Key{}, false
	}
	return *raw.(*Key), true
}

// Service returns a service by id.
func (s *Store) Service(id string) (Service, bool) {
	raw, err := s.db.Txn(false).First(tableServices, indexID, id)
	if err != nil || raw == nil {
		return Service{}, false
	}
	return *raw.(*Service), true
}

// MemberByToken finds the member a bearer token belongs to (by its SHA-256).
func (s *Store) MemberByToken(token string) (Member, bool) {
	if token == "" {
		return Member{}, false
	}
	h := sha256.Sum256([]byte(token))
	raw, err := s.db.Txn(false).First(tableMembers, indexToken, &h)
	if err != nil || raw == nil {
		return Member{}, false
	}
	return *raw.(*Member), true
}

// KeyCounts returns the number of keys per service, including services with
// none (for a metric). It walks every key: call it per scrape, not per request.
func (s *Store) KeyCounts() map[string]int {
	txn := s.db.Txn(false)
	counts := make(map[string]int)
	if it, err := txn.Get(tableServices, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			counts[o.(*Service).ID] = 0
		}
	}
	if it, err := txn.Get(tableKeys, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			counts[o.(*Key).Service]++
		}
	}
	return counts
}

// Generation changes whenever a key, service or member changes. Caches of
// decisions can key on it.
func (s *Store) Generation() uint64 { return s.gen.Load() }
