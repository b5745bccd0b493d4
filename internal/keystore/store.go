package keystore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Options configure a Store (New): what every driver shares. Each driver
// has options of its own (local.Options, postgres.Options).
type Options struct {
	// DataDir holds services.json, members.json and (optionally) keys.json
	// and ip-restrictions.json.
	DataDir string
	// Authorizer decides every key operation. Required.
	Authorizer Authorizer
	// Logger receives warnings (component=keystore). Nil discards.
	Logger *slog.Logger
	// Now is the clock for createdAt/updatedAt. Nil means time.Now.
	Now func() time.Time
	// Network decides reads and writes of IP restriction settings; nil
	// refuses every such request (fail closed).
	Network NetworkAuthorizer
}

// Store kinds, as StoreStatus.Kind names them.
const (
	StoreLocal    = "local"
	StorePostgres = "postgres"
)

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
// go-memdb snapshot (the index); key writes run the one write algorithm
// (write.go) in a write transaction of the Backend, which makes them
// durable. All methods are safe for concurrent use.
type Store struct {
	*index
	authz   Authorizer
	network NetworkAuthorizer
	log     *slog.Logger
	now     func() time.Time

	backend   Backend
	precision time.Duration // of write timestamps: 0 local, 1µs PostgreSQL

	closeOnce sync.Once
	closeErr  error
}

func insertDirectory(txn *memdb.Txn, dir *Directory) error {
	for _, s := range dir.Services {
		if err := txn.Insert(tableServices, s); err != nil {
			return fmt.Errorf("insert service %s: %w", s.ID, err)
		}
	}
	for _, m := range dir.Members {
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
func (s *Store) ReloadData(ctx context.Context) error { return s.backend.ReloadData(ctx) }

// Close closes the backend. Later writes fail; lookups keep answering from
// memory. A second Close returns the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.backend.Close() })
	return s.closeErr
}

// Status says where the index comes from and how fresh it is.
func (s *Store) Status() StoreStatus { return s.backend.Status() }

// Stale reports whether decisions must not be taken from the index: it has
// not been loaded yet, or it was last confirmed current more than max ago
// (max 0: only before the first load). Always false for the local store.
// It is cheap enough for every decision.
func (s *Store) Stale(maxStaleness time.Duration) bool { return s.backend.Stale(maxStaleness) }

// KeyBySecret finds the key a presented secret belongs to (by its SHA-256).
// One hash, two index lookups (the secret's bucket, the key's page), no
// lock; the decision path uses KeyRefBySecretHash instead.
func (s *Store) KeyBySecret(secret string) (Key, bool) {
	if secret == "" {
		return Key{}, false
	}
	return s.KeyBySecretHash(sha256.Sum256([]byte(secret)))
}

// KeyBySecretHash finds the key whose secret has SHA-256 h: for callers
// that hash the presented secret once and use the hash for more than the
// lookup (the decision cache keys on it instead of the secret). The key is
// materialized from the index (a key with individual entries gets a map of
// its own); the decision path reads a KeyRef instead (KeyRefBySecretHash).
func (s *Store) KeyBySecretHash(h [32]byte) (Key, bool) {
	r, ok := s.KeyRefBySecretHash(h)
	if !ok {
		return Key{}, false
	}
	return r.Key(), true
}

// Service returns a service by id.
func (s *Store) Service(id string) (Service, bool) {
	raw, err := s.read().First(tableServices, indexID, id)
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
// none (for a metric). The counts are kept per service at write time: it
// costs O(services), not a walk of the keys.
func (s *Store) KeyCounts() map[string]int {
	txn := s.read()
	counts := make(map[string]int)
	if it, err := txn.Get(tableServices, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			counts[o.(*Service).ID] = 0
		}
	}
	if it, err := txn.Get(tableKeyServices, indexID); err == nil {
		for o := it.Next(); o != nil; o = it.Next() {
			if sk := o.(*svcKeys); sk.n > 0 {
				counts[sk.service] = sk.n
			}
		}
	}
	return counts
}

// Generation changes whenever a key, service or member changes. Caches of
// decisions can key on it.
func (s *Store) Generation() uint64 { return s.gen.Load() }
