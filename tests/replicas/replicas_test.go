package replicas

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/tests/gateway/origin"
	"github.com/keygate/keygate/tests/gateway/stack"
)

// TestRevocationReachesEveryReplica: a rotation or a delete on replica A is
// refused by B and C within 500 ms at the 99th percentile over 100 rounds
// (each round measures both), and a rotated key's new secret works on B.
func TestRevocationReachesEveryReplica(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 3)
	a, others := rs[0], rs[1:]
	const service, rounds = "enterprise-demo", 100
	var revoke, create []time.Duration
	for range rounds {
		k := a.createKey(t, service)
		start := time.Now()
		var mu sync.Mutex
		var slowest time.Duration
		parallel(others, func(r *replica) {
			d := r.waitDecision(t, service, k.Secret, true, 5*time.Second)
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
		})
		create = append(create, slowest)

		// Rotate: the old secret stops working everywhere, the new works.
		start = time.Now()
		rot := a.rotateKey(t, service, k.ID)
		slowest = 0
		parallel(others, func(r *replica) {
			r.waitDecision(t, service, k.Secret, false, 5*time.Second)
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		})
		revoke = append(revoke, slowest)
		if d := others[0].mustDecide(t, service, rot.Secret); !d.Allow || d.KeyID != k.ID {
			t.Fatalf("replica B: the rotated secret: %+v, want allow for %s", d, k.ID)
		}

		// Delete: the new secret stops working everywhere.
		start = time.Now()
		a.deleteKey(t, service, k.ID)
		slowest = 0
		parallel(others, func(r *replica) {
			r.waitDecision(t, service, rot.Secret, false, 5*time.Second)
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
		})
		revoke = append(revoke, slowest)
	}
	p50, p99 := percentile(revoke, 0.50), percentile(revoke, 0.99)
	t.Logf("revocation (rotate and delete on A until B and C refuse, from sending the write; %d samples): p50 %s, p99 %s, max %s",
		len(revoke), p50, p99, percentile(revoke, 1))
	t.Logf("create on A until B and C allow (after A answered; %d samples): p50 %s, p99 %s", len(create), percentile(create, 0.5), percentile(create, 0.99))
	if p99 >= 500*time.Millisecond {
		t.Errorf("revocation p99 %s, want under 500ms", p99)
	}
}

// TestConcurrentCreatesHoldLimitsAcrossReplicas: for every plan, 50
// concurrent creates spread over 3 replicas create exactly the plan's
// limit; the stored key count equals the rows; every index ends identical.
// Also with the database's default isolation set to REPEATABLE READ.
func TestConcurrentCreatesHoldLimitsAcrossReplicas(t *testing.T) {
	for _, tc := range []struct {
		name, isolation string
	}{
		{"read committed default", ""},
		{"repeatable read default", "repeatable read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			if tc.isolation != "" {
				if err := c.pg.Exec(t.Context(), "postgres", "ALTER DATABASE "+c.dbName+" SET default_transaction_isolation = '"+tc.isolation+"'"); err != nil {
					t.Fatal(err)
				}
			}
			rs := c.start(t, 3)
			plans := []struct {
				service string
				limit   int
			}{{"hobby-demo", 1}, {"team-demo", 3}, {"business-demo", 10}, {"enterprise-demo", 20}}
			for _, p := range plans {
				var before int
				c.query(t, `SELECT count(*) FROM keys WHERE service = $1`, []any{p.service}, &before)
				var ok, conflict, other atomic.Int32
				var wg sync.WaitGroup
				for i := range 50 {
					wg.Go(func() {
						r := rs[i%3]
						rep, err := call(t.Context(), http.MethodPost, r.URL+"/v1/services/"+p.service+"/keys", adminToken(p.service), readSpec)
						switch {
						case err != nil:
							t.Errorf("create: %v", err)
						case rep.status == http.StatusCreated:
							ok.Add(1)
						case rep.status == http.StatusConflict:
							conflict.Add(1)
						default:
							other.Add(1)
							t.Errorf("create on %s via %s: %s", p.service, r.name, rep)
						}
					})
				}
				wg.Wait()
				if want := int32(p.limit - before); ok.Load() != want || conflict.Load() != 50-want {
					t.Errorf("%s: %d created, %d refused 409, %d other; want %d and %d", p.service, ok.Load(), conflict.Load(), other.Load(), want, 50-want)
				}
				var count, rows int
				c.query(t, `SELECT key_count, (SELECT count(*) FROM keys k WHERE k.service = s.id) FROM services s WHERE id = $1`, []any{p.service}, &count, &rows)
				if count != rows || rows != p.limit {
					t.Errorf("%s: key_count %d, rows %d, want both %d", p.service, count, rows, p.limit)
				}
			}
			took := converge(t, 5*time.Second, rs, "hobby-demo", "team-demo", "business-demo", "enterprise-demo")
			t.Logf("indexes identical %s after the last create answered", took)
		})
	}
}

