package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/postgres"
)

// Demo tokens and secrets from data/.
const (
	teamAdmin   = "team-demo-admin-token"
	teamEditor  = "team-demo-editor-token"
	demoSecret  = "team-demo-read-key"
	repoDataDir = "../../../data"
)

// pgOpts are the options of a test store: the Store's and the driver's.
type pgOpts struct {
	keystore.Options
	driverOptions
}

type driverOptions = postgres.Options

// openPG opens a Store over the database at url.
func openPG(ctx context.Context, url string, o pgOpts) (*keystore.Store, error) {
	return keystore.New(ctx, postgres.New(url, o.driverOptions), o.Options)
}

func caller(t *testing.T, id string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: id})
}

func withIdem(t *testing.T, requestID, key string) context.Context {
	return keystore.WithCaller(t.Context(), keystore.Caller{Address: "192.0.2.7", RequestID: requestID, IdempotencyKey: key})
}

// fullTrail reads every page of service's trail with q's filters.
func fullTrail(t *testing.T, s *keystore.Store, token, service string, q keystore.AuditQuery) []keystore.AuditEntry {
	t.Helper()
	return keystoretest.FullTrail(t, s, token, service, q)
}

func wantStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	keystoretest.WantStatus(t, err, status, code)
}

// networkAuthz is the fake keys authorizer plus the fake network decision.
type networkAuthz struct {
	keystoretest.Authorizer
	keystoretest.NetworkAuthorizer
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
