package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keygate/keygate/engine"
	"github.com/keygate/keygate/internal/decision"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/watch"
)

// lifecycleFlags are serve's flags for where policies come from besides a
// directory (a signed bundle) and for a shadow candidate.
type lifecycleFlags struct {
	bundle         string
	bundlePoll     time.Duration
	bundleKey      string
	bundleKeyAlg   string
	bundleKeyID    string
	bundleMaxBytes int64
	bundleCacheDir string
	shadowPolicies string
	shadowBundle   string
	shadowSample   float64
	shadowQueue    int
	shadowWorkers  int
}

func (l *lifecycleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.bundle, "bundle", "", "load policies and policy data from this OPA bundle (http://, https:// or file://, as \"opa build\" writes it) instead of --policies; polled every --bundle-poll")
	fs.DurationVar(&l.bundlePoll, "bundle-poll", 10*time.Second, "how often to poll --bundle (with ±10% jitter; an unchanged bundle costs a 304)")
	fs.StringVar(&l.bundleKey, "bundle-verification-key", "", "file holding the PEM public key (RSA, ECDSA or Ed25519) that must have signed --bundle, or an HMAC secret with --bundle-verification-key-alg HS256; with it, unsigned or badly signed bundles are refused")
	fs.StringVar(&l.bundleKeyAlg, "bundle-verification-key-alg", "", "signature algorithm of --bundle-verification-key: empty takes it from the public key (RS256, ES256/384/512 by curve, EdDSA); HS256, HS384 or HS512 make the key file an HMAC secret, which is never assumed")
	fs.Int64Var(&l.bundleMaxBytes, "bundle-max-bytes", engine.DefaultMaxBundleBytes, "bound on a bundle's download and, separately, on its content once inflated; a bundle beyond it is refused before its signature is checked, and the last good one keeps serving")
	fs.StringVar(&l.bundleCacheDir, "bundle-cache-dir", "", `directory keeping the last --bundle that loaded, to start from when the bundle server is down or serves a refused bundle (verified again); empty: "bundle" beside --state; "off" disables it`)
	fs.StringVar(&l.bundleKeyID, "bundle-key-id", engine.DefaultBundleKeyID, "id of --bundle-verification-key (opa build --verification-key-id)")
	fs.StringVar(&l.shadowPolicies, "shadow-policies", "", "directory of a candidate policy to evaluate beside the serving one (off the request path); disagreements go to the decision log and metrics")
	fs.StringVar(&l.shadowBundle, "shadow-bundle", "", "like --shadow-policies, from an OPA bundle URL (verified with --bundle-verification-key when set)")
	fs.Float64Var(&l.shadowSample, "shadow-sample", 1.0, "fraction of decisions (0–1) evaluated by the shadow policy")
	fs.IntVar(&l.shadowQueue, "shadow-queue", 4096, "decisions waiting for shadow evaluation at most; beyond it they are dropped and counted")
	fs.IntVar(&l.shadowWorkers, "shadow-workers", 1, "goroutines evaluating the shadow policy")
}

// check validates the combination, after flags and environment are applied.
func (l *lifecycleFlags) check(policies string) error {
	if l.bundle != "" && policies != "policies" {
		return fmt.Errorf("--bundle and --policies are exclusive: policies come from one source")
	}
	if l.shadowPolicies != "" && l.shadowBundle != "" {
		return fmt.Errorf("--shadow-policies and --shadow-bundle are exclusive")
	}
	if l.bundlePoll <= 0 {
		return fmt.Errorf("--bundle-poll %s: want a positive duration", l.bundlePoll)
	}
	if l.bundleMaxBytes <= 0 {
		return fmt.Errorf("--bundle-max-bytes %d: want a positive number of bytes", l.bundleMaxBytes)
	}
	if l.bundleKeyAlg != "" && l.bundleKey == "" {
		return fmt.Errorf("--bundle-verification-key-alg %s without --bundle-verification-key", l.bundleKeyAlg)
	}
	if l.shadowSample < 0 || l.shadowSample > 1 {
		return fmt.Errorf("--shadow-sample %g: want a fraction between 0 and 1", l.shadowSample)
	}
	if l.shadowQueue <= 0 || l.shadowWorkers <= 0 {
		return fmt.Errorf("--shadow-queue and --shadow-workers must be positive")
	}
	return nil
}

