package keystore_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/keystore"
)

// TestConcurrentCreatesRespectPlanLimit: N goroutines race to create keys on
// a service with room for k; exactly k win, the rest get 409, and the state
// on disk agrees after a reopen.
func TestConcurrentCreatesRespectPlanLimit(t *testing.T) {
	tests := []struct {
		service string
		token   string
		room    int // limit minus seeded keys
	}{
		{"hobby-demo", "hobby-demo-admin-token", 1},
		{"team-demo", "team-demo-admin-token", 2},
		{"business-demo", "business-demo-admin-token", 10},
	}
	const goroutines = 64
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, limited := 0, 0
			start := make(chan struct{})
			for range goroutines {
				wg.Go(func() {
					<-start
					// Readers race the writers too.
					f.store.KeyBySecret(demoSecret)
					_, err := f.store.CreateKey(t.Context(), tc.token, tc.service, readSpec())
					mu.Lock()
					defer mu.Unlock()
					var ke *keystore.Error
					switch {
					case err == nil:
						ok++
					case errors.As(err, &ke) && ke.Status == 409:
						limited++
					default:
						t.Errorf("unexpected error: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if ok != tc.room || limited != goroutines-tc.room {
				t.Fatalf("%d created, %d refused; want %d and %d", ok, limited, tc.room, goroutines-tc.room)
			}
		})
	}
	before := f.store.KeyCounts()
	f.reopen(t)
	after := f.store.KeyCounts()
	for svc, n := range before {
		if after[svc] != n {
			t.Errorf("%s: %d keys before reopen, %d after", svc, n, after[svc])
		}
	}
}