// TestWarmCacheDeniesAfterRevoke: B has the decision for a key cached; a
// delete on A makes B deny at once (the change moves B's generation).
func TestWarmCacheDeniesAfterRevoke(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	k := a.createKey(t, "team-demo")
	b.waitDecision(t, "team-demo", k.Secret, true, 5*time.Second)
	for range 50 { // warm: the same question, answered from B's cache
		if d := b.mustDecide(t, "team-demo", k.Secret); !d.Allow {
			t.Fatalf("warm-up: %+v", d)
		}
	}
	a.deleteKey(t, "team-demo", k.ID)
	took := b.waitDecision(t, "team-demo", k.Secret, false, 2*time.Second)
	t.Logf("B denied %s after A's delete answered", took)
	if took > 500*time.Millisecond {
		t.Errorf("B kept allowing for %s after the delete", took)
	}
	// B's /health and /metrics show the store it follows.
	code, h, err := b.health(t.Context())
	if err != nil || code != http.StatusOK || h.Store.Kind != "postgres" || !h.Store.Ready || h.Store.Applied != h.Store.Head || h.Store.Applied < 3 {
		t.Errorf("B /health %d %+v %v: want 200, postgres, ready, applied == head >= 3", code, h, err)
	}
	m := string(mustCall(t, http.MethodGet, b.URL+"/metrics", "", nil).body)
	for _, want := range []string{`keygate_store_ready{kind="postgres"} 1`, "keygate_store_applied_revision 3", "keygate_store_head_revision 3", "keygate_store_staleness_seconds "} {
		if !strings.Contains(m, want) {
			t.Errorf("B /metrics lacks %q", want)
		}
	}
}