// bundleSource returns the bundle source for url, verified with the key
// file when one is given, bounded by --bundle-max-bytes and cached in
// cacheDir (none when empty).
func (l *lifecycleFlags) bundleSource(url, cacheDir string, log *slog.Logger) (*engine.BundleSource, error) {
	opts := engine.BundleOptions{URL: url, KeyID: l.bundleKeyID, KeyAlgorithm: l.bundleKeyAlg, MaxBytes: l.bundleMaxBytes,
		CacheDir: cacheDir, Logger: log}
	if l.bundleKey != "" {
		key, err := os.ReadFile(l.bundleKey)
		if err != nil {
			return nil, fmt.Errorf("--bundle-verification-key: %w", err)
		}
		opts.VerificationKey = key
	}
	src, err := engine.NewBundleSource(opts)
	if err != nil {
		return nil, fmt.Errorf("--bundle-verification-key %s: %w", l.bundleKey, err)
	}
	return src, nil
}

// cacheDir is where the serving bundle is cached: --bundle-cache-dir, by
// default "bundle" beside the state file; empty when "off".
func (l *lifecycleFlags) cacheDir(state string) string {
	switch l.bundleCacheDir {
	case "off":
		return ""
	case "":
		return filepath.Join(filepath.Dir(state), "bundle")
	}
	return l.bundleCacheDir
}

// servingSource is where the serving policy comes from.
func (l *lifecycleFlags) servingSource(policies, state string, log *slog.Logger) (engine.Source, error) {
	if l.bundle == "" {
		return engine.DirSource(policies), nil
	}
	return l.bundleSource(l.bundle, l.cacheDir(state), log)
}

// shadowSource is the shadow candidate's source, nil without one. A shadow
// bundle is not cached: a candidate that cannot load at start stops keygate
// (see shadowEngine).
func (l *lifecycleFlags) shadowSource(log *slog.Logger) (engine.Source, error) {
	switch {
	case l.shadowPolicies != "":
		return engine.DirSource(l.shadowPolicies), nil
	case l.shadowBundle != "":
		return l.bundleSource(l.shadowBundle, "", log.With("policy", "shadow"))
	}
	return nil, nil
}

// pollEvery calls reload every interval, ±10% at random so that replicas
// started together do not poll the bundle server in step, until ctx ends.
func pollEvery(ctx context.Context, log *slog.Logger, interval time.Duration, reload func(context.Context)) {
	log.Info("polling bundle", "interval", interval.String())
	for {
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(interval))
		t := time.NewTimer(interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			reload(ctx)
		}
	}
}

// shadowEngine loads the shadow candidate, nil without one. A candidate
// directory that does not load at start stops keygate, as a serving policy
// would: it is a configuration mistake, and silently evaluating nothing
// would hide it. A shadow bundle that cannot be fetched or is refused at
// start does not: whoever serves its URL could otherwise keep every
// replica from starting. The shadow then evaluates nothing (counted
// "unloaded"), /v1/policies shows the error, and the poll loads it once
// it is served.
func (l *lifecycleFlags) shadowEngine(ctx context.Context, log *slog.Logger, timeout time.Duration) (*engine.Engine, error) {
	src, err := l.shadowSource(log)
	if err != nil || src == nil {
		return nil, err
	}
	eng, err := engine.NewFromSource(ctx, src, engine.Options{Timeout: timeout, Logger: log.With("policy", "shadow"),
		StartUnavailable: l.shadowBundle != ""})
	if err != nil {
		return nil, fmt.Errorf("shadow policy: %w", err)
	}
	return eng, nil
}

// shadowOptions configures the server's shadow evaluation of eng; off when
// eng is nil.
func (l *lifecycleFlags) shadowOptions(eng *engine.Engine, timeout time.Duration) decision.ShadowOptions {
	if eng == nil {
		return decision.ShadowOptions{}
	}
	return decision.ShadowOptions{Policy: eng, Sample: l.shadowSample, Queue: l.shadowQueue, Workers: l.shadowWorkers, Timeout: timeout}
}

// startReloaders polls the serving bundle and keeps the shadow candidate
// current: its bundle polled, its directory watched like --policies.
func (l *lifecycleFlags) startReloaders(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, srv *server.Server,
	wopts watch.Options, watching bool,
) {
	if l.bundle != "" {
		wg.Go(func() {
			pollEvery(ctx, log, l.bundlePoll, func(ctx context.Context) { _, _ = srv.ReloadPolicies(ctx) })
		})
	}
	switch {
	case l.shadowBundle != "":
		wg.Go(func() {
			pollEvery(ctx, log, l.bundlePoll, func(ctx context.Context) { _, _ = srv.ReloadShadow(ctx) })
		})
	case l.shadowPolicies != "" && watching:
		w := watch.New(l.shadowPolicies, wopts, func(ctx context.Context) { _, _ = srv.ReloadShadow(ctx) })
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				log.Error("shadow watcher stopped", "error", err.Error())
			}
		})
	}
}
