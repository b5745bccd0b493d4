package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/console"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/gcpace"
	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/local"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/watch"
)

type serveConfig struct {
	addr              string
	policies          string
	data              string
	state             string
	decisionLog       string
	logLevel          string
	watch             bool
	watchInterval     time.Duration
	debounce          time.Duration
	evalTimeout       time.Duration
	shutdown          time.Duration
	forwardAuth       string
	debugAddr         string
	perService        bool
	store             string
	storeHeartbeat    time.Duration
	storeRetention    time.Duration
	storeLockTimeout  time.Duration
	readyMaxStaleness time.Duration
	maxStaleness      time.Duration
	// trustedProxies is --trusted-proxies as given; proxies is it parsed.
	trustedProxies string
	proxies        []netip.Prefix
	legacyHeaders  bool
	console        bool
	lifecycle      lifecycleFlags
}

func parseServe(args []string, getenv func(string) string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("serve", `Usage: keygate serve [flags]

Serves the decision API (/v1/decide, /v1/forward-auth), the key-management
API (/v1/services/{service}/keys) and /health, /v1/policies, /metrics.
Policies and data are watched and hot-reloaded; a broken edit is rejected
and the last good version keeps serving.

Every flag can also be set as an environment variable KEYGATE_<FLAG>, upper
case with dashes as underscores (KEYGATE_ADDR, KEYGATE_DECISION_LOG, …);
a flag on the command line wins over the environment.`, stderr)
	fs.StringVar(&c.addr, "addr", "localhost:8181", "listen address (host:port)")
	fs.StringVar(&c.policies, "policies", "policies", "directory of Rego policies and policy data")
	fs.StringVar(&c.data, "data", "data", "directory of services.json, members.json and seed keys.json")
	fs.StringVar(&c.state, "state", ".keygate/state.json", "durable key state (snapshot; the write-ahead log sits beside it)")
	fs.StringVar(&c.decisionLog, "decision-log", "-", `decision log file, "-" for stdout, "off" to disable`)
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.watch, "watch", true, "watch policies and data with inotify and reload them on change")
	fs.DurationVar(&c.watchInterval, "watch-interval", 0, "also poll policies and data for changes at this interval (for file systems without inotify events; with --watch=false, poll only); 0 disables polling")
	fs.DurationVar(&c.debounce, "debounce", 150*time.Millisecond, "quiet period that turns a burst of file events into one reload")
	fs.DurationVar(&c.evalTimeout, "eval-timeout", time.Second, "bound on one policy evaluation; an evaluation that exceeds it is a deny")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 15*time.Second, "time in-flight requests get to finish on SIGTERM")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "serve Go's /debug/pprof/ profiles on this separate address (e.g. localhost:6060); empty disables it. Keep it on loopback")
	fs.BoolVar(&c.perService, "metrics-per-service", false, "add series that name services (keys per service) to /metrics; /metrics needs no credentials, so only where clients cannot reach it")
	fs.StringVar(&c.store, "store", "", "shared key store: a PostgreSQL connection string (postgres://user@host/db) that every replica uses; empty keeps keys in the local --state file. Not through a transaction-mode pooler (the change feed LISTENs)")
	fs.DurationVar(&c.storeHeartbeat, "store-heartbeat", postgres.DefaultHeartbeat, "with --store: how often the replica reads the head revision even when no change notification came")
	fs.DurationVar(&c.storeRetention, "store-retention", postgres.DefaultRetention, "with --store: how long change rows are kept; a replica down for longer reloads everything")
	fs.DurationVar(&c.storeLockTimeout, "store-lock-timeout", postgres.DefaultLockTimeout, "with --store: how long a key write waits for its service's row while another write holds it; then 503 store_busy, nothing changed")
	fs.DurationVar(&c.readyMaxStaleness, "ready-max-staleness", server.DefaultReadyMaxStaleness, "with --store: /health answers 503 (drain me) once the index was last confirmed current longer ago than this")
	fs.DurationVar(&c.maxStaleness, "max-staleness", server.DefaultMaxStaleness, "with --store: decisions fail closed with 503 store_stale once the index was last confirmed current longer ago than this; 0 never")
	fs.StringVar(&c.forwardAuth, "forward-auth-headers", server.ForwardAuto,
		"header convention of the proxy in front of /v1/forward-auth: auto, nginx (X-Original-*), traefik (X-Forwarded-*) or envoy (original method and path); naming it makes keygate ignore the others' headers")
	c.lifecycle.register(fs)
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "",
		"comma-separated CIDRs or addresses of proxies whose client-address header (X-Real-IP, X-Forwarded-For, X-Envoy-External-Address) /v1/forward-auth believes for the API IP restriction; empty trusts none and the peer's address is the client's")
	fs.BoolVar(&c.legacyHeaders, "legacy-headers", false,
		"migration aid: accept microCMS's old key headers X-API-KEY (reads), X-GLOBAL-DRAFT-KEY (with X-API-KEY: drafts) and X-WRITE-API-KEY (writes) on content API decisions; off by default")
	fs.BoolVar(&c.console, "console", true,
		"serve the key management console at /console/ (a client of this API, with no powers of its own); false answers /console/ 404")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if err := checkArgs(fs, args); err != nil {
		return c, err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return c, err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"store-heartbeat", c.storeHeartbeat}, {"store-retention", c.storeRetention}, {"store-lock-timeout", c.storeLockTimeout}, {"ready-max-staleness", c.readyMaxStaleness}} {
		if d.v <= 0 {
			return c, fmt.Errorf("--%s must be positive", d.name)
		}
	}
	if c.maxStaleness < 0 {
		return c, errors.New("--max-staleness must not be negative")
	}
	// A replica that fails every decision (store_stale) must not report
	// ready: the load balancer drains it first, then it fails closed.
	if c.maxStaleness > 0 && c.readyMaxStaleness > c.maxStaleness {
		return c, fmt.Errorf("--ready-max-staleness %s is longer than --max-staleness %s: a replica would stay ready while failing every decision", c.readyMaxStaleness, c.maxStaleness)
	}
	switch c.forwardAuth {
	case server.ForwardAuto, server.ForwardNginx, server.ForwardTraefik, server.ForwardEnvoy:
	default:
		return c, fmt.Errorf("--forward-auth-headers %q: want auto, nginx, traefik or envoy", c.forwardAuth)
	}
	proxies, err := server.ParseTrustedProxies(c.trustedProxies)
	if err != nil {
		return c, fmt.Errorf("--trusted-proxies %q: %w", c.trustedProxies, err)
	}
	c.proxies = proxies
	return c, c.lifecycle.check(c.policies)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, getenv, stderr)
	if err != nil {
		return asUsageError("serve", err)
	}
	log, err := newLogger(stderr, cfg.logLevel)
	if err != nil {
		return asUsageError("serve", err)
	}
	// Listen before anything else: a busy port fails now, with its address,
	// before policies are compiled or the key state is created on disk.
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	defer ln.Close()
	if cfg.debugAddr != "" {
		dln, err := net.Listen("tcp", cfg.debugAddr)
		if err != nil {
			return fmt.Errorf("listen on %s (--debug-addr): %w", cfg.debugAddr, err)
		}
		ds := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = ds.Serve(dln) }()
		defer ds.Close()
		log.Info("profiling endpoint", "addr", dln.Addr().String())
	}
	// keygate's live heap is mostly the key store (long-lived) while each
	// decision leaves short-lived garbage; the default GOGC=100 makes a
	// store pay for frequent full marks. 200 halves GC work for at most
	// twice the heap while the store loads; once it is loaded, the
	// governor (internal/gcpace) keeps the headroom near 192 MiB, so that
	// a large store does not carry a heap goal of three times itself. An
	// explicit GOGC or GOMEMLIMIT from the environment wins.
	paceGC := getenv("GOGC") == "" && getenv("GOMEMLIMIT") == ""
	if getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}

	src, err := cfg.lifecycle.servingSource(cfg.policies, cfg.state, log)
	if err != nil {
		return err
	}
	// A policy directory that does not load is a mistake to fix before
	// starting. A bundle may be unreachable or refused for a while (the
	// server down, a bad build): keygate then starts not ready — /health
	// 503, every decision a 503 policy_unavailable deny — and polls until
	// a good bundle arrives, unless the cached last good one loaded.
	fromBundle := cfg.lifecycle.bundle != ""
	eng, err := engine.NewFromSource(ctx, src, engine.Options{Timeout: cfg.evalTimeout, Logger: log, StartUnavailable: fromBundle})
	if err != nil {
		return err
	}
	if eng.Revision() == "" {
		log.Error("no policy loaded: not ready, polling the bundle", "source", src.String(), "error", eng.Status().LastError)
	}
	shadowEng, err := cfg.lifecycle.shadowEngine(ctx, log, cfg.evalTimeout)
	if err != nil {
		return err
	}
	// The driver: the shared PostgreSQL store with --store, else the
	// local state file.
	var drv keystore.Driver = local.New(local.Options{StatePath: cfg.state})
	if cfg.store != "" {
		drv = postgres.New(cfg.store, postgres.Options{
			Heartbeat: cfg.storeHeartbeat, Retention: cfg.storeRetention, LockTimeout: cfg.storeLockTimeout,
		})
	}
	store, err := keystore.New(ctx, drv, keystore.Options{
		DataDir: cfg.data, Authorizer: authz.New(eng), Network: authz.New(eng), Logger: log,
	})
	if err != nil {
		return err
	}
	// Loading a large state leaves garbage several times the size of the
	// store; collect it and hand the pages back now, so that RSS tracks
	// the live key store from the first request on.
	debug.FreeOSMemory()
	if paceGC {
		go gcpace.New(gcpace.Options{Logger: log}).Run(ctx)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing key store", "error", err.Error())
		}
	}()

	metrics := server.NewMetrics(store.KeyCounts)
	if cfg.perService {
		metrics.EnablePerService()
	}
	if rev := eng.Revision(); rev != "" {
		metrics.SetRevision(rev)
	}
	metrics.ObserveStore(store.Status)
	var declog *decision.DecisionLog
	logOpts := decision.DecisionLogOptions{Dropped: metrics.DecisionLogDropped, Truncated: metrics.DecisionLogTruncated, Logger: log}
	switch cfg.decisionLog {
	case "off", "":
	case "-":
		declog = decision.NewDecisionLog(stdout, logOpts)
	default:
		if err := os.MkdirAll(filepath.Dir(cfg.decisionLog), 0o755); err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		f, err := os.OpenFile(cfg.decisionLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		defer f.Close()
		declog = decision.NewDecisionLog(f, logOpts)
	}
	var consoleHandler http.Handler
	if cfg.console {
		h, err := console.New()
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		consoleHandler = h
	}
	srv := server.New(eng, store, metrics, server.Options{Console: consoleHandler, DecisionLog: declog, Logger: log, ForwardAuthHeaders: cfg.forwardAuth,
		ReadyMaxStaleness: cfg.readyMaxStaleness, MaxStaleness: cfg.maxStaleness,
		TrustedProxies: cfg.proxies, LegacyHeaders: cfg.legacyHeaders,
		Shadow: cfg.lifecycle.shadowOptions(shadowEng, cfg.evalTimeout)})

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wopts := watch.Options{Debounce: cfg.debounce, PollInterval: cfg.watchInterval, PollOnly: !cfg.watch, Logger: log,
		Ignore: engine.IsEditorTemp}
	// --watch uses inotify; --watch-interval polls. Either alone works
	// (polling alone is for file systems that report no events).
	if cfg.watch || cfg.watchInterval > 0 {
		watchers := []*watch.Watcher{watch.New(cfg.data, wopts, func(ctx context.Context) { _ = srv.ReloadData(ctx) })}
		if cfg.lifecycle.bundle == "" {
			watchers = append(watchers, watch.New(cfg.policies, wopts, func(ctx context.Context) { _, _ = srv.ReloadPolicies(ctx) }))
		}
		for _, w := range watchers {
			wg.Go(func() {
				if err := w.Run(watchCtx); err != nil {
					log.Error("watcher stopped", "error", err.Error())
				}
			})
		}
	}

	cfg.lifecycle.startReloaders(watchCtx, &wg, log, srv, wopts, cfg.watch || cfg.watchInterval > 0)

	where := []any{"state", cfg.state}
	if cfg.store != "" {
		where = []any{"store", keystore.StorePostgres}
	}
	log.Info("keygate serving", append([]any{"addr", ln.Addr().String(), "policies", src.String(), "data", cfg.data,
		"revision", eng.Revision()}, where...)...)
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	select {
	case err := <-serveErr:
		stopWatch()
		wg.Wait()
		srv.Close()
		if declog != nil {
			declog.Close()
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.shutdown.String())
	stopWatch()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdown)
	defer cancel()
	err = hs.Shutdown(sctx)
	wg.Wait()
	srv.Close()
	if declog != nil {
		declog.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// debugMux serves the runtime profiles of net/http/pprof on a mux of its
// own, never on the API's router.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
