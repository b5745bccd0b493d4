package local_test

import (
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
	"github.com/keygate/keygate/internal/keystore/keystoretest"
	"github.com/keygate/keygate/internal/keystore/local"
)

// TestContractLocal runs the driver contract against the local state file.
func TestContractLocal(t *testing.T) {
	keystoretest.RunContract(t, func(t *testing.T, cfg keystoretest.Config) keystoretest.Instance {
		opts := storeOpts{keystore.Options{DataDir: cfg.DataDir, Authorizer: cfg.Authorizer, Network: cfg.Network, Logger: cfg.Logger, Now: cfg.Now},
			local.Options{StatePath: filepath.Join(t.TempDir(), "state", "state.json")}}
		open := func(t *testing.T) *keystore.Store {
			s, err := openStore(t.Context(), opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		inst := keystoretest.Instance{Store: open(t)}
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
