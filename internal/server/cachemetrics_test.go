package server_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/keygate/keygate/internal/server"
)

// TestDecisionCacheMetrics: /metrics reports the decision cache's entries,
// bytes and evictions. A cache bounded to 32 entries (one a shard) asked 200
// distinct cacheable questions holds at most 32 and has evicted the rest;
// asked nothing it reports zeros.
func TestDecisionCacheMetrics(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		questions int
	}{
		{"idle", 0},
		{"over the bound", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, store := openDeps(t, "../../policies", copyTree(t, "../../data"))
			metrics := server.NewMetrics(store.KeyCounts)
			h := server.New(eng, store, metrics, server.Options{Logger: quiet, CacheEntries: 32}).Handler()
			for i := range tc.questions {
				decideVia(t, h, fmt.Appendf(nil, `{"service":"team-demo","api":"content","method":"GET","path":"/api/v1/ep%d","apiKey":"team-demo-read-key"}`, i))
			}
			entries := counterValue(t, metrics, "keygate_decision_cache_entries")
			bytes := counterValue(t, metrics, "keygate_decision_cache_bytes")
			evictions := counterValue(t, metrics, "keygate_decision_cache_evictions_total")
			misses := counterValue(t, metrics, "keygate_decision_cache_misses_total")
			if tc.questions == 0 {
				if entries != 0 || bytes != 0 || evictions != 0 {
					t.Fatalf("idle cache: entries %v bytes %v evictions %v, want zeros", entries, bytes, evictions)
				}
				return
			}
			if entries < 1 || entries > 32 || bytes <= 0 {
				t.Fatalf("entries %v (want 1..32), bytes %v (want > 0)", entries, bytes)
			}
			if evictions != misses-entries {
				t.Fatalf("evictions %v, want misses %v - entries %v", evictions, misses, entries)
			}
		})
	}
}
