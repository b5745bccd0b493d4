// Command pgscale measures keygate's PostgreSQL driver at a large key count,
// in process, on a throwaway cluster (internal/pgtest):
//
//	go run ./tests/bench/pgscale -keys 1000000 -joins 2 -replicas 3 -rate 1000 -duration 20s
//
// It fills a fresh database with -keys keys in the schema keygate's
// migrations define (services of 20 keys, an admin member each, five
// permission shapes as tests/bench generates them), written with COPY, then:
//
//   - join: opens a new replica (keystore.New over postgres.New) -joins
//     times and reports the time until it is ready, split into the database
//     read (the query and the rows streamed without decoding, measured on a
//     connection of its own), the driver's read and decode, and
//     keystore.Index.Load;
//   - feed: opens -replicas replicas and drives key writes at -rate per
//     second spread over them (90% updates, 10% rotations) for -duration:
//     writes/s sustained, the writer's latency, how long after the writer's
//     answer each other replica applied the write (feed lag), the batches
//     the appliers applied, and whether a rotated-out secret was still
//     accepted by the writer after its answer (it must never be).
//
// The cluster is stopped by its PID and removed when the run ends.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

type config struct {
	keys       int
	joins      int
	replicas   int
	rate       int
	duration   time.Duration
	writers    int
	cpuProfile string
	explain    bool
	statements bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.keys, "keys", 1_000_000, "keys in the database")
	flag.IntVar(&cfg.joins, "joins", 2, "replica joins to time (0: none)")
	flag.IntVar(&cfg.replicas, "replicas", 3, "replicas of the feed measurement (0: none)")
	flag.IntVar(&cfg.rate, "rate", 1000, "key writes per second, spread over the replicas")
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "length of the feed measurement")
	flag.IntVar(&cfg.writers, "writers", 64, "concurrent writers of the feed measurement")
	flag.BoolVar(&cfg.explain, "explain", false, "time server-side parts of the key query (COPY to /dev/null) after filling")
	flag.BoolVar(&cfg.statements, "statements", false, "load pg_stat_statements (a restart of the cluster) and print the feed's costliest statements")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "directory for CPU profiles of the joins and the feed")
	flag.Parse()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgscale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	bin, err := pgtest.FindBin()
	if err != nil {
		return err
	}
	c, err := pgtest.New(bin)
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "pgscale: stopping PostgreSQL:", err)
		}
	}()
	if err := c.Start(); err != nil {
		return fmt.Errorf("%w\n%s", err, c.LogTail())
	}
	if cfg.statements {
		if err := c.Exec(ctx, "postgres", `ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`); err != nil {
			return err
		}
		if err := c.Stop(); err != nil {
			return err
		}
		if err := c.Start(); err != nil {
			return fmt.Errorf("%w\n%s", err, c.LogTail())
		}
	}
	fmt.Fprintf(out, "PostgreSQL pid %d on port %d; load average %s\n", c.PID(), c.Port, loadAvg())
	url, err := c.NewDatabase(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "pgscale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	t0 := time.Now()
	ds, err := fill(ctx, url, tmp, cfg.keys)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	fmt.Fprintf(out, "filled %d keys over %d services in %.1f s (COPY); load average %s\n", cfg.keys, len(ds.services), time.Since(t0).Seconds(), loadAvg())
	if cfg.explain {
		if err := explain(ctx, url, out); err != nil {
			return fmt.Errorf("explain: %w", err)
		}
	}
	if cfg.cpuProfile != "" {
		if err := os.MkdirAll(cfg.cpuProfile, 0o755); err != nil {
			return err
		}
	}
	for i := range cfg.joins {
		if err := measureJoin(ctx, cfg, url, tmp, c.PID(), i, out); err != nil {
			return fmt.Errorf("join %d: %w", i+1, err)
		}
	}
	if cfg.statements {
		if err := pgExec(ctx, url, `CREATE EXTENSION pg_stat_statements`, `SELECT pg_stat_statements_reset()`); err != nil {
			return err
		}
	}
	if cfg.replicas > 0 {
		if err := measureFeed(ctx, cfg, url, tmp, ds, c.PID(), out); err != nil {
			return fmt.Errorf("feed: %w", err)
		}
	}
	if cfg.statements {
		if err := topStatements(ctx, url, out); err != nil {
			return err
		}
	}
	return nil
}

