package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/keystore"
)

// Defaults of the PostgreSQL backend.
const (
	// DefaultHeartbeat is how often a replica reads the head when no
	// notification came.
	DefaultHeartbeat = time.Second
	// DefaultRetention is how long change rows are kept.
	DefaultRetention = 7 * 24 * time.Hour
	notifyChannel    = "keygate_changes"
	// migrationLock is the pg_advisory_xact_lock key under which schema
	// migrations and the seeding run ("keygate" in ASCII).
	migrationLock = 0x6b657967617465
	backoffMin    = 100 * time.Millisecond
	backoffMax    = 5 * time.Second
	// writeWait bounds how long a write waits, after its commit, for the
	// local index to show it.
	writeWait = 10 * time.Second
	// syncTimeout bounds one round of the applier (a heartbeat read, a
	// catch-up or a full resync); writeTimeout one key write's transaction.
	syncTimeout  = 60 * time.Second
	writeTimeout = 15 * time.Second
	// firstWait bounds how long Open waits for the first load; a longer
	// one finishes in the background.
	firstWait = 15 * time.Second
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// pgBackend keeps keys, services and members in PostgreSQL. Writes go
// through a small pool, one READ COMMITTED transaction each; the index is fed
// by the change log: a dedicated LISTEN connection wakes the applier, which
// also polls the head every heartbeat, applies the changes after its applied
// revision in order, and reloads everything (resync) whenever the log does
// not continue where it stands.
type pgBackend struct {
	ix        keystore.Index
	authz     keystore.Authorizer // validates seed keys
	pool      *pgxpool.Pool
	connCfg   *pgx.ConnConfig // of the LISTEN connection
	dataDir   string
	log       *slog.Logger
	heartbeat time.Duration
	retention time.Duration
	// lockTimeout bounds a write's wait for its service's row.
	lockTimeout time.Duration

	cancel context.CancelFunc
	done   sync.WaitGroup
	wake   chan struct{} // cap 1: the applier should look at the head now
	resync chan chan error

	ready     atomic.Bool
	applied   atomic.Uint64
	head      atomic.Uint64
	confirmed atomic.Int64 // unix nanoseconds when applied == head was last seen
	resyncs   atomic.Uint64
	lastErr   atomic.Pointer[string]

	mu       sync.Mutex
	advanced chan struct{} // closed (and replaced) whenever the index moves

	// readOnly: opened by openReadOnly, no applier, every write refused;
	// roMu serializes its reloads (there is no applier goroutine to own
	// them).
	readOnly bool
	roMu     sync.Mutex

	// headTurn (cap 1) is held by the write of this replica that is
	// taking the head row, from its change row to its commit.
	headTurn chan struct{}
	// headWaiters counts writes waiting for headTurn; notifyOwed: changes
	// were committed without a notification, left to a later write.
	headWaiters atomic.Int32
	notifyOwed  atomic.Bool

	// pruning: a prune of the change log is under way.
	pruning atomic.Bool
	// serialRead: the database refused to export a snapshot, so keys are
	// read in one query (readKeys).
	serialRead atomic.Bool
	// parallelBlocks is the size of the keys table, in blocks, from which
	// keys are read in parallel parts (parallelReadBlocks).
	parallelBlocks int64

	// Owned by the applier goroutine.
	epoch     string
	setupDone bool
	// appliedAt is the time of the change row at the applied revision (zero
	// when unknown): a database restored from a backup and written to again
	// can reach the applied revision with other changes, which a different
	// time at that revision gives away.
	appliedAt time.Time
}

// Options configure the PostgreSQL driver.
type Options struct {
	// Heartbeat is how often a replica reads the head even when no
	// notification came. Zero means DefaultHeartbeat.
	Heartbeat time.Duration
	// Retention is how long change rows are kept. Zero means
	// DefaultRetention.
	Retention time.Duration
	// LockTimeout bounds how long a write waits for its service's row
	// (held by another write): then 503 store_busy, nothing changed. Zero
	// means DefaultLockTimeout.
	LockTimeout time.Duration
	// ReadOnly opens the database for reading: no migration, no seeding,
	// no writes (every session is read-only), one full load and no change
	// feed. A database without keygate's complete schema, or one that does
	// not answer, fails Open. For keygate replay.
	ReadOnly bool
}

// Driver is the PostgreSQL driver of a keystore.Store (keystore.New).
type Driver struct {
	url  string
	opts Options
}

// New returns the driver for the database at url (postgres://…): keys,
// services, members, IP restriction settings and the audit trail live
// there, shared by every replica.
func New(url string, opts Options) *Driver { return &Driver{url: url, opts: opts} }

// Open implements keystore.Driver: it migrates and seeds the database and
// loads the index when the database answers; when it does not, Open still
// succeeds and the store stays not ready (every decision fails closed,
// every key operation is a 503) until the background loop gets through. A
// schema or data error fails Open.
func (d *Driver) Open(ctx context.Context, env keystore.Env) (keystore.Backend, error) {
	return open(ctx, d.url, d.opts, env, firstWait)
}

// open opens the backend, waiting up to firstWait for the first load.
func open(ctx context.Context, url string, opts Options, env keystore.Env, firstWait time.Duration) (*pgBackend, error) {
	logger := env.Logger
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("keystore: --store: %w", err)
	}
	if opts.ReadOnly {
		// The database refuses any write of these sessions, whatever
		// keygate's code does.
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("keystore: --store: %w", err)
	}
	b := &pgBackend{
		ix: env.Index, authz: env.Authorizer, pool: pool, connCfg: cfg.ConnConfig.Copy(), dataDir: env.DataDir, log: logger,
		heartbeat: cmpOr(opts.Heartbeat, DefaultHeartbeat), retention: cmpOr(opts.Retention, DefaultRetention),
		lockTimeout: cmpOr(opts.LockTimeout, DefaultLockTimeout), parallelBlocks: parallelReadBlocks,
		wake: make(chan struct{}, 1), headTurn: make(chan struct{}, 1), resync: make(chan chan error), advanced: make(chan struct{}),
	}
	b.readOnly = opts.ReadOnly
	if opts.ReadOnly {
		return openReadOnly(ctx, b)
	}

	// The applier's first round migrates, seeds and loads. Open waits for
	// it up to firstWait, so that a keygate that starts against a healthy
	// database serves at once and a broken schema or data/ stops it with
	// an error; a load that takes longer (a large database) goes on in the
	// background instead of being cut and started over, and the store is
	// not ready until it is done.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = stop
	first := make(chan error, 1)
	b.done.Add(2)
	go b.listen(runCtx)
	go b.run(runCtx, first)
	wait := time.NewTimer(firstWait)
	defer wait.Stop()
	select {
	case err = <-first:
	case <-wait.C:
		logger.Info("key store still loading; not ready until the load is done", "waited_ms", firstWait.Milliseconds())
		return b, nil
	case <-ctx.Done():
		return b, nil
	}
	switch {
	case err == nil:
	case isPermanent(err):
		stop()
		b.done.Wait()
		pool.Close()
		return nil, fmt.Errorf("keystore: %w", err)
	default:
		logger.Warn("key store database unavailable; not ready until it answers", "err", err)
	}
	return b, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// isPermanent reports whether err will not go away by retrying: a malformed
// data/ or an SQL error of the schema, as opposed to a database that is not
// reachable.
func isPermanent(err error) bool {
	var de *keystore.DataError
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 (connection exception), 57 (operator intervention:
		// shutdown, terminated) and 53 (insufficient resources) pass.
		return !strings.HasPrefix(pe.Code, "08") && !strings.HasPrefix(pe.Code, "57") && !strings.HasPrefix(pe.Code, "53")
	}
	return errors.As(err, &de)
}

// Kind implements Backend.
func (*pgBackend) Kind() string { return keystore.StorePostgres }

// TimePrecision implements Backend: PostgreSQL keeps microseconds.
func (*pgBackend) TimePrecision() time.Duration { return time.Microsecond }

func (b *pgBackend) setErr(err error) {
	if err == nil {
		b.lastErr.Store(nil)
		return
	}
	msg := publicError(err)
	b.lastErr.Store(&msg)
}

// publicError is what Status (and so the unauthenticated /health) says of
// a feed error: its kind, never the driver's text, which names the
// database's host, user and database. The whole error goes to the log.
func publicError(err error) string {
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &pe):
		return "database error " + pe.Code + " (see keygate's log)"
	case errors.As(err, &ce):
		return "cannot connect to the database (see keygate's log)"
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return "the database did not answer in time (see keygate's log)"
	default:
		return "the change feed failed (see keygate's log)"
	}
}

