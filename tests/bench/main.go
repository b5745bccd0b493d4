// Command bench is keygate's side-by-side load benchmark: in one
// run it measures requests/s and latency percentiles of
//
//	(a) keygate's POST /v1/decide — the real binary, built from this checkout,
//	    on a generated data dir (the demo data plus -keys keys) with a mix of
//	    GET lists, details and draftKey fetches, writes, management calls,
//	    unknown keys and keys of another service;
//	(b) a Gin baseline (gin.New(), same body binding, constant answer);
//	(c) `opa run --server` of the same OPA module version on keygate's
//	    policies/, asked /v1/data/{content,management}/decision with the input
//	    documents keygate's engine builds for the same requests;
//
// one after another, each for a fixed time after a warm-up, and prints the
// ratios a/b and a/c. With -scale it instead runs (a) once per key count and
// reports latency, throughput and memory per key.
//
// Run it from the module root:
//
//	go run ./tests/bench                     # the comparison, 10 s per target
//	go run ./tests/bench -scale 100,100000   # the key-count scale check
//
// Every server listens on 127.0.0.1 only and is stopped before it returns.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	duration    time.Duration
	warmup      time.Duration
	conns       int
	keys        int
	scale       []int
	targets     string
	corpusSize  int
	seed        uint64
	keygateBin  string
	opaBin      string
	policies    string
	decisionLog string
	keep        bool
	checkN      int
	unique      bool
	mix         string
	extraArgs   []string
	rounds      int
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-serve-baseline" {
		if err := serveBaseline(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parse(args []string) (config, error) {
	var c config
	var scale string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per target")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "unmeasured load before each measurement")
	fs.IntVar(&c.conns, "conns", 32, "concurrent connections (closed-loop workers)")
	fs.IntVar(&c.keys, "keys", 1000, "generated keys in keygate's store, besides the demo key")
	fs.StringVar(&scale, "scale", "", "comma-separated key counts (e.g. 100,1000000): run only keygate once per count (first start, restart from its own state, load) and report start times, memory per key and decisions/s against the first count; -mix defaults to fresh and -corpus to 20000 distinct keys")
	fs.StringVar(&c.targets, "targets", "a,b,c", "targets to run, measured in this order: a=keygate, b=gin baseline, c=opa server, p=keygate on a throwaway PostgreSQL (--store; needs the PostgreSQL binaries)")
	fs.IntVar(&c.corpusSize, "corpus", 8192, "distinct requests, cycled by the workers")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generated keys and requests")
	fs.StringVar(&c.keygateBin, "keygate", "", "keygate binary (default: go build ./cmd/keygate)")
	fs.StringVar(&c.opaBin, "opa", "", "opa binary (default: go install github.com/open-policy-agent/opa@<go.mod version> into the temp dir)")
	fs.StringVar(&c.policies, "policies", "policies", "policies directory for keygate and opa")
	fs.StringVar(&c.decisionLog, "decision-log", "file", `keygate's decision log: "file" (a file in the temp dir, as in production) or "off"`)
	fs.BoolVar(&c.keep, "keep", false, "keep the temp dir (data, logs, binaries) and print its path")
	fs.IntVar(&c.checkN, "check", 400, "requests whose keygate and opa decisions are compared before measuring")
	fs.BoolVar(&c.unique, "unique", true, "give every request that carries a content id (details, draftKey fetches, writes, some management calls; about 40%) a never-sent id, so a decision cache cannot answer them all")
	fs.StringVar(&c.mix, "mix", "realistic", `request mix: "realistic" (lists, details, draftKeys, writes, management, unknown keys) or "fresh" (half list GETs, half single-content GETs; with -unique every single GET names a never-seen content id)`)
	fs.IntVar(&c.rounds, "rounds", 5, "measure each target in this many interleaved slices of -duration/rounds (a b c, c b a, …), so that a machine whose speed drifts weighs on every target alike; 1 measures the targets one after the other")
	var extra string
	fs.StringVar(&extra, "keygate-args", "", "extra space-separated arguments for `keygate serve`")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.extraArgs = strings.Fields(extra)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if scale != "" {
		// The scale check's traffic: half list GETs, half GETs of
		// never-seen content ids, over 20,000 distinct keys.
		if !set["mix"] {
			c.mix = "fresh"
		}
		if !set["corpus"] {
			c.corpusSize = 20_000
		}

		for s := range strings.SplitSeq(scale, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return c, fmt.Errorf("-scale: bad key count %q", s)
			}
			c.scale = append(c.scale, n)
		}
	}
	if c.mix != "realistic" && c.mix != "fresh" {
		return c, fmt.Errorf("-mix %q: want realistic or fresh", c.mix)
	}
	if c.conns < 1 || c.conns > 32 || c.duration <= 0 || c.corpusSize < c.conns {
		return c, errors.New("need 1 ≤ -conns ≤ 32, -duration > 0 and -corpus ≥ -conns")
	}
	// A never-sent content id has 5 bits of round (see runLoad).
	if c.rounds < 1 || c.rounds > 32 {
		return c, errors.New("need 1 ≤ -rounds ≤ 32")
	}
	return c, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parse(args)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.policies)); err != nil {
		return fmt.Errorf("policies dir: %w (run from the module root)", err)
	}
	tmp, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintln(out, "temp dir:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if cfg.keygateBin == "" && (cfg.scale != nil || strings.Contains(cfg.targets, "a")) {
		fmt.Fprintln(out, "building keygate …")
		if cfg.keygateBin, err = buildKeygate(ctx, tmp); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "machine: %d CPUs (GOMAXPROCS %d), %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), loadAvg())
	fmt.Fprintln(out, "note: the load generator shares the machine with the server under test; other processes may be running (see load average).")
	if cfg.scale != nil {
		return runScale(ctx, cfg, tmp, out)
	}
	return runCompare(ctx, cfg, tmp, out)
}

