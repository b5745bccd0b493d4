package postgres

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/pgtest"
)

// shortWaitDriver opens the backend waiting only wait for the first load.
type shortWaitDriver struct {
	url  string
	wait time.Duration
}

func (d shortWaitDriver) Open(ctx context.Context, env keystore.Env) (keystore.Backend, error) {
	return open(ctx, d.url, Options{Heartbeat: 100 * time.Millisecond}, env, d.wait)
}

// records keeps the messages logged.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// A first load slower than Open's wait (here: the keys table locked by
// another session) is not cut and started over: Open returns a store that
// is not ready, and the same load finishes in the background.
func TestSlowFirstLoadFinishesInTheBackground(t *testing.T) {
	c := pgtest.Start(t)
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(t.Context(), MigrateOptions{URL: url, DataDir: "../../../data", Authorizer: &keystoretest.Authorizer{}}); err != nil {
		t.Fatal(err)
	}
	lock, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(context.WithoutCancel(t.Context()))
	tx, err := lock.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `LOCK TABLE keys IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	logs := &records{}
	start := time.Now()
	s, err := keystore.New(t.Context(), shortWaitDriver{url: url, wait: 500 * time.Millisecond},
		keystore.Options{DataDir: "../../../data", Authorizer: &keystoretest.Authorizer{}, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Open took %s while the load was blocked; want about its wait", d)
	}
	if s.Status().Ready {
		t.Fatal("ready while the keys table is locked")
	}
	// Hold the lock past several of Open's waits: a load cut at the wait
	// would fail and be retried.
	time.Sleep(2 * time.Second)
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !s.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatal("not ready 30 s after the lock was released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.KeyBySecret("team-demo-read-key"); !ok {
		t.Fatal("the seed key is not loaded")
	}
	failed := logs.count("key store sync failed; serving the last index") + logs.count("key store database unavailable; not ready until it answers")
	if n := logs.count("key store loaded"); n != 1 || failed != 0 {
		t.Fatalf("%d loads and %d failed attempts, want one load and no failure", n, failed)
	}
}