// Status implements Backend.
func (b *pgBackend) Status() keystore.StoreStatus {
	st := keystore.StoreStatus{Kind: keystore.StorePostgres, Ready: b.ready.Load(), Applied: b.applied.Load(), Head: b.head.Load(), Resyncs: b.resyncs.Load()}
	if c := b.confirmed.Load(); c != 0 {
		st.Confirmed = time.Unix(0, c).UTC()
		st.Staleness = max(0, time.Since(st.Confirmed))
	}
	if e := b.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Stale implements Backend.
func (b *pgBackend) Stale(maxStaleness time.Duration) bool {
	if !b.ready.Load() {
		return true
	}
	if maxStaleness <= 0 {
		return false
	}
	return time.Now().UnixNano()-b.confirmed.Load() > int64(maxStaleness)
}

// Close implements Backend.
func (b *pgBackend) Close() error {
	if b.cancel != nil {
		b.cancel()
	}
	b.done.Wait()
	b.pool.Close()
	return nil
}

// unavailable is the answer to a key operation the database cannot serve.

// dbError maps a database error of a key operation: ours pass through, a
// lock or statement timeout is 503 store_busy, anything else is the
// database's (503 store_unavailable).
func dbError(what string, err error) error {
	var ke *keystore.Error
	if errors.As(err, &ke) {
		return err
	}
	if isBusy(err) {
		return busy(fmt.Errorf("%s: %w", what, err))
	}
	return keystore.UnavailableError(fmt.Errorf("%s: %w", what, err))
}

const keyColumns = `id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision`

// keyConfig is the configuration column: what a key may do.
type keyConfig struct {
	ContentAPI    keystore.ContentAPI      `json:"contentApi"`
	ManagementAPI keystore.ManagementPerms `json:"managementApi"`
}

func keyConfiguration(k *keystore.Key) ([]byte, error) {
	return json.Marshal(keyConfig{ContentAPI: k.ContentAPI, ManagementAPI: k.ManagementAPI})
}

func insertKey(ctx context.Context, tx pgx.Tx, k *keystore.Key) error {
	conf, err := keyConfiguration(k)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.ID, k.Service, k.Name, hashBytes(k), conf, k.CreatedBy, k.CreatedAt, k.UpdatedAt, int64(k.Revision))
	return err
}