// keygateTarget generates the data for nKeys keys and starts keygate on it:
// on a state file in its own directory, or with store (a PostgreSQL
// connection string of an empty database, which the data dir seeds) on
// that database.
func keygateTarget(ctx context.Context, cfg config, tmp string, nKeys int, store string) (*process, *dataset, error) {
	rng := rand.New(rand.NewPCG(cfg.seed, uint64(nKeys)))
	ds := generate(nKeys, rng)
	dir := filepath.Join(tmp, fmt.Sprintf("keys-%d", nKeys))
	if store != "" {
		dir += "-postgres"
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, nil, err
	}
	if err := ds.writeDataDir(data); err != nil {
		return nil, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	declog := "off"
	if cfg.decisionLog == "file" {
		declog = filepath.Join(dir, "decisions.jsonl")
	}
	t0 := time.Now()
	args := []string{"serve", "--addr", addr, "--policies", cfg.policies, "--data", data}
	if store != "" {
		args = append(args, "--store", store)
	} else {
		args = append(args, "--state", filepath.Join(dir, "state", "state.json"))
	}
	args = append(args, "--decision-log", declog, "--log-level", "warn")
	var debugAddr string
	if cfg.scale != nil { // profiles and a forced collection for the live heap
		if debugAddr, err = freeAddr(); err != nil {
			return nil, nil, err
		}
		args = append(args, "--debug-addr", debugAddr)
	}
	args = append(args, cfg.extraArgs...)
	var profiled chan struct{}
	if debugAddr != "" && nKeys >= startProfileKeys {
		profiled = make(chan struct{})
		go func() {
			defer close(profiled)
			profileStart(debugAddr, filepath.Join(dir, "cpu-start.pb.gz"))
		}()
	}
	p, err := startWithin(ctx, readyTimeout(len(ds.keys)), "keygate", dir, addr, "/health", cfg.keygateBin, args...)
	if err != nil {
		return nil, nil, err
	}
	p.debugAddr = debugAddr
	p.startProfiled = profiled
	fmt.Fprintf(os.Stderr, "keygate ready with %d keys / %d services in %v (store: %s)\n", len(ds.keys), len(ds.services),
		time.Since(t0).Round(time.Millisecond), map[bool]string{false: "state file", true: "PostgreSQL"}[store != ""])
	return p, ds, nil
}

// startProfileKeys is the key count from which the scale check profiles
// the first start: smaller stores are ready before a profile says much.
const startProfileKeys = 100_000

// profileStart saves a CPU profile of keygate's first 20 s (seeding the
// store: --debug-addr listens before the store opens) to path. It waits for
// the debug listener for up to a minute and gives up quietly.
func profileStart(debugAddr, path string) {
	for range 600 {
		if c, err := net.DialTimeout("tcp", debugAddr, 100*time.Millisecond); err == nil {
			c.Close()
			if err := saveURL("http://"+debugAddr+"/debug/pprof/profile?seconds=20", path); err != nil {
				fmt.Fprintf(os.Stderr, "start profile: %v\n", err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// result is one measured target.
type result struct {
	name string
	*loadResult
}

func runCompare(ctx context.Context, cfg config, tmp string, out io.Writer) error {
	want := func(t string) bool { return strings.Contains(cfg.targets, t) }
	rng := rand.New(rand.NewPCG(cfg.seed, 0xbe4c))

	var ka, kb, kc, kp *process
	defer func() { ka.stop(); kb.stop(); kc.stop(); kp.stop() }()

	// The corpus needs the generated keys, so generate them even when (a)
	// is not run; (p) generates the same ones (same seed and count).
	var ds *dataset
	var err error
	if want("a") {
		if ka, ds, err = keygateTarget(ctx, cfg, tmp, cfg.keys, ""); err != nil {
			return err
		}
	} else {
		ds = generate(cfg.keys, rand.New(rand.NewPCG(cfg.seed, uint64(cfg.keys))))
	}
	if want("p") {
		store, destroy, err := throwawayPostgres(ctx, out)
		if err != nil {
			return err
		}
		// keygate first, then PostgreSQL (this runs before the stop of
		// every target deferred above).
		defer func() { kp.stop(); kp = nil; destroy() }()
		if kp, _, err = keygateTarget(ctx, cfg, tmp, cfg.keys, store); err != nil {
			return err
		}
	}
	reqs, err := corpus(ds, cfg.corpusSize, rng, cfg.mix, false)
	if err != nil {
		return err
	}
	if want("b") {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		if kb, err = start(ctx, "baseline", tmp, addr, "/health", self, "-serve-baseline", addr); err != nil {
			return err
		}
	}
	if want("c") {
		bin := cfg.opaBin
		if bin == "" {
			fmt.Fprintln(out, "building opa …")
			if bin, err = buildOPA(ctx, tmp); err != nil {
				return err
			}
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		// --skip-version-check: no call home; loopback only.
		if kc, err = start(ctx, "opa", tmp, addr, "/health", bin, "run", "--server", "--addr", addr,
			"--log-level", "error", "--skip-version-check", cfg.policies); err != nil {
			return err
		}
	}
	if ka != nil && kc != nil {
		if err := crossCheck(out, ka.addr, kc.addr, reqs, cfg.checkN); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "load: %d connections, %v warm-up + %v measured per target in %d interleaved rounds, %d requests cycled (mix %s, unique content ids: %v), %d keys\n",
		cfg.conns, cfg.warmup, cfg.duration, cfg.rounds, len(reqs), cfg.mix, cfg.unique, len(ds.keys))
	// Each target is measured in -rounds slices of -duration/rounds,
	// interleaved (a b c, then c b a, …): a machine whose speed drifts
	// during the run (other tenants of the host, frequency changes) then
	// weighs on every target alike instead of on whichever ran last.
	var order []string
	for t := range strings.SplitSeq(cfg.targets, ",") {
		order = append(order, strings.TrimSpace(t))
	}
	procs := map[string]*process{"a": ka, "b": kb, "c": kc, "p": kp}
	names := map[string]string{"a": "a keygate /v1/decide", "b": "b gin baseline", "c": "c opa run --server", "p": "p keygate --store postgres"}
	decide := func(r *request) (string, []byte) { return "/v1/decide", r.decide }
	picks := map[string]func(r *request) (string, []byte){"a": decide, "b": decide, "p": decide,
		"c": func(r *request) (string, []byte) { return r.opaPath, r.opaBody }}
	slice := cfg.duration / time.Duration(cfg.rounds)
	merged := map[string]*loadResult{}
	var perRound []map[string]*loadResult
	var hits0, misses0, hits, misses [2]float64 // for a and p
	for round := range cfg.rounds {
		ts := slices.Clone(order)
		if round%2 == 1 {
			slices.Reverse(ts)
		}
		warm := cfg.warmup
		if round > 0 {
			// The servers are warm: a short unmeasured phase only lets
			// the new connections settle.
			warm = min(cfg.warmup, time.Second)
		}
		this := map[string]*loadResult{}
		for _, t := range ts {
			p := procs[t]
			if p == nil {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "round %d/%d: measuring %s (load average %s) …\n", round+1, cfg.rounds, names[t], loadAvg())
			ki := -1
			if t == "a" {
				ki = 0
			} else if t == "p" {
				ki = 1
			}
			if ki >= 0 {
				h, m := cacheCounters(p)
				if round == 0 {
					hits0[ki], misses0[ki] = h, m
				}
			}
			res, err := runLoad(p.addr, wireRequests(p.addr, reqs, picks[t]), cfg.unique, round, cfg.conns, warm, slice, p.cpuTime)
			if err != nil {
				return fmt.Errorf("%s: %w", names[t], err)
			}
			if ki >= 0 {
				hits[ki], misses[ki] = cacheCounters(p)
			}
			this[t] = res
			merged[t] = merged[t].add(res)
		}
		perRound = append(perRound, this)
	}
	for ki, t := range []string{"a", "p"} {
		if procs[t] == nil {
			continue
		}
		if total := hits[ki] + misses[ki] - hits0[ki] - misses0[ki]; total > 0 {
			fmt.Fprintf(out, "%s decision cache: %.1f%% hits (%.0f of %.0f, warm-ups included)\n",
				names[t], 100*(hits[ki]-hits0[ki])/total, hits[ki]-hits0[ki], total)
		}
	}
	var results []result
	for _, t := range order {
		if r := merged[t]; r != nil {
			results = append(results, result{names[t], r})
		}
	}
	if cfg.rounds > 1 {
		printRounds(out, perRound)
	}
	printResults(out, results)
	printRatios(out, results)
	if ka != nil {
		fmt.Fprintf(out, "keygate RSS after the run: %.1f MiB\n", float64(ka.rssBytes())/(1<<20))
	}
	if kp != nil {
		fmt.Fprintf(out, "keygate --store postgres RSS after the run: %.1f MiB\n", float64(kp.rssBytes())/(1<<20))
	}
	return nil
}

// crossCheck asks keygate and OPA the first n requests and compares allow
// and status: the proof that (c) evaluates the same input documents.
func crossCheck(out io.Writer, keygate, opa string, reqs []request, n int) error {
	n = min(n, len(reqs))
	mismatches := 0
	kinds := map[string]int{}
	for i := range n {
		r := &reqs[i]
		ka, ks, err := decisionOf("http://"+keygate+"/v1/decide", r.decide)
		if err != nil {
			return fmt.Errorf("check keygate: %w", err)
		}
		oa, os_, err := decisionOf("http://"+opa+r.opaPath, r.opaBody)
		if err != nil {
			return fmt.Errorf("check opa: %w", err)
		}
		kinds[fmt.Sprintf("%s→%d", r.kind, ks)]++
		if ka != oa || ks != os_ {
			mismatches++
			if mismatches <= 5 {
				fmt.Fprintf(out, "MISMATCH %s: keygate allow=%v status=%d, opa allow=%v status=%d\n  decide %s\n  opa    %s\n",
					r.kind, ka, ks, oa, os_, r.decide, r.opaBody)
			}
		}
	}
	fmt.Fprintf(out, "cross-check: %d requests, keygate and opa agree on %d (allow and status)\n", n, n-mismatches)
	fmt.Fprintf(out, "mix of the checked requests (kind→status): %v\n", kinds)
	if mismatches > 0 {
		return fmt.Errorf("keygate and opa disagree on %d of %d decisions: target (c) is not evaluating keygate's inputs", mismatches, n)
	}
	return nil
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }

func printResults(out io.Writer, results []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\tserver CPU µs/req\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t\n", r.name, r.rps(),
			ms(r.quantile(.5)), ms(r.quantile(.9)), ms(r.quantile(.99)), ms(r.quantile(.999)), ms(r.quantile(1)),
			r.errors, float64(r.cpuPerRequest())/1e3)
	}
	_ = tw.Flush()
}

// printRounds prints each round's a/b (and a/c, p/a) so that the spread
// behind the merged figures is visible.
func printRounds(out io.Writer, rounds []map[string]*loadResult) {
	for i, r := range rounds {
		fmt.Fprintf(out, "round %d:", i+1)
		if a, b := r["a"], r["b"]; a != nil && b != nil {
			fmt.Fprintf(out, "  a/b %.3f", a.rps()/b.rps())
		}
		if a, c := r["a"], r["c"]; a != nil && c != nil {
			fmt.Fprintf(out, "  a/c %.2f", a.rps()/c.rps())
		}
		if a, p := r["a"], r["p"]; a != nil && p != nil {
			fmt.Fprintf(out, "  p/a %.3f", p.rps()/a.rps())
		}
		fmt.Fprintln(out)
	}
}

func printRatios(out io.Writer, results []result) {
	by := map[byte]*loadResult{}
	for _, r := range results {
		by[r.name[0]] = r.loadResult
	}
	a, b, c, p := by['a'], by['b'], by['c'], by['p']
	if a != nil && b != nil {
		fmt.Fprintf(out, "a/b req/s = %.3f   (target ≥ 0.75)\n", a.rps()/b.rps())
		fmt.Fprintf(out, "p99 a/b   = %.2f    (target ≤ 1.5)\n", float64(a.quantile(.99))/float64(b.quantile(.99)))
	}
	if a != nil && c != nil {
		fmt.Fprintf(out, "a/c req/s = %.3f   (target ≥ 2.5)\n", a.rps()/c.rps())
	}
	if a != nil && p != nil {
		fmt.Fprintf(out, "p/a req/s = %.3f, p99 p/a = %.2f, server CPU per request p/a = %.2f   (PostgreSQL store vs state file; the decision path never touches the database)\n",
			p.rps()/a.rps(), float64(p.quantile(.99))/float64(a.quantile(.99)), float64(p.cpuPerRequest())/float64(a.cpuPerRequest()))
	}
}

// runScale measures keygate alone at each key count, with the same request
// mix drawn from that count's keys (by default half list GETs, half GETs of
// never-seen content ids, over 20,000 distinct keys where there are that
// many), and reports start-up and restart times, memory per key and
// decisions/s against the first (smallest) count.
func runScale(ctx context.Context, cfg config, tmp string, out io.Writer) error {
	type row struct {
		keys              int
		p                 *process
		reqs              []request
		res               *loadResult
		firstStart        time.Duration // seeding from keys.json, to ready
		restart           time.Duration // from its own state, to ready
		rssIdle, rssRun   int64
		liveIdle          int64 // heap_alloc after a forced collection, idle after seeding
		liveRestart       int64 // the same after the restart
		rssRestart        int64
		heapLive          int64 // heap_alloc after a forced collection, after the load
		hits, misses      float64
		evictions, cached float64
	}
	rows := make([]*row, 0, len(cfg.scale))
	defer func() {
		for _, r := range rows {
			r.p.stop()
		}
	}()
	// First starts, one count after the other; every keygate then stays
	// up for the load.
	for _, n := range cfg.scale {
		p, ds, err := keygateTarget(ctx, cfg, tmp, n, "")
		if err != nil {
			return err
		}
		r := &row{keys: len(ds.keys), p: p, firstStart: p.startup}
		rows = append(rows, r)
		if r.liveIdle, err = liveHeap(p, filepath.Join(p.dir, "heap-idle.pb.gz")); err != nil {
			return err
		}
		r.rssIdle = p.rssBytes()
		if r.reqs, err = corpus(ds, cfg.corpusSize, rand.New(rand.NewPCG(cfg.seed, 0xbe4c)), cfg.mix, true); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "keygate with %d keys: first start %v\n", r.keys, r.firstStart.Round(time.Millisecond))
	}
	// The load, in -rounds interleaved rounds across the counts (100k 1M,
	// then 1M 100k, …), so that a drift of the machine's speed weighs on
	// every count alike: the decisions/s ratio compares keygates measured
	// side by side, not minutes apart. The warm-up before the first round
	// fills each keygate's decision cache with the corpus's questions.
	// The CPU profile of a first start must end before the load's can
	// begin (one CPU profile at a time), and must not cover the load.
	for _, r := range rows {
		if r.p.startProfiled != nil {
			<-r.p.startProfiled
		}
	}
	slice := cfg.duration / time.Duration(cfg.rounds)
	h0 := make([][2]float64, len(rows))
	for i, r := range rows {
		h0[i][0], h0[i][1] = cacheCounters(r.p)
	}
	for round := range cfg.rounds {
		order := make([]int, len(rows))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		warm := cfg.warmup
		if round > 0 {
			warm = min(cfg.warmup, time.Second)
		}
		for _, i := range order {
			r := rows[i]
			if err := ctx.Err(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "round %d/%d: measuring keygate with %d keys (load average %s) …\n", round+1, cfg.rounds, r.keys, loadAvg())
			// A CPU profile of the first measured window (less a second),
			// beside the heap profiles: the figures' story.
			cpuDone := make(chan error, 1)
			if round == 0 && slice >= 2*time.Second {
				go func() {
					time.Sleep(warm)
					secs := max(int((slice-time.Second)/time.Second), 1)
					cpuDone <- saveURL(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.p.debugAddr, secs), filepath.Join(r.p.dir, "cpu-load.pb.gz"))
				}()
			} else {
				cpuDone <- nil
			}
			res, err := runLoad(r.p.addr, wireRequests(r.p.addr, r.reqs, func(q *request) (string, []byte) { return "/v1/decide", q.decide }), cfg.unique, round,
				cfg.conns, warm, slice, r.p.cpuTime)
			if cerr := <-cpuDone; cerr != nil {
				fmt.Fprintf(os.Stderr, "cpu profile: %v\n", cerr)
			}
			if err != nil {
				return fmt.Errorf("load with %d keys: %w", r.keys, err)
			}
			r.res = r.res.add(res)
		}
	}
	for i, r := range rows {
		h1, m1 := cacheCounters(r.p)
		r.hits, r.misses = h1-h0[i][0], m1-h0[i][1]
		r.evictions, r.cached = metricValue(r.p, "keygate_decision_cache_evictions_total"), metricValue(r.p, "keygate_decision_cache_entries")
		r.rssRun = r.p.rssBytes()
		// /metrics is not sampled during the load: a scrape is extra
		// work the 100-key keygate would not do as much of.
		var err error
		r.heapLive, err = liveHeap(r.p, filepath.Join(r.p.dir, "heap-load.pb.gz"))
		if err != nil {
			return err
		}
	}
	// Restart each from the state it wrote (the data dir still holds
	// keys.json; a store with state does not seed from it), one at a time.
	for _, r := range rows {
		first := r.p
		first.stop()
		r.p = nil // stopped: the deferred stop must not signal its pid again
		p2, err := first.restart(ctx)
		if err != nil {
			return fmt.Errorf("restart with %d keys: %w", r.keys, err)
		}
		r.p = p2
		r.restart = p2.startup
		r.liveRestart, err = liveHeap(p2, filepath.Join(first.dir, "heap-restart.pb.gz"))
		r.rssRestart = p2.rssBytes()
		p2.stop()
		r.p = nil
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "keygate with %d keys: restart %v; profiles in %s\n", r.keys, r.restart.Round(time.Millisecond), first.dir)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "keys\tfirst start s\trestart s\treq/s\tvs first\tp50 ms\tp99 ms\terrors\tserver CPU µs/req\tcache hits\tevictions\t"+
		"RSS idle MiB\tlive heap idle MiB\tRSS after load MiB\tlive heap after load MiB\tRSS restarted MiB\tlive heap restarted MiB\t")
	for _, r := range rows {
		hitRate := 0.0
		if r.hits+r.misses > 0 {
			hitRate = 100 * r.hits / (r.hits + r.misses)
		}
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.0f\t%.2f\t%s\t%s\t%d\t%.1f\t%.1f%%\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.keys,
			r.firstStart.Seconds(), r.restart.Seconds(), r.res.rps(), r.res.rps()/rows[0].res.rps(), ms(r.res.quantile(.5)),
			ms(r.res.quantile(.99)), r.res.errors, float64(r.res.cpuPerRequest())/1e3, hitRate, r.evictions,
			mib(r.rssIdle), mib(r.liveIdle), mib(r.rssRun), mib(r.heapLive), mib(r.rssRestart), mib(r.liveRestart))
	}
	_ = tw.Flush()
	for _, hi := range rows[1:] {
		lo := rows[0]
		dk := float64(hi.keys - lo.keys)
		perKey := func(a, b int64) float64 { return float64(a-b) / dk / 1024 }
		fmt.Fprintf(out, "memory per key (%d vs %d keys): live heap %.2f KiB idle, %.2f KiB restarted, %.2f KiB after load; RSS %.2f KiB idle, %.2f KiB restarted, %.2f KiB after load\n",
			hi.keys, lo.keys, perKey(hi.liveIdle, lo.liveIdle), perKey(hi.liveRestart, lo.liveRestart), perKey(hi.heapLive, lo.heapLive),
			perKey(hi.rssIdle, lo.rssIdle), perKey(hi.rssRestart, lo.rssRestart), perKey(hi.rssRun, lo.rssRun))
		fmt.Fprintf(out, "decisions/s %d keys / %d keys = %.3f (target ≥ 0.8); p99 ratio %.2f; server CPU per request ratio %.2f\n", hi.keys, lo.keys,
			hi.res.rps()/lo.res.rps(), float64(hi.res.quantile(.99))/float64(lo.res.quantile(.99)),
			float64(hi.res.cpuPerRequest())/float64(lo.res.cpuPerRequest()))
	}
	return nil
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

// cacheCounters reads keygate's decision cache hit and miss counters from
// /metrics (zeros for a target without them).
func cacheCounters(p *process) (hits, misses float64) {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "keygate_decision_cache_hits_total":
			hits = v
		case "keygate_decision_cache_misses_total":
			misses = v
		}
	}
	return hits, misses
}

// metricValue reads one unlabelled series from keygate's /metrics (0 when
// absent).
func metricValue(p *process, name string) float64 {
	return float64(goMetric(p.addr, name))
}
