package keystore

import (
	"context"
	"time"
)

// Backend is a key store driver: where services, members, keys, IP
// restriction settings and the audit trail are kept durably, and where the
// Store's in-memory index comes from. The Store owns the index, the lookups
// and the one write algorithm (write.go); a Backend owns its storage and
// everything about it (files and locks, or a database and its change feed).
//
// The Store calls a Backend from many goroutines at once; a Backend
// serializes what must be serialized itself.
type Backend interface {
	// Kind names the driver (StoreLocal, StorePostgres) for Status.
	Kind() string
	// TimePrecision is the precision the storage keeps times with (0:
	// full); the Store truncates write timestamps to it so that a key
	// read back equals the key written.
	TimePrecision() time.Duration

	// Update runs fn in one write transaction scoped to service, on the
	// authoritative state: the service's keys are locked against other
	// writes until Update returns (local: the store's write lock;
	// PostgreSQL: the service row, FOR UPDATE). When fn returns nil, what
	// it changed through the Tx (keys, an IP restriction setting, the audit
	// entry of the change) is made durable — fsynced or committed — and
	// visible to this Store's lookups before Update returns nil. When fn
	// returns an error, or changed nothing, nothing is changed and Update
	// returns fn's error.
	//
	// fn must not keep tx beyond its call, and may be called once only.
	Update(ctx context.Context, service string, fn func(tx Tx) error) error

	// ReloadData re-reads services and members from where they live and
	// swaps them into the index as a whole.
	ReloadData(ctx context.Context) error

	// Audit records a refused or failed attempt, durably, before it is
	// answered (a success is recorded by Update, with its change).
	Audit(ctx context.Context, e *AuditEntry) error
	// AuditPage reads one page of service's trail, newest first.
	AuditPage(ctx context.Context, service string, q AuditQuery) (AuditPage, error)

	// Status says where the index comes from and how fresh it is.
	Status() StoreStatus
	// Stale reports whether decisions must not be taken from the index:
	// not loaded yet, or last confirmed current more than max ago (max 0:
	// only before the first load). It is called on every decision.
	Stale(max time.Duration) bool

	// Close releases the storage. Later writes fail; lookups keep
	// answering from memory.
	Close() error
}

// Tx is one write transaction of a Backend (Backend.Update), on the
// authoritative state. Reads see the transaction's own writes. An error of
// a Tx method is an *Error the client may see (503 for a database that is
// unavailable or busy, 500 for anything else).
type Tx interface {
	// Member returns the member whose bearer token has SHA-256 tokenHash,
	// nil when there is none.
	Member(ctx context.Context, tokenHash [32]byte) (*Member, error)
	// Service returns the service id and its number of keys; nil when the
	// service is unknown.
	Service(ctx context.Context, id string) (svc *Service, keyCount int, err error)
	// Key returns key id of service; nil when there is no such key in
	// that service.
	Key(ctx context.Context, service, id string) (*Key, error)
	// KeyIDInUse reports whether any key, of any service, has id.
	KeyIDInUse(ctx context.Context, id string) (bool, error)
	// SecretInUse reports whether a key other than except has a secret of
	// SHA-256 h.
	SecretInUse(ctx context.Context, h [32]byte, except string) (bool, error)
	// AllowedByIdempotencyKey returns the audit entry of the allowed write
	// actor made on service with idempotencyKey; nil when there is none.
	AllowedByIdempotencyKey(ctx context.Context, service, actor, idempotencyKey string) (*AuditEntry, error)

	// PutKey stores k, replacing old (nil for a new key).
	PutKey(ctx context.Context, old, k *Key) error
	// DeleteKey deletes k.
	DeleteKey(ctx context.Context, k *Key) error
	// PutIPRestrictions replaces service's IP restriction setting (an
	// empty one clears it); actor is the member who wrote it.
	PutIPRestrictions(ctx context.Context, service string, r *IPRestrictions, actor string) error
	// RecordAudit records the audit entry of the transaction's key change,
	// made durable with it; the Backend fills in its StoreRevision.
	RecordAudit(ctx context.Context, e *AuditEntry) error
}

// Index is how a Backend changes the Store's index: it never touches the
// Store otherwise. A driver whose index is fed from its storage (a change
// feed) uses Load and Apply; a driver that is its own source of truth
// (local) changes it in its write transaction (Write). Readers see every
// change whole or not at all, and the Store's generation moves with each.
type Index interface {
	// Load replaces services, members, keys and IP restriction settings as
	// a whole; readers see the old index or the new one, never a mix. Two
	// keys sharing a secret hash fail it, changing nothing.
	Load(dir *Directory, keys []*Key, ip map[string]*IPRestrictions) error
	// Apply applies changes in order, in one transaction: readers never
	// see a batch half applied.
	Apply(changes []Change) error
	// ReplaceDirectory replaces services and members as a whole, keeping
	// keys and IP restriction settings.
	ReplaceDirectory(dir *Directory) error
	// Write begins a write transaction on the index; its changes are seen
	// by readers only after Commit. The caller runs one at a time.
	Write() IndexTxn
	// Keys returns every key (treat them as read-only).
	Keys() []*Key
	// EachKey calls fn with every key of one snapshot of the index, each
	// built afresh from its record, until fn returns false: Keys without
	// holding every key at once (a snapshot writer).
	EachKey(fn func(*Key) bool)
	// IPRestrictions returns every service's IP restriction setting (treat
	// it as read-only).
	IPRestrictions() map[string]*IPRestrictions
}

// IndexTxn is a write transaction on the Index (Index.Write). Reads see the
// transaction's own writes. Errors are the index's own (a bug), not the
// client's.
type IndexTxn interface {
	// Member returns the member whose bearer token has SHA-256 tokenHash,
	// nil when there is none.
	Member(tokenHash [32]byte) (*Member, error)
	// Service returns the service id and its number of keys; nil when the
	// service is unknown.
	Service(id string) (svc *Service, keyCount int, err error)
	// Key returns the key id, of any service; nil when there is none.
	Key(id string) (*Key, error)
	// KeyBySecret returns the key whose secret has SHA-256 h; nil when
	// there is none.
	KeyBySecret(h [32]byte) (*Key, error)
	// Put inserts or replaces k.
	Put(k *Key) error
	// Delete deletes k.
	Delete(k *Key) error
	// Commit publishes the changes and moves the generation.
	Commit()
	// Abort drops the changes; after Commit it does nothing.
	Abort()
}

// Change is one change of a Backend's change feed, as Index.Apply applies it.
type Change struct {
	// Op is ChangePut (Key holds the key after it), ChangeDelete (KeyID
	// names the key) or ChangeIP (Service's setting becomes IP; empty
	// clears it).
	Op      string
	KeyID   string
	Key     *Key
	Service string
	IP      *IPRestrictions
}

// Ops of a Change.
const (
	ChangePut    = opPut
	ChangeDelete = opDelete
	ChangeIP     = opIP
)