// hashBytes is k's secret hash as the secret_hash column holds it.
func hashBytes(k *keystore.Key) []byte {
	h := keystore.SecretHash(k)
	return h[:]
}

func scanKey(row pgx.Row) (*keystore.Key, error) {
	var k keystore.Key
	var hash, conf []byte
	var rev int64
	if err := row.Scan(&k.ID, &k.Service, &k.Name, &hash, &conf, &k.CreatedBy, &k.CreatedAt, &k.UpdatedAt, &rev); err != nil {
		return nil, err
	}
	var h [32]byte
	if len(hash) != len(h) {
		return nil, fmt.Errorf("key %s: secret hash of %d bytes", k.ID, len(hash))
	}
	copy(h[:], hash)
	keystore.WithSecretHash(&k, h)
	var c keyConfig
	if err := decodeKeyConfig(conf, &c); err != nil {
		return nil, fmt.Errorf("key %s: configuration: %w", k.ID, err)
	}
	k.ContentAPI, k.ManagementAPI = c.ContentAPI, c.ManagementAPI
	k.CreatedAt, k.UpdatedAt = k.CreatedAt.UTC(), k.UpdatedAt.UTC()
	k.Revision = uint64(rev)
	return &k, nil
}

// kick makes the applier look at the head now.
func (b *pgBackend) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// moved wakes everyone waiting for the index to move.
func (b *pgBackend) moved() {
	b.mu.Lock()
	close(b.advanced)
	b.advanced = make(chan struct{})
	b.mu.Unlock()
}

