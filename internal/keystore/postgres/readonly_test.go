package postgres_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

// TestPostgresReadOnly: a read-only open (keygate replay --store) serves the
// database's keys and settings, refuses every write, and refuses a database
// without keygate's complete schema instead of migrating it.
func TestPostgresReadOnly(t *testing.T) {
	c := pgtest.Start(t)
	authz := &planNetworkAuthz{}
	withIP := func(o *pgOpts) { o.Authorizer, o.Network = authz, authz }
	rw, url := pgStores(t, c, 1, withIP)
	set := keystore.IPRestrictions{Default: []string{"203.0.113.0/24"}}
	if _, err := rw[0].PutIPRestrictions(t.Context(), "business-demo-admin-token", "business-demo", set); err != nil {
		t.Fatal(err)
	}
	readOnly := func(o *pgOpts) { o.ReadOnly = true }
	ro := pgOpen(t, url, 1, withIP, readOnly)[0]
	if _, ok := ro.KeyBySecret(demoSecret); !ok {
		t.Fatal("read-only store lacks the seed key")
	}
	if !restricts(ro, "business-demo", "203.0.113.0/24") {
		t.Fatal("read-only store lacks the IP restriction setting")
	}
	for name, write := range map[string]func() error{
		"create key": func() error { _, err := ro.CreateKey(t.Context(), teamAdmin, "team-demo", readSpec()); return err },
		"put ip": func() error {
			_, err := ro.PutIPRestrictions(t.Context(), "business-demo-admin-token", "business-demo", set)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			var ke *keystore.Error
			if err := write(); !errors.As(err, &ke) || ke.Status != http.StatusServiceUnavailable || ke.Code != "store_read_only" {
				t.Fatalf("write on a read-only store: %v, want 503 store_read_only", err)
			}
		})
	}

	for _, tc := range []struct {
		name, prepare, want string
	}{
		{"no schema", "", "no keygate schema"},
		{"a migration missing", "DELETE FROM schema_migrations WHERE version = 3", "0003_ip_restrictions.sql is not applied"},
		{"a newer schema", "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')", "schema version 9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, url, err := c.NewNamedDatabase(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tc.prepare != "" {
				pgOpen(t, url, 1, withIP)
				if err := c.Exec(t.Context(), db, tc.prepare); err != nil {
					t.Fatal(err)
				}
			}
			_, err = openPG(t.Context(), url, pgOpts{keystore.Options{DataDir: repoDataDir, Authorizer: authz}, postgres.Options{ReadOnly: true}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("read-only Open: %v, want %q", err, tc.want)
			}
		})
	}
}
