package keystore_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// Demo tokens and secrets from data/.
const (
	teamAdmin   = "team-demo-admin-token"
	teamEditor  = "team-demo-editor-token"
	hobbyAdmin  = "hobby-demo-admin-token"
	demoSecret  = "team-demo-read-key"
	demoKeyID   = "team-demo-read"
	repoDataDir = "../../data"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// storeOpts are the options of a test store: the Store's and the local
// driver's.
type storeOpts struct {
	keystore.Options
	localOptions
}

type localOptions = local.Options

// openStore opens a Store over the local state of o.
func openStore(ctx context.Context, o storeOpts) (*keystore.Store, error) {
	return keystore.New(ctx, local.New(o.localOptions), o.Options)
}

type fixture struct {
	store *keystore.Store
	authz *keystoretest.Authorizer
	opts  storeOpts
	logs  *syncBuffer
}

// newFixture opens a store on the committed data/ with fresh state.
func newFixture(t *testing.T, mutate ...func(*storeOpts)) *fixture {
	t.Helper()
	logs := &syncBuffer{}
	f := &fixture{authz: &keystoretest.Authorizer{}, logs: logs}
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	f.opts.localOptions = local.Options{StatePath: filepath.Join(t.TempDir(), "state", "state.json")}
	f.opts.Options = keystore.Options{
		DataDir:    repoDataDir,
		Authorizer: f.authz,
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(time.Second)
			return clock
		},
	}
	for _, m := range mutate {
		m(&f.opts)
	}
	f.store = f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) *keystore.Store {
	t.Helper()
	s, err := openStore(t.Context(), f.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes the store and opens it again on the same state.
func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	if err := f.store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	f.store = f.open(t)
}

// writeData writes a data directory from file name → content.
func writeData(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readSpec() keystore.KeySpec {
	return keystore.KeySpec{Name: "web", ContentAPI: keystore.ContentAPI{Default: keystore.ContentPerms{Get: true}}}
}

func newFixtureAuthz() *keystoretest.Authorizer { return &keystoretest.Authorizer{} }