// waitApplied waits until the index has applied rev (or a resync went past it).
func (b *pgBackend) waitApplied(ctx context.Context, rev uint64) error {
	timer := time.NewTimer(writeWait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		ch := b.advanced
		b.mu.Unlock()
		if b.applied.Load() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("revision %d not applied after %s (applied %d)", rev, writeWait, b.applied.Load())
		}
	}
}

// reloadData reloads the whole index from the database: services and members
// live there, and data/ only seeds an empty database.
// ReloadData implements Backend.
func (b *pgBackend) ReloadData(ctx context.Context) error {
	if b.readOnly {
		b.roMu.Lock()
		defer b.roMu.Unlock()
		return b.fullResync(ctx, "reload requested")
	}
	done := make(chan error, 1)
	select {
	case b.resync <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// listen holds the LISTEN connection: a notification only wakes the applier,
// which reads the change log itself. The connection is reopened with
// jittered backoff (100 ms → 5 s); every (re)connect wakes the applier, as
// notifications sent while disconnected are lost. A quiet connection is
// pinged now and then, so that a silently dead socket is noticed.
func (b *pgBackend) listen(ctx context.Context) {
	defer b.done.Done()
	delay := backoffMin
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, func() { delay = backoffMin })
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("change feed connection lost; reconnecting", "err", err, "retry_in_ms", float64(delay.Microseconds())/1e3)
		// Full jitter over [delay/2, delay].
		sleep := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
		delay = min(delay*2, backoffMax)
	}
}

func (b *pgBackend) listenOnce(ctx context.Context, connected func()) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, b.connCfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	connected()
	b.log.Debug("change feed listening")
	b.kick()
	quiet := max(10*b.heartbeat, 5*time.Second)
	for {
		wctx, cancel := context.WithTimeout(ctx, quiet)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			b.kick()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}

// run is the applier: on every wake-up and every heartbeat it brings the
// index up to the head; it also prunes old change rows.
//
// Its first round runs at once, and its outcome goes to first (cap 1).
func (b *pgBackend) run(ctx context.Context, first chan error) {
	defer b.done.Done()
	tick := time.NewTicker(b.heartbeat)
	defer tick.Stop()
	pruneEvery := min(max(b.retention/10, time.Second), time.Hour)
	var lastPrune time.Time
	for {
		var reply chan error
		if first != nil {
			reply, first = first, nil
		} else {
			select {
			case <-ctx.Done():
				return
			case <-b.wake:
			case <-tick.C:
			case reply = <-b.resync:
			}
		}
		// A database that stops answering without closing the socket must
		// not hang the applier: staleness has to grow visibly instead.
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		var err error
		if reply != nil && b.setupDone {
			err = b.fullResync(sctx, "reload requested")
		} else {
			err = b.sync(sctx)
		}
		cancel()
		if reply != nil {
			reply <- err
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.setErr(err)
			b.log.Warn("key store sync failed; serving the last index", "err", err, "applied", b.applied.Load())
			continue
		}
		b.setErr(nil)
		// The prune runs beside the applier: at a high write rate it
		// deletes many rows, and the feed must not wait for it.
		if time.Since(lastPrune) >= pruneEvery && b.pruning.CompareAndSwap(false, true) {
			lastPrune = time.Now()
			b.done.Add(1)
			go func() {
				defer b.done.Done()
				defer b.pruning.Store(false)
				if n, err := b.prune(ctx); err != nil {
					if ctx.Err() == nil {
						b.log.Warn("pruning change log failed", "err", err, "rows", n)
					}
				} else if n > 0 {
					b.log.Info("pruned change log", "rows", n, "retention", b.retention.String())
				}
			}()
		}
	}
}

