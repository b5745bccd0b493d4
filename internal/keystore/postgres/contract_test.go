package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/postgres"
	"github.com/keygate/keygate/internal/pgtest"
)

// TestContractPostgres runs the driver contract against PostgreSQL: one
// throwaway cluster, a fresh database per test.
func TestContractPostgres(t *testing.T) {
	c := pgtest.Start(t)
	keystoretest.RunContract(t, func(t *testing.T, cfg keystoretest.Config) keystoretest.Instance {
		url, err := c.NewDatabase(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		opts := pgOpts{keystore.Options{DataDir: cfg.DataDir, Authorizer: cfg.Authorizer, Network: cfg.Network, Logger: cfg.Logger, Now: cfg.Now},
			postgres.Options{Heartbeat: 200 * time.Millisecond}}
		open := func(t *testing.T) *keystore.Store {
			s, err := openPG(context.WithoutCancel(t.Context()), url, opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		inst := keystoretest.Instance{Store: open(t), Replica: open}
		inst.Reopen = func(t *testing.T) *keystore.Store {
			if err := inst.Store.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			inst.Store = open(t)
			return inst.Store
		}
		return inst
	})
}