// TestListenerKilledCatchesUp: the LISTEN backends are terminated, then 10
// writes on A: B applies all of them within the reconnect backoff plus one
// heartbeat.
func TestListenerKilledCatchesUp(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	var killed int
	c.query(t, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'`, nil, &killed)
	if killed != 2 {
		t.Fatalf("terminated %d LISTEN backends, want 2", killed)
	}
	var last created
	for range 10 {
		last = a.createKey(t, "enterprise-demo")
	}
	start := time.Now()
	b.waitDecision(t, "enterprise-demo", last.Secret, true, 5*time.Second+time.Second)
	converge(t, 6*time.Second, rs, "enterprise-demo")
	took := time.Since(start)
	t.Logf("B caught up %s after the 10th write (reconnect backoff starts at 100ms, heartbeat 1s)", took)
	if took > backoffBound+time.Second {
		t.Errorf("caught up after %s, want within %s", took, backoffBound+time.Second)
	}
	// Both listeners are back.
	c.waitListeners(t, func(n int) bool { return n == 2 })
}

// backoffBound is the first reconnect delay's upper bound (100 ms) — the
// heartbeat alone (1 s) catches up even before the listener is back.
const backoffBound = 100 * time.Millisecond

// TestReplicaStartedWhileDatabaseDown: a replica whose database is not
// reachable never reports ready and never allows a request, even for the
// seed key; once the database is up it loads and serves.
func TestReplicaStartedWhileDatabaseDown(t *testing.T) {
	c := newCluster(t)
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := c.replicaConfig(t, "A")
	k, err := stack.LaunchKeygate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Stop() })
	r := &replica{Keygate: k, name: "A", cfg: cfg}
	deadline := time.Now().Add(3 * time.Second)
	seen, sawError := 0, false
	for time.Now().Before(deadline) {
		code, h, err := r.health(t.Context())
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		seen++
		if code != http.StatusServiceUnavailable || h.Store.Ready {
			t.Fatalf("health %d %+v while the database is down", code, h)
		}
		// The unauthenticated /health says what kind of failure, never the
		// driver's text (it names the database's host, user and database).
		if h.Store.LastError != "" {
			sawError = true
		}
		if h.Store.LastError != "" && (strings.Contains(h.Store.LastError, c.dbName) ||
			strings.Contains(h.Store.LastError, "127.0.0.1") || strings.Contains(h.Store.LastError, "user=")) {
			t.Fatalf("/health shows the database's details: %q", h.Store.LastError)
		}
		d, err := r.decide(t.Context(), "team-demo", "team-demo-read-key")
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow || d.Status != http.StatusServiceUnavailable || d.Code != "store_stale" {
			t.Fatalf("decision while the database is down: %+v, want 503 store_stale", d)
		}
		rep := mustCall(t, http.MethodGet, r.URL+"/v1/services/team-demo/keys", adminToken("team-demo"), nil)
		if rep.status != http.StatusServiceUnavailable {
			t.Fatalf("list keys while the database is down: %s, want 503", rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if seen == 0 {
		t.Fatal("the replica never answered /health")
	}
	if !sawError {
		t.Fatal("/health never named the store's error while the database was down")
	}
	if err := c.pg.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		code, _, err := r.health(t.Context())
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("not ready 15s after the database came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready %s after the database came up", time.Since(start))
	if d := r.mustDecide(t, "team-demo", "team-demo-read-key"); !d.Allow {
		t.Fatalf("seed key after load: %+v", d)
	}
}

// TestPostgresRestartUnderLoad: PostgreSQL stopped and started while the
// replicas serve decisions: no decision fails while staleness is under the
// bound, admin writes answer 503 problem+json while it is down, and
// everything converges after.
func TestPostgresRestartUnderLoad(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2, "--max-staleness", "30s", "--ready-max-staleness", "20s")
	a, b := rs[0], rs[1]
	k := a.createKey(t, "enterprise-demo")
	b.waitDecision(t, "enterprise-demo", k.Secret, true, 5*time.Second)

	ctx, cancel := context.WithCancel(t.Context())
	var failed, total atomic.Int64
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := r.decide(ctx, "enterprise-demo", k.Secret)
				if ctx.Err() != nil {
					return
				}
				total.Add(1)
				if err != nil || !d.Allow {
					failed.Add(1)
					t.Errorf("replica %s: decision during the outage: %+v %v", r.name, d, err)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	rep := mustCall(t, http.MethodPost, a.URL+"/v1/services/enterprise-demo/keys", adminToken("enterprise-demo"), readSpec)
	if rep.status != http.StatusServiceUnavailable || !strings.Contains(string(rep.body), `"code":"store_unavailable"`) {
		t.Errorf("create while the database is down: %s, want 503 store_unavailable", rep)
	}
	rep = mustCall(t, http.MethodDelete, a.URL+"/v1/services/enterprise-demo/keys/"+k.ID, adminToken("enterprise-demo"), nil)
	if rep.status != http.StatusServiceUnavailable {
		t.Errorf("delete while the database is down: %s, want 503", rep)
	}
	time.Sleep(3 * time.Second)
	if err := c.pg.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("%d decisions during the outage, %d failed", total.Load(), failed.Load())

	// The key survived (the delete was refused), writes work again and
	// reach the other replica.
	k2 := a.createKey(t, "enterprise-demo")
	took := b.waitDecision(t, "enterprise-demo", k2.Secret, true, 5*time.Second)
	converge(t, 5*time.Second, rs, "enterprise-demo")
	t.Logf("after the restart a create reached B in %s", took)
}

// TestStaleIndexFailsClosed: with the database gone, a replica stays ready
// and allowing until --ready-max-staleness / --max-staleness pass; then
// /health answers 503 and decisions 503 store_stale (never an allow, cached
// or not); when the database is back both recover.
func TestStaleIndexFailsClosed(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 1, "--ready-max-staleness", "1s", "--max-staleness", "2s")
	r := rs[0]
	k := r.createKey(t, "team-demo")
	if d := r.mustDecide(t, "team-demo", k.Secret); !d.Allow {
		t.Fatalf("before the outage: %+v", d)
	}
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var notReady, stale time.Duration
	for notReady == 0 || stale == 0 {
		if time.Since(stopped) > 10*time.Second {
			t.Fatalf("after 10s: not ready after %s, stale after %s", notReady, stale)
		}
		code, _, err := r.health(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusServiceUnavailable && notReady == 0 {
			notReady = time.Since(stopped)
		}
		d := r.mustDecide(t, "team-demo", k.Secret)
		switch {
		case d.Allow && stale != 0:
			t.Fatalf("allowed again after failing closed: %+v", d)
		case !d.Allow && (d.Status != http.StatusServiceUnavailable || d.Code != "store_stale"):
			t.Fatalf("decision during the outage: %+v, want allow or 503 store_stale", d)
		case !d.Allow && stale == 0:
			stale = time.Since(stopped)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("database stopped: not ready after %s (bound 1s), decisions 503 store_stale after %s (bound 2s)", notReady, stale)
	// Staleness counts from the last confirmation, at most a heartbeat
	// before the stop: the bounds are upper bounds from the stop (plus this
	// loop's polling).
	if notReady > 1500*time.Millisecond || stale > 2500*time.Millisecond {
		t.Errorf("failed closed late: not ready after %s (bound 1s), stale after %s (bound 2s)", notReady, stale)
	}
	if err := c.pg.Start(); err != nil {
		t.Fatal(err)
	}
	took := r.waitDecision(t, "team-demo", k.Secret, true, 10*time.Second)
	t.Logf("allowing again %s after the database came back", took)
	if code, h, err := r.health(t.Context()); err != nil || code != http.StatusOK {
		t.Fatalf("health after recovery: %d %+v %v", code, h, err)
	}
}

// TestPrunedChangeLogResyncs: replica B is frozen (SIGSTOP) while A deletes
// a key, creates others and, with --store-retention 1s, prunes the change
// log; thawed, B cannot replay the pruned revisions, resyncs, and its index
// equals a fresh replica's; the deleted key is refused.
func TestPrunedChangeLogResyncs(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, 1, "--store-retention", "1s")[0]
	b := startReplica(t, "B", c.replicaConfig(t, "B"))
	old := a.createKey(t, "enterprise-demo")
	b.waitDecision(t, "enterprise-demo", old.Secret, true, 5*time.Second)
	if err := syscall.Kill(b.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(b.PID(), syscall.SIGCONT)
		}
	}
	defer thaw()
	a.deleteKey(t, "enterprise-demo", old.ID)
	for range 5 {
		a.createKey(t, "enterprise-demo")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rows int
		c.query(t, `SELECT count(*) FROM changes`, nil, &rows)
		if rows == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d change rows left 10s after the writes (retention 1s)", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	thaw()
	b.waitDecision(t, "enterprise-demo", old.Secret, false, 5*time.Second)
	fresh := startReplica(t, "C", c.replicaConfig(t, "C"))
	converge(t, 5*time.Second, []*replica{fresh, a, b}, "enterprise-demo", "team-demo")
	if _, h, err := b.health(t.Context()); err != nil || h.Store.Resyncs == 0 {
		t.Fatalf("B health %+v %v: want a resync", h, err)
	}
}

// TestPartiallyPrunedChangeLogResyncs: replica B is frozen while A deletes
// a key K and creates others; the pruner then removes K's change row (and
// the rows before it) while the later rows remain. Thawed, B finds the log
// continuing past a gap: applying the remaining rows over it would keep K
// authenticating, so B must resync and refuse K.
func TestPartiallyPrunedChangeLogResyncs(t *testing.T) {
	c := newCluster(t)
	// Retention 30s: A's pruner runs every 3s and removes only the rows
	// this test ages, never the later ones.
	a := c.start(t, 1, "--store-retention", "30s")[0]
	b := startReplica(t, "B", c.replicaConfig(t, "B"))
	k := a.createKey(t, "enterprise-demo")
	b.waitDecision(t, "enterprise-demo", k.Secret, true, 5*time.Second)
	if err := syscall.Kill(b.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(b.PID(), syscall.SIGCONT)
		}
	}
	defer thaw()
	a.deleteKey(t, "enterprise-demo", k.ID)
	var deleted int64
	c.query(t, `SELECT max(revision) FROM changes WHERE op = 'delete' AND key_id = $1`, []any{k.ID}, &deleted)
	for range 3 {
		a.createKey(t, "enterprise-demo")
	}
	// Age K's deletion and everything before it past the retention; the
	// pruner deletes them, the later rows stay.
	c.exec(t, fmt.Sprintf(`UPDATE changes SET at = now() - interval '1 hour' WHERE revision <= %d`, deleted))
	deadline := time.Now().Add(15 * time.Second)
	for {
		var gone bool
		var later int
		c.query(t, `SELECT NOT EXISTS (SELECT 1 FROM changes WHERE revision <= $1), (SELECT count(*) FROM changes WHERE revision > $1)`,
			[]any{deleted}, &gone, &later)
		if later == 0 {
			t.Fatalf("the rows after K's deletion were pruned too: the test would not show a partial prune")
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("K's change row (revision %d) not pruned 15s after it was aged", deleted)
		}
		time.Sleep(100 * time.Millisecond)
	}
	thaw()
	b.waitDecision(t, "enterprise-demo", k.Secret, false, 5*time.Second)
	if _, h, err := b.health(t.Context()); err != nil || h.Store.Resyncs == 0 {
		t.Fatalf("B health %+v %v: want a resync over the gap", h, err)
	}
	fresh := startReplica(t, "C", c.replicaConfig(t, "C"))
	converge(t, 5*time.Second, []*replica{fresh, a, b}, "enterprise-demo")
}

// TestRestoredOlderBackupResyncs: the database is replaced by a backup taken
// before a key was created (its head is behind what the replicas applied):
// they resync, and the key that existed only in the lost revisions stops
// authenticating.
func TestRestoredOlderBackupResyncs(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	kept := a.createKey(t, "enterprise-demo")
	for _, tbl := range []string{"services", "members", "keys", "ip_restrictions", "head", "changes"} {
		c.exec(t, "CREATE TABLE bak_"+tbl+" AS TABLE "+tbl)
	}
	lost := a.createKey(t, "enterprise-demo")
	b.waitDecision(t, "enterprise-demo", lost.Secret, true, 5*time.Second)
	c.exec(t, `BEGIN;
		TRUNCATE changes, keys, members, ip_restrictions, services, head;
		INSERT INTO services SELECT * FROM bak_services;
		INSERT INTO members SELECT * FROM bak_members;
		INSERT INTO keys SELECT * FROM bak_keys;
		INSERT INTO ip_restrictions SELECT * FROM bak_ip_restrictions;
		INSERT INTO head SELECT * FROM bak_head;
		INSERT INTO changes SELECT * FROM bak_changes;
		COMMIT`)
	for _, r := range rs {
		took := r.waitDecision(t, "enterprise-demo", lost.Secret, false, 5*time.Second)
		t.Logf("replica %s refused the lost key %s after the restore", r.name, took)
		if d := r.mustDecide(t, "enterprise-demo", kept.Secret); !d.Allow {
			t.Fatalf("replica %s: the key in the backup: %+v", r.name, d)
		}
	}
	converge(t, 5*time.Second, rs, "enterprise-demo")
}

// TestKillNineDuringWrites: replica A is killed with SIGKILL while creates
// stream through it; every create it acknowledged is in PostgreSQL and on
// B, and A restarted converges.
func TestKillNineDuringWrites(t *testing.T) {
	c := newCluster(t)
	rs := c.start(t, 2)
	a, b := rs[0], rs[1]
	var mu sync.Mutex
	var acked []created
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				rep, err := call(ctx, http.MethodPost, a.URL+"/v1/services/enterprise-demo/keys", adminToken("enterprise-demo"), readSpec)
				if err != nil || rep.status != http.StatusCreated {
					continue
				}
				k := decodeCreated(t, rep.body)
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
				// Delete half again, so that the limit (20) never stops the stream.
				_, _ = call(ctx, http.MethodDelete, a.URL+"/v1/services/enterprise-demo/keys/"+k.ID, adminToken("enterprise-demo"), nil)
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Exited()
	cancel()
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n == 0 {
		t.Fatal("no create was acknowledged before the kill")
	}
	var inDB int
	ids := make([]string, 0, n)
	for _, k := range acked {
		ids = append(ids, k.ID)
	}
	// Every acknowledged create has its put change row (a delete after it
	// may have removed the key itself).
	c.query(t, `SELECT count(DISTINCT key_id) FROM changes WHERE op = 'put' AND key_id = ANY($1)`, []any{ids}, &inDB)
	if inDB != n {
		t.Fatalf("%d of %d acknowledged creates are in PostgreSQL", inDB, n)
	}
	t.Logf("%d creates acknowledged before SIGKILL, all in PostgreSQL", n)
	a.restart(t)
	converge(t, 5*time.Second, []*replica{a, b}, "enterprise-demo")
}

// TestGatewayPassesStoreStale: nginx in front of a replica whose database is
// gone answers 503 once decisions fail closed with store_stale, never the
// origin's content.
func TestGatewayPassesStoreStale(t *testing.T) {
	nginxBin := stack.RequireNginx(t)
	c := newCluster(t)
	r := c.start(t, 1, "--max-staleness", "1s", "--ready-max-staleness", "1s")[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	osrv := &http.Server{Handler: origin.New(slog.New(slog.DiscardHandler)), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = osrv.Serve(ln) }()
	t.Cleanup(func() { _ = osrv.Close() })
	ngx, err := stack.StartNginx(t.Context(), stack.NginxConfig{
		Binary: nginxBin, Template: filepath.Join(build.Root, "tests", "gateway", "nginx.conf.tmpl"),
		Keygate: r.Addr, Origin: ln.Addr().String(), Dir: filepath.Join(t.TempDir(), "nginx"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ngx.Stop() })
	get := func() int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ngx.URL+"/api/v1/blogs", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "team-demo.microcms.io"
		req.Header.Set("X-MICROCMS-API-KEY", "team-demo-read-key")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != http.StatusOK {
		t.Fatalf("through nginx before the outage: %d, want 200", got)
	}
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		got := get()
		if got == http.StatusServiceUnavailable {
			break
		}
		if got != http.StatusOK || time.Since(start) > 5*time.Second {
			t.Fatalf("through nginx %s into the outage: %d, want 200 then 503", time.Since(start), got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("nginx answers 503 %s after the database stopped (--max-staleness 1s)", time.Since(start))
}