// sync sets the database up on first use, then brings the index to the head:
// the changes after the applied revision, in order, in batches of one memdb
// transaction each; anything but the contiguous next revision, another
// epoch, or a head behind the applied revision is a full resync.
func (b *pgBackend) sync(ctx context.Context) error {
	if !b.setupDone {
		if err := setup(ctx, b.pool, b.dataDir, b.authz, b.log); err != nil {
			return err
		}
		b.setupDone = true
		return b.fullResync(ctx, "first load")
	}
	seen := time.Now()
	var head int64
	var epoch string
	var at *time.Time
	applied := b.applied.Load()
	// The head and the first changes after the applied revision are read
	// in one round trip: a wake-up usually finds a few changes.
	var next []change
	read := &pgx.Batch{}
	read.Queue(`SELECT h.revision, h.epoch, c.at FROM head h LEFT JOIN changes c ON c.revision = $1`, int64(applied)).
		QueryRow(func(r pgx.Row) error { return r.Scan(&head, &epoch, &at) })
	read.Queue(changesQuery, int64(applied)).Query(func(rows pgx.Rows) (err error) {
		next, err = pgx.CollectRows(rows, scanChange)
		return err
	})
	if err := b.pool.SendBatch(ctx, read).Close(); err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	b.head.Store(uint64(head))
	switch {
	case epoch != b.epoch:
		return b.fullResync(ctx, "database epoch changed")
	case uint64(head) < applied:
		return b.fullResync(ctx, fmt.Sprintf("head %d is behind the applied revision %d (database restored?)", head, applied))
	case at != nil && !b.appliedAt.IsZero() && !at.Equal(b.appliedAt):
		return b.fullResync(ctx, fmt.Sprintf("revision %d is another change than the one applied (database restored and written to?)", applied))
	}
	for applied < uint64(head) {
		batch := next
		next = nil
		if batch == nil {
			rows, err := b.pool.Query(ctx, changesQuery, int64(applied))
			if err != nil {
				return fmt.Errorf("read changes: %w", err)
			}
			if batch, err = pgx.CollectRows(rows, scanChange); err != nil {
				return fmt.Errorf("read changes: %w", err)
			}
		}
		if len(batch) == 0 || batch[0].revision != applied+1 {
			return b.fullResync(ctx, fmt.Sprintf("change log does not continue at revision %d (pruned?)", applied+1))
		}
		for i := 1; i < len(batch); i++ {
			if batch[i].revision != batch[i-1].revision+1 {
				return b.fullResync(ctx, fmt.Sprintf("change log jumps from %d to %d", batch[i-1].revision, batch[i].revision))
			}
		}
		if err := b.apply(batch); err != nil {
			return b.fullResync(ctx, "change not applicable: "+err.Error())
		}
		applied = b.applied.Load()
	}
	b.confirmed.Store(seen.UnixNano())
	return nil
}

// changesQuery reads the changes after a revision, in order, a batch at a
// time.
const changesQuery = `SELECT revision, op, key_id, service, row, at FROM changes WHERE revision > $1 ORDER BY revision LIMIT 500`

type change struct {
	revision uint64
	op, id   string
	service  string
	row      []byte
	at       time.Time
}

func scanChange(row pgx.CollectableRow) (change, error) {
	var c change
	var rev int64
	err := row.Scan(&rev, &c.op, &c.id, &c.service, &c.row, &c.at)
	c.revision = uint64(rev)
	return c, err
}

// apply applies a contiguous batch of changes to the index in one
// transaction (Index.Apply): a rotation is never seen half-applied, and
// the generation moves once.
func (b *pgBackend) apply(batch []change) error {
	changes := make([]keystore.Change, 0, len(batch))
	for _, c := range batch {
		ch, err := c.decode()
		if err != nil {
			return err
		}
		changes = append(changes, ch)
	}
	if err := b.ix.Apply(changes); err != nil {
		return err
	}
	b.appliedAt = batch[len(batch)-1].at
	b.applied.Store(batch[len(batch)-1].revision)
	b.moved()
	return nil
}

// decode turns a change row into the Change it records: a put's row is the
// key in the persisted key encoding (record.go), an "ip" row the
// service's whole setting.
func (c change) decode() (keystore.Change, error) {
	ch := keystore.Change{Op: c.op, KeyID: c.id, Service: c.service}
	switch c.op {
	case keystore.ChangeIP:
		r, err := decodeIPRow(c)
		if err != nil {
			return keystore.Change{}, err
		}
		ch.IP = r
	case keystore.ChangePut:
		var r keystore.KeyRecord
		if err := json.Unmarshal(c.row, &r); err != nil {
			return keystore.Change{}, fmt.Errorf("revision %d: %w", c.revision, err)
		}
		k, err := keystore.DecodeKeyRecord(&r)
		if err != nil {
			return keystore.Change{}, fmt.Errorf("revision %d: %w", c.revision, err)
		}
		ch.Key = k
	case keystore.ChangeDelete:
	default:
		return keystore.Change{}, fmt.Errorf("revision %d: unknown op %q", c.revision, c.op)
	}
	return ch, nil
}

