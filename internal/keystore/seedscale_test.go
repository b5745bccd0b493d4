package keystore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/keystore"
)

// planAuthorizer allows every seed key and records the plans it was asked
// about, so a seeding benchmark measures the loader, not the keys policy.
type planAuthorizer struct{ plans map[string]int }

func (a *planAuthorizer) AuthorizeKeys(_ context.Context, req keystore.KeyRequest) (keystore.KeyDecision, error) {
	a.plans[req.Service.Plan]++
	return keystore.KeyDecision{Allow: true, Status: 201}, nil
}

// BenchmarkLoadSeedKeys seeds 20 keys per service at growing key counts:
// ns/op is per seed key and must stay flat as the services grow (a lookup
// of each key's plan that scans the service list makes it grow linearly).
func BenchmarkLoadSeedKeys(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			dir := writeScaleData(b, n/20, n)
			d, err := keystore.LoadDirectory(dir)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().UTC()
			b.ResetTimer()
			for b.Loop() {
				keys, err := keystore.LoadSeedKeys(context.Background(), dir, d, now, &planAuthorizer{plans: map[string]int{}})
				if err != nil || len(keys) != n {
					b.Fatalf("seeded %d keys, err %v", len(keys), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
		})
	}
}

// TestSeedKeysAskAboutTheServicePlan checks each seed key is checked by the
// keys policy with its own service's plan.
func TestSeedKeysAskAboutTheServicePlan(t *testing.T) {
	dir := writeScaleData(t, 50, 1000)
	d, err := keystore.LoadDirectory(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := &planAuthorizer{plans: map[string]int{}}
	if _, err := keystore.LoadSeedKeys(context.Background(), dir, d, time.Now().UTC(), a); err != nil {
		t.Fatal(err)
	}
	if len(a.plans) != 1 || a.plans["enterprise"] != 1000 {
		t.Fatalf("plans asked about: %v, want enterprise for all 1000 keys", a.plans)
	}
}