func pgExec(ctx context.Context, url string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// topStatements prints the statements that took the most execution time.
func topStatements(ctx context.Context, url string, out io.Writer) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 15`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(out, "  costliest statements (pg_stat_statements): calls, exec ms, plan ms, µs/call")
	for rows.Next() {
		var calls int64
		var exec, plan float64
		var q string
		if err := rows.Scan(&calls, &exec, &plan, &q); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %8d %9.0f %7.0f %7.1f  %s\n", calls, exec, plan, (exec+plan)*1e3/float64(max(calls, 1)), q)
	}
	return rows.Err()
}

// dataset is what fill wrote: the services and, per service, its keys'
// ids and secrets.
type dataset struct {
	services []string
	keys     map[string][]seedKey
}

type seedKey struct{ id, secret string }

// shapes are the configuration column values of the five permission shapes
// tests/bench generates, in keygate's own encoding of the column.
func shapes() ([][]byte, error) {
	type conf struct {
		ContentAPI    keystore.ContentAPI      `json:"contentApi"`
		ManagementAPI keystore.ManagementPerms `json:"managementApi"`
	}
	get := keystore.ContentPerms{Get: true}
	public := map[string]keystore.ContentPerms{"contact": {Post: true}}
	for _, ep := range []string{"blogs", "news", "categories", "authors", "pages"} {
		public[ep] = get
	}
	many := map[string]keystore.ContentPerms{}
	for j := range 20 {
		ep := fmt.Sprintf("api%02d", j)
		switch j % 3 {
		case 0:
			many[ep] = get
		case 1:
			many[ep] = keystore.ContentPerms{Get: true, Post: true, Put: true, Patch: true}
		default:
			many[ep] = keystore.ContentPerms{Get: true, GetAllDrafts: true}
		}
	}
	all := []conf{
		{ContentAPI: keystore.ContentAPI{Default: get}},
		{ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true, GetAllDrafts: true, GetAllClosed: true}}},
		{ContentAPI: keystore.ContentAPI{Individual: public}},
		{ContentAPI: keystore.ContentAPI{Default: get, Individual: map[string]keystore.ContentPerms{"contact": {Post: true, Put: true}}},
			ManagementAPI: keystore.ManagementPerms{GetContents: true, PatchContentStatus: true, GetMedia: true, PostMedia: true}},
		{ContentAPI: keystore.ContentAPI{Individual: many}},
	}
	var out [][]byte
	for _, c := range all {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// shapeOf spreads the shapes 4:2:2:1:1 as tests/bench does.
func shapeOf(i int) int {
	switch r := (i * 7) % 10; {
	case r < 4:
		return 0
	case r < 6:
		return 1
	case r < 8:
		return 2
	case r < 9:
		return 3
	default:
		return 4
	}
}

// fill migrates the database at url through keygate (a one-service data
// dir), then COPYs services, members (token "tok-<service>") and n keys
// (secret "s-<i>", 20 a service) into it, sets the key counts and moves the
// head without a change row, as keygate's own seeding does: every replica
// that sees the new head loads everything.
func fill(ctx context.Context, url, tmp string, n int) (*dataset, error) {
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range map[string]string{
		"services.json": `[{"id": "seed-demo", "plan": "enterprise"}]`,
		"members.json":  `[{"id": "seed-demo-admin", "service": "seed-demo", "role": "admin", "token": "tok-seed-demo"}]`,
	} {
		if err := os.WriteFile(filepath.Join(dataDir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := postgres.Migrate(ctx, postgres.MigrateOptions{URL: url, DataDir: dataDir, Authorizer: &keystoretest.Authorizer{}}); err != nil {
		return nil, err
	}
	conf, err := shapes()
	if err != nil {
		return nil, err
	}
	ds := &dataset{keys: map[string][]seedKey{}}
	for i := range (n + 19) / 20 {
		ds.services = append(ds.services, fmt.Sprintf("svc-%06d", i))
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"services"}, []string{"id", "plan"},
		pgx.CopyFromSlice(len(ds.services), func(i int) ([]any, error) { return []any{ds.services[i], "enterprise"}, nil })); err != nil {
		return nil, fmt.Errorf("copy services: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"members"}, []string{"id", "service", "role", "token_hash"},
		pgx.CopyFromSlice(len(ds.services), func(i int) ([]any, error) {
			s := ds.services[i]
			h := sha256.Sum256([]byte("tok-" + s))
			return []any{s + "-admin", s, "admin", h[:]}, nil
		})); err != nil {
		return nil, fmt.Errorf("copy members: %w", err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"keys"},
		[]string{"id", "service", "name", "secret_hash", "configuration", "created_by", "created_at", "updated_at", "revision"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			id, svc, secret := fmt.Sprintf("k-%07d", i), ds.services[i/20], fmt.Sprintf("s-%d", i)
			ds.keys[svc] = append(ds.keys[svc], seedKey{id: id, secret: secret})
			h := sha256.Sum256([]byte(secret))
			return []any{id, svc, fmt.Sprintf("key %d", i), h[:], string(conf[shapeOf(i)]), "seed", at, at, int64(1)}, nil
		})); err != nil {
		return nil, fmt.Errorf("copy keys: %w", err)
	}
	for _, q := range []string{
		`UPDATE services s SET key_count = (SELECT count(*) FROM keys k WHERE k.service = s.id)`,
		`UPDATE head SET revision = revision + 1`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	for _, q := range []string{`VACUUM ANALYZE keys`, `VACUUM ANALYZE services`, `VACUUM ANALYZE members`, `CHECKPOINT`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return ds, nil
}

// observed wraps a Store's index: it times Load and notes when each put
// was applied (by key id and revision) and how large each batch was.
type observed struct {
	keystore.Index
	mu      sync.Mutex
	load    time.Duration
	loads   int
	applied map[string]time.Time
	batches []int
}

func (o *observed) Load(dir *keystore.Directory, keys []*keystore.Key, ip map[string]*keystore.IPRestrictions) error {
	t := time.Now()
	err := o.Index.Load(dir, keys, ip)
	d := time.Since(t)
	o.mu.Lock()
	o.load, o.loads = d, o.loads+1
	o.mu.Unlock()
	return err
}

func (o *observed) Apply(changes []keystore.Change) error {
	err := o.Index.Apply(changes)
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches = append(o.batches, len(changes))
	if o.applied != nil {
		for _, c := range changes {
			if c.Key != nil {
				o.applied[revKey(c.Key.ID, c.Key.Revision)] = now
			}
		}
	}
	return err
}

func revKey(id string, rev uint64) string { return fmt.Sprintf("%s@%d", id, rev) }

// observedDriver hands the driver an observed index.
type observedDriver struct {
	keystore.Driver
	ix *observed
}

func (d *observedDriver) Open(ctx context.Context, env keystore.Env) (keystore.Backend, error) {
	d.ix.Index = env.Index
	env.Index = d.ix
	return d.Driver.Open(ctx, env)
}

// logCapture keeps the attributes of the driver's "key store loaded" line.
type logCapture struct {
	mu    sync.Mutex
	attrs map[string]string
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "key store loaded" && r.Message != "key store resynced" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attrs = map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) get(k string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attrs[k]
}

// openReplica opens a Store on url as a replica and waits until it is ready.
func openReplica(ctx context.Context, url, dataDir string, ix *observed, logs slog.Handler) (*keystore.Store, error) {
	if logs == nil {
		logs = slog.DiscardHandler
	}
	drv := &observedDriver{Driver: postgres.New(url, postgres.Options{}), ix: ix}
	s, err := keystore.New(ctx, drv, keystore.Options{DataDir: dataDir, Authorizer: &keystoretest.Authorizer{Limits: map[string]int{"enterprise": 20}}, Logger: slog.New(logs)})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for !s.Status().Ready {
		if time.Now().After(deadline) {
			s.Close()
			return nil, errors.New("replica not ready after 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s, nil
}

// rawRead streams the driver's key query on a connection of its own
// without decoding a value: what the database and the wire cost.
func rawRead(ctx context.Context, url string) (time.Duration, int, int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	t := time.Now()
	rows, err := conn.Query(ctx, `SELECT id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision FROM keys`)
	if err != nil {
		return 0, 0, 0, err
	}
	n, bytes := 0, int64(0)
	for rows.Next() {
		for _, v := range rows.RawValues() {
			bytes += int64(len(v))
		}
		n++
	}
	rows.Close()
	return time.Since(t), n, bytes, rows.Err()
}

// rawReadParallel is rawRead in two block ranges on two connections
// sharing one exported snapshot, as the driver reads a large table.
func rawReadParallel(ctx context.Context, url string) (time.Duration, error) {
	lead, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer lead.Close(context.WithoutCancel(ctx))
	t := time.Now()
	tx, err := lead.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snapshot string
	var blocks int64
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot(), pg_relation_size('keys') / current_setting('block_size')::int`).Scan(&snapshot, &blocks); err != nil {
		return 0, err
	}
	errs := make(chan error, 2)
	for i := range int64(2) {
		go func() {
			errs <- func() error {
				conn, err := pgx.Connect(ctx, url)
				if err != nil {
					return err
				}
				defer conn.Close(context.WithoutCancel(ctx))
				ptx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
				if err != nil {
					return err
				}
				defer func() { _ = ptx.Rollback(context.WithoutCancel(ctx)) }()
				if _, err := ptx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snapshot+`'`); err != nil {
					return err
				}
				cond := fmt.Sprintf(`ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid`, blocks*i/2, blocks*(i+1)/2)
				if i == 1 {
					cond = fmt.Sprintf(`ctid >= '(%d,0)'::tid`, blocks/2)
				}
				rows, err := ptx.Query(ctx, `SELECT id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision FROM keys WHERE `+cond)
				if err != nil {
					return err
				}
				for rows.Next() {
					_ = rows.RawValues()
				}
				rows.Close()
				return rows.Err()
			}()
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return time.Since(t), nil
}