// fullResync reloads services, members and keys from one REPEATABLE READ READ
// ONLY snapshot and replaces the whole index in one memdb transaction:
// readers see the old index or the new one, never a mix.
func (b *pgBackend) fullResync(ctx context.Context, why string) error {
	seen := time.Now()
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var head int64
	var epoch string
	if err := tx.QueryRow(ctx, `SELECT revision, epoch FROM head`).Scan(&head, &epoch); err != nil {
		return fmt.Errorf("resync: read head: %w", err)
	}
	var at *time.Time
	if err := tx.QueryRow(ctx, `SELECT (SELECT at FROM changes WHERE revision = $1)`, head).Scan(&at); err != nil {
		return fmt.Errorf("resync: read change: %w", err)
	}
	dir, keys, parts, err := b.readAll(ctx, tx)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	ip, err := readIPRows(ctx, tx)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	read := time.Since(seen)
	if err := b.ix.Load(dir, keys, ip); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	loaded := time.Since(seen) - read
	b.epoch = epoch
	b.appliedAt = time.Time{}
	if at != nil {
		b.appliedAt = *at
	}
	b.applied.Store(uint64(head))
	b.head.Store(uint64(head))
	b.confirmed.Store(seen.UnixNano())
	if b.ready.Swap(true) {
		b.resyncs.Add(1)
		b.log.Warn("key store resynced", "reason", why, "revision", head, "keys", len(keys), "read_ms", read.Milliseconds(), "read_parts", parts, "load_ms", loaded.Milliseconds())
	} else {
		b.log.Info("key store loaded", "revision", head, "services", len(dir.Services), "members", len(dir.Members), "keys", len(keys), "read_ms", read.Milliseconds(), "read_parts", parts, "load_ms", loaded.Milliseconds())
	}
	b.moved()
	return nil
}

// readAll reads services, members and keys in tx (a REPEATABLE READ
// snapshot); the keys in parallel parts when the table is large (readKeys).
func (b *pgBackend) readAll(ctx context.Context, tx pgx.Tx) (*keystore.Directory, []*keystore.Key, int, error) {
	dir := &keystore.Directory{}
	rows, err := tx.Query(ctx, `SELECT id, plan, apis FROM services ORDER BY id`)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read services: %w", err)
	}
	dir.Services, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*keystore.Service, error) {
		var s keystore.Service
		return &s, r.Scan(&s.ID, &s.Plan, &s.APIs)
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read services: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT id, service, role, token_hash FROM members ORDER BY id`)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read members: %w", err)
	}
	dir.Members, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*keystore.Member, error) {
		var m keystore.Member
		var h []byte
		if err := r.Scan(&m.ID, &m.Service, &m.Role, &h); err != nil {
			return nil, err
		}
		var th [32]byte
		if len(h) != len(th) {
			return nil, fmt.Errorf("member %s: token hash of %d bytes", m.ID, len(h))
		}
		copy(th[:], h)
		keystore.WithTokenHash(&m, th)
		return &m, nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read members: %w", err)
	}
	keys, parts, err := b.readKeys(ctx, tx)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read keys: %w", err)
	}
	return dir, keys, parts, nil
}

// Parallel key reads: a keys table of at least parallelReadBlocks blocks
// (80 MB: tens of thousands of keys) is read in readParts parts at once.
const (
	parallelReadBlocks = 10_000
	readParts          = 2
)

// readKeys reads every key visible to tx. A large table is read in
// readParts ranges of its blocks (TID range scans), each in a transaction
// of its own on another connection that imports tx's snapshot (SET
// TRANSACTION SNAPSHOT): the server formats the rows, the configuration
// column's JSON above all, in several backends, and the rows are decoded in
// as many goroutines, and every part sees exactly what tx sees, so the
// result is the same as one query in tx. When a part cannot be set up
// (a server before PostgreSQL 14, a pool of fewer than readParts+2
// connections or none free, snapshot export refused) the keys are read in
// tx alone.
//
// parts is the number of queries the keys were read in.
func (b *pgBackend) readKeys(ctx context.Context, tx pgx.Tx) (keys []*keystore.Key, parts int, err error) {
	if keys, ok := b.keyParts(ctx, tx); ok {
		if keys == nil {
			return nil, 0, errors.New("snapshot export refused")
		}
		return keys, readParts, nil
	}
	rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM keys`)
	if err != nil {
		return nil, 0, err
	}
	keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*keystore.Key, error) { return scanKey(r) })
	return keys, 1, err
}

