package keystore

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Driver opens a Backend for a Store (New). A driver package (local,
// postgres) returns one from its constructor; New hands it the Store's
// index and the options every driver shares.
type Driver interface {
	// Open opens the storage, loads env.Index from it (or starts loading
	// it), and returns the Backend the Store writes through. A malformed
	// data or state file fails Open with an error naming the file, the
	// field and the reason; nothing is half-loaded.
	Open(ctx context.Context, env Env) (Backend, error)
}

// Env is what New gives a Driver: the Store's index and the options the
// Store shares with it.
type Env struct {
	// Index is the Store's index, the only part of the Store a driver
	// changes.
	Index Index
	// DataDir holds services.json, members.json and the optional seeds
	// (keys.json, ip-restrictions.json).
	DataDir string
	// Authorizer validates seed keys (data/keys.json) as creates.
	Authorizer Authorizer
	// Logger is the Store's logger (component=keystore); never nil.
	Logger *slog.Logger
	// Now is the Store's clock; never nil.
	Now func() time.Time
}

// New opens a Store over the Backend drv opens: the index, the lookups and
// the write algorithm are the Store's, durability is the driver's. The
// caller chooses the driver (local.New, postgres.New).
func New(ctx context.Context, drv Driver, opts Options) (*Store, error) {
	if drv == nil {
		return nil, errors.New("keystore: a driver is required")
	}
	if opts.Authorizer == nil {
		return nil, errors.New("keystore: Options.Authorizer is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "keystore")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix, err := newIndex()
	if err != nil {
		return nil, err
	}
	s := &Store{index: ix, authz: opts.Authorizer, network: opts.Network, log: logger, now: opts.Now}
	env := Env{Index: ix, DataDir: opts.DataDir, Authorizer: opts.Authorizer, Logger: logger, Now: opts.Now}
	if s.backend, err = drv.Open(ctx, env); err != nil {
		return nil, err
	}
	s.precision = s.backend.TimePrecision()
	return s, nil
}

// InternalError is the 500 a driver answers for a failure of its own
// storage that the client may see only as "internal" (msg says what failed;
// err is kept for the log, never shown).
func InternalError(msg string, err error) *Error { return internal(msg, err) }

// SecretHash returns the SHA-256 of k's secret, for a driver that stores
// keys in a form of its own (a database column). It is not part of the
// Store's API: lookups take a secret and never return its hash.
func SecretHash(k *Key) [32]byte { return k.secretHash }

// WithSecretHash sets the SHA-256 of k's secret, for a driver reading a key
// back from its storage.
func WithSecretHash(k *Key, h [32]byte) { k.secretHash = h }

// NormalizeIPSettings checks and normalizes every service's setting read
// from file (named in errors).
func NormalizeIPSettings(file string, services map[string]IPRestrictions) (map[string]*IPRestrictions, error) {
	st, err := newIPState(0, file, services)
	if err != nil {
		return nil, err
	}
	return st.services, nil
}

// TokenHash returns the SHA-256 of m's bearer token, for a driver that
// stores members in a form of its own.
func TokenHash(m *Member) [32]byte { return m.tokenHash }

// WithTokenHash sets the SHA-256 of m's bearer token, for a driver reading
// a member back from its storage.
func WithTokenHash(m *Member, h [32]byte) { m.tokenHash = h }

// Import is a store's content as keygate migrate moves it from one
// driver's storage into another's: read by the source driver, written by
// the destination.
type Import struct {
	// Keys are every key, sorted by id.
	Keys []*Key
	// Trail is the audit trail, oldest first.
	Trail []AuditEntry
	// IP holds the IP restriction settings; nil when the source has none
	// (the destination seeds them from data/ then).
	IP map[string]IPRestrictions
	// IPFile names where IP was read from, in errors about it.
	IPFile string
}