func measureJoin(ctx context.Context, cfg config, url, tmp string, pgPID, i int, out io.Writer) error {
	raw, n, bytes, err := rawRead(ctx, url)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	rawPar, err := rawReadParallel(ctx, url)
	if err != nil {
		return fmt.Errorf("raw parallel read: %w", err)
	}
	runtime.GC()
	la := loadAvg()
	var stopProfile func()
	if cfg.cpuProfile != "" {
		f, err := os.Create(filepath.Join(cfg.cpuProfile, fmt.Sprintf("cpu-join-%d.pb.gz", i+1)))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	ix := &observed{}
	logs := &logCapture{}
	pg0 := groupCPU(pgPID)
	t := time.Now()
	s, err := openReplica(ctx, url, filepath.Join(tmp, "data"), ix, logs)
	if stopProfile != nil {
		stopProfile()
	}
	if err != nil {
		return err
	}
	total := time.Since(t)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	pgCPU := groupCPU(pgPID) - pg0
	fmt.Fprintf(out, "join %d: ready in %.2f s (load average %s; CPU: keygate %.1f s, PostgreSQL %.1f s): driver read+decode %s ms in %s part(s), Index.Load %.2f s (%d loads), heap %d MB; raw query+stream without decoding: one query %.2f s, two parts %.2f s (%d rows, %d MB)\n",
		i+1, total.Seconds(), la, cpuSeconds(ru1)-cpuSeconds(ru0), pgCPU, logs.get("read_ms"), logs.get("read_parts"), ix.load.Seconds(), ix.loads, ms.HeapAlloc>>20, raw.Seconds(), rawPar.Seconds(), n, bytes>>20)
	s.Close()
	runtime.GC()
	return nil
}

func cpuSeconds(ru syscall.Rusage) float64 {
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// write is one key write of the feed measurement.
type write struct {
	id          string
	rev         uint64
	replica     int
	start, done time.Time
}

func measureFeed(ctx context.Context, cfg config, url, tmp string, ds *dataset, pgPID int, out io.Writer) error {
	replicas := make([]*keystore.Store, cfg.replicas)
	obs := make([]*observed, cfg.replicas)
	for i := range replicas {
		obs[i] = &observed{applied: map[string]time.Time{}}
		s, err := openReplica(ctx, url, filepath.Join(tmp, "data"), obs[i], nil)
		if err != nil {
			return err
		}
		defer s.Close()
		replicas[i] = s
	}
	for _, o := range obs {
		o.mu.Lock()
		o.batches = nil
		o.mu.Unlock()
	}
	// Each writer owns the keys of every writers-th service: no two
	// writers touch one service (no lock waits between them, as a
	// real spread of tenants would have few).
	tokens := make(chan struct{}, cfg.rate)
	runCtx, stop := context.WithTimeout(ctx, cfg.duration)
	defer stop()
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		sent := 0
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(start).Seconds() * float64(cfg.rate))
			for ; sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default: // writers behind: the write is dropped (counted as missed)
				}
			}
		}
	}()
	var (
		mu       sync.Mutex
		writes   []write
		failures atomic.Int64
		revoked  atomic.Int64 // rotated-out secret still accepted by the writer after its answer
		rotates  atomic.Int64
	)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var stopProfile func()
	if cfg.cpuProfile != "" {
		f, err := os.Create(filepath.Join(cfg.cpuProfile, "cpu-feed.pb.gz"))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	pg0 := groupCPU(pgPID)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := w % len(replicas)
			s := replicas[r]
			var mine []string
			for i := w; i < len(ds.services); i += cfg.writers {
				mine = append(mine, ds.services[i])
			}
			secrets := map[string]string{}
			seq := 0
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tokens:
				}
				svc := mine[seq%len(mine)]
				keys := ds.keys[svc]
				k := keys[(seq/len(mine))%len(keys)]
				seq++
				wctx := keystore.WithCaller(ctx, keystore.Caller{Address: "192.0.2.7", RequestID: fmt.Sprintf("w%d-%d", w, seq)})
				st := time.Now()
				var rev uint64
				var err error
				if seq%10 == 0 {
					old := secrets[k.id]
					if old == "" {
						old = k.secret
					}
					var c keystore.Created
					c, err = s.RotateKey(wctx, "tok-"+svc, svc, k.id)
					if err == nil {
						rotates.Add(1)
						rev = c.Revision
						secrets[k.id] = c.Secret
						if _, ok := s.KeyBySecret(old); ok {
							revoked.Add(1)
						}
					}
				} else {
					var u keystore.Updated
					u, err = s.UpdateKey(wctx, "tok-"+svc, svc, k.id, keystore.KeySpec{
						Name: fmt.Sprintf("w %d", seq), ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}})
					rev = u.Revision
				}
				if err != nil {
					if failures.Add(1) <= 3 {
						fmt.Fprintln(os.Stderr, "write:", err)
					}
					continue
				}
				mu.Lock()
				writes = append(writes, write{id: k.id, rev: rev, replica: r, start: st, done: time.Now()})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	la := loadAvg()
	// Wait for every replica to apply every write.
	settle := time.Now()
	for {
		all := true
		for _, o := range obs {
			o.mu.Lock()
			for _, w := range writes {
				if _, ok := o.applied[revKey(w.id, w.rev)]; !ok {
					all = false
					break
				}
			}
			o.mu.Unlock()
		}
		if all {
			break
		}
		if time.Since(settle) > time.Minute {
			return errors.New("replicas did not apply every write within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stopProfile != nil {
		stopProfile()
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	pgCPU := groupCPU(pgPID) - pg0
	var lat, lag, lagStart []time.Duration
	for _, w := range writes {
		lat = append(lat, w.done.Sub(w.start))
		for i, o := range obs {
			if i == w.replica {
				continue
			}
			at := o.applied[revKey(w.id, w.rev)]
			lag = append(lag, at.Sub(w.done))
			lagStart = append(lagStart, at.Sub(w.start))
		}
	}
	own := cpuSeconds(ru1) - cpuSeconds(ru0)
	fmt.Fprintf(out, "feed: %d replicas, %d writers, target %d writes/s for %s: %d writes answered = %.0f writes/s (%d rotations), %d failed; load average %s\n",
		len(replicas), cfg.writers, cfg.rate, cfg.duration, len(writes), float64(len(writes))/elapsed.Seconds(), rotates.Load(), failures.Load(), la)
	fmt.Fprintf(out, "  CPU: keygate (writers and all replicas) %.1f s = %.0f µs/write, PostgreSQL %.1f s = %.0f µs/write\n",
		own, own/float64(max(len(writes), 1))*1e6, pgCPU, pgCPU/float64(max(len(writes), 1))*1e6)
	fmt.Fprintf(out, "  writer latency (call to answer, after its own feed applied it): %s\n", quantiles(lat))
	fmt.Fprintf(out, "  feed lag at the other replicas, from the writer's answer:      %s\n", quantiles(lag))
	fmt.Fprintf(out, "  ... from the write's start:                                     %s\n", quantiles(lagStart))
	for i, o := range obs {
		o.mu.Lock()
		n, sum, mx := len(o.batches), 0, 0
		for _, b := range o.batches {
			sum += b
			mx = max(mx, b)
		}
		o.mu.Unlock()
		fmt.Fprintf(out, "  replica %d: %d Apply batches, mean %.1f changes, max %d\n", i, n, float64(sum)/float64(max(n, 1)), mx)
	}
	fmt.Fprintf(out, "  rotated-out secrets still accepted by the writer after its answer: %d (must be 0)\n", revoked.Load())
	if revoked.Load() != 0 {
		return errors.New("revocation was not immediate at the writer")
	}
	return nil
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	q := func(p float64) string {
		return fmt.Sprintf("%.1f", float64(ds[min(len(ds)-1, int(p*float64(len(ds))))])/1e6)
	}
	return fmt.Sprintf("p50 %s ms, p90 %s, p99 %s, max %s (n=%d)", q(0.5), q(0.9), q(0.99), q(1), len(ds))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// explain times what the server spends on parts of the key query: the scan
// alone, the columns without the configuration, the configuration alone
// (jsonb to text), all columns in text, the same in binary.
func explain(ctx context.Context, url string, out io.Writer) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range []string{
		`SELECT count(*) FROM keys`,
		`COPY (SELECT id, service, name, secret_hash, created_by, created_at, updated_at, revision FROM keys) TO '/dev/null'`,
		`COPY (SELECT configuration FROM keys) TO '/dev/null'`,
		`COPY (SELECT id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision FROM keys) TO '/dev/null'`,
		`COPY (SELECT id, service, name, secret_hash, configuration, created_by, created_at, updated_at, revision FROM keys) TO '/dev/null' WITH (FORMAT binary)`,
		`SELECT sum(length(configuration::text)) FROM keys`,
	} {
		t := time.Now()
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		fmt.Fprintf(out, "  server: %6.2f s  %s\n", time.Since(t).Seconds(), q)
	}
	return nil
}

// groupCPU is the user+system CPU seconds of the postmaster pid and its
// children (the backends, each in a session of its own), from /proc.
func groupCPU(pid int) float64 {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces), from state on.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 || (e.Name() != strconv.Itoa(pid) && f[1] != strconv.Itoa(pid)) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return float64(ticks) / 100 // USER_HZ
}