// keyParts reads the keys in parallel parts (readKeys); ok is false when
// it did not and tx is still usable; ok with nil keys means tx was aborted.
func (b *pgBackend) keyParts(ctx context.Context, tx pgx.Tx) ([]*keystore.Key, bool) {
	var version, blocks int64
	var snapshot string
	// pg_export_snapshot runs last: a failure before it leaves tx usable.
	if err := tx.QueryRow(ctx, `SELECT current_setting('server_version_num')::int,
		pg_relation_size('keys') / current_setting('block_size')::int`).Scan(&version, &blocks); err != nil {
		return nil, false
	}
	// The parts take readParts more connections; one is left for writes.
	if version < 140000 || blocks < b.parallelBlocks || b.serialRead.Load() || b.pool.Config().MaxConns < readParts+2 {
		return nil, false
	}
	// A snapshot cannot be exported from a subtransaction, so a refusal
	// aborts tx and fails this load; the next one reads serially.
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
		b.serialRead.Store(true)
		b.log.Warn("cannot export a snapshot; keys are read in one query from now on", "err", err)
		return nil, true
	}
	type result struct {
		keys []*keystore.Key
		err  error
	}
	results := make([]result, readParts)
	var wg sync.WaitGroup
	for i := range readParts {
		lo, hi := blocks*int64(i)/readParts, blocks*int64(i+1)/readParts
		cond := fmt.Sprintf(`ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid`, lo, hi)
		if i == readParts-1 {
			// Open-ended: blocks added since the size was read hold no
			// row tx can see, but the last part reads them anyway.
			cond = fmt.Sprintf(`ctid >= '(%d,0)'::tid`, lo)
		}
		wg.Go(func() {
			results[i].keys, results[i].err = b.readKeyPart(ctx, snapshot, cond)
		})
	}
	wg.Wait()
	n := 0
	for _, r := range results {
		if r.err != nil {
			b.log.Warn("parallel key read failed; reading the keys in one query", "err", r.err)
			return nil, false
		}
		n += len(r.keys)
	}
	keys := make([]*keystore.Key, 0, n)
	for _, r := range results {
		keys = append(keys, r.keys...)
	}
	return keys, true
}

// readKeyPart reads the keys matching cond in a REPEATABLE READ READ ONLY
// transaction that imports snapshot.
func (b *pgBackend) readKeyPart(ctx context.Context, snapshot, cond string) ([]*keystore.Key, error) {
	// A pool busy with writes does not hold the load up for long: the
	// keys are read in one query instead.
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	tx, err := b.pool.BeginTx(actx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// The snapshot's name comes from the server (hex digits and dashes);
	// SET takes no parameters.
	if strings.Trim(snapshot, "0123456789ABCDEFabcdef-") != "" {
		return nil, fmt.Errorf("unexpected snapshot name %q", snapshot)
	}
	if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snapshot+`'`); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM keys WHERE `+cond)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*keystore.Key, error) { return scanKey(r) })
}

// pruneBatch bounds the change rows one prune statement deletes.
const pruneBatch = 10_000

// prune deletes change rows older than the retention, oldest first, in
// statements of at most pruneBatch rows (short transactions, whatever the
// write rate); rows another replica's pruner is deleting are skipped, not
// waited for. A replica whose applied revision is older than the oldest row
// left resyncs.
func (b *pgBackend) prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := b.pool.Exec(ctx, `DELETE FROM changes WHERE revision IN (
			SELECT revision FROM changes WHERE at < now() - make_interval(secs => $1)
			ORDER BY revision LIMIT `+strconv.Itoa(pruneBatch)+` FOR UPDATE SKIP LOCKED)`, b.retention.Seconds())
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
